"""The store contract every backend implements (SQLite embedded, etcd for HA).

Theory of operation
-------------------
The store is a flat, ordered key/value space with one global, monotonically increasing
*revision* (etcd's model). Every successful write transaction creates exactly one new
revision; every key remembers the revision that created it and the one that last modified it.

Readers use two verbs:

* ``range(prefix)`` returns the keys under a prefix *and* the revision they were read at, so
  a reader can later ask for everything that happened after that point;
* ``watch(prefix, after)`` yields batches of events with revisions strictly greater than
  ``after`` (Consul's blocking query / etcd's watch). A reader that fell too far behind gets
  :class:`Compacted` and must re-read with ``range``.

Writers use ``txn``: a list of compares (mod revision of a key equals a value; 0 means "absent")
and a list of puts/deletes applied atomically when all compares hold. Compare-and-swap on
``mod_revision`` is the only concurrency control the rest of mapmesh needs.

A write is acknowledged only once it is durable: a backend must not return from ``txn`` before
the data survives the process being killed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

__all__ = [
    "Compacted",
    "Compare",
    "Delete",
    "Event",
    "EventType",
    "KeyValue",
    "Put",
    "Store",
    "StoreClosed",
    "StoreError",
    "TxnResult",
    "prefix_end",
]


class StoreError(Exception):
    """Base class of the store's own failures."""


class Compacted(StoreError):
    """The requested watch start is older than the history the store keeps."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"revision {requested} is compacted; oldest kept is {oldest}")
        self.requested = requested
        self.oldest = oldest


class StoreClosed(StoreError):
    """The store was closed while an operation or watch was in progress."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int  # number of writes since the key was (re)created; 1 after the first put


class EventType(Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    key: str
    value: bytes  # empty for DELETE
    revision: int


@dataclass(frozen=True, slots=True)
class Compare:
    """Holds when ``key``'s mod revision equals ``mod_revision`` (0: the key is absent)."""

    key: str
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Delete:
    key: str


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int  # the new revision when succeeded, else the current one


def prefix_end(prefix: str) -> str:
    """The smallest key greater than every key that starts with ``prefix``."""
    return prefix + "\U0010ffff"


class Store(Protocol):
    """An ordered key/value store with revisions and watches. See the module docstring."""

    async def get(self, key: str) -> KeyValue | None: ...

    async def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        """All keys starting with ``prefix`` in key order, and the revision they were read at."""
        ...

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Put | Delete]) -> TxnResult:
        """Apply ``ops`` atomically if every compare holds; durable before returning."""
        ...

    def watch(self, prefix: str, after: int) -> AsyncIterator[list[Event]]:
        """Batches of events for keys under ``prefix`` with revision > ``after``, in order.

        Events of one transaction arrive in the same batch. Raises :class:`Compacted` when
        ``after`` is older than the kept history, :class:`StoreClosed` when the store closes.
        """
        ...

    async def revision(self) -> int:
        """The current revision (0 for an empty store)."""
        ...

    async def close(self) -> None: ...
