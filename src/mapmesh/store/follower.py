"""Keep an in-memory model of one key prefix current: load once, then follow the watch.

Read models (the registry view, the mesh view) differ only in how they interpret keys; the
loading, following, reloading after compaction, waiting for a revision and listener fan-out
are this one mechanism. A subclass implements :meth:`_reset` and :meth:`_apply` and returns
the change object its listeners receive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Generic, TypeVar

from mapmesh.store.base import Compacted, Event, KeyValue, Store, StoreClosed

__all__ = ["PrefixFollower"]

log = logging.getLogger(__name__)

C = TypeVar("C")


class PrefixFollower(ABC, Generic[C]):
    def __init__(self, store: Store, prefix: str) -> None:
        self._store = store
        self._prefix = prefix
        self.revision = 0
        self._listeners: list[Callable[[C], None]] = []
        self._advanced = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    def _reset(self, entries: list[KeyValue], revision: int) -> C:
        """Replace the model with ``entries``; return the change to announce."""

    @abstractmethod
    def _apply(self, batch: list[Event]) -> C:
        """Apply one watch batch to the model; return the change to announce."""

    async def start(self) -> None:
        await self._load()
        self._task = asyncio.create_task(self._follow(), name=f"follow-{self._prefix}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def subscribe(self, listener: Callable[[C], None]) -> None:
        """Call ``listener`` after every applied batch (on the event loop, synchronously)."""
        self._listeners.append(listener)

    async def wait_for(self, revision: int, timeout: float = 5.0) -> None:
        """Return once the model has applied ``revision`` (TimeoutError after ``timeout``)."""
        if self.revision >= revision:
            return
        async with self._advanced:
            await asyncio.wait_for(
                self._advanced.wait_for(lambda: self.revision >= revision), timeout
            )

    async def _load(self) -> None:
        entries, revision = await self._store.range(self._prefix)
        change = self._reset(entries, revision)
        self.revision = revision
        self._notify(change)

    async def _follow(self) -> None:
        while True:
            try:
                async for batch in self._store.watch(self._prefix, self.revision):
                    change = self._apply(batch)
                    self.revision = max(self.revision, batch[-1].revision)
                    self._notify(change)
                    async with self._advanced:
                        self._advanced.notify_all()
            except Compacted:
                log.warning("fell behind the store's history; reloading %s", self._prefix)
                await self._load()
            except StoreClosed:
                return

    def _notify(self, change: C) -> None:
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:
                log.exception("listener of %s failed", self._prefix)
