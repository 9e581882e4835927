"""mapmesh's key/value store: the contract (:mod:`.base`) and its backends.

Callers depend on :class:`Store` only; ``open_store`` picks the embedded SQLite backend, the
default for a single control plane. The etcd backend for HA plugs in behind the same contract.
"""

from __future__ import annotations

import os
from pathlib import Path

from mapmesh.store.base import (
    Compacted,
    Compare,
    Delete,
    Event,
    EventType,
    KeyValue,
    Put,
    Store,
    StoreClosed,
    StoreError,
    TxnResult,
    prefix_end,
)
from mapmesh.store.sqlite import SqliteStatistics, SqliteStore

__all__ = [
    "Compacted",
    "Compare",
    "Delete",
    "Event",
    "EventType",
    "KeyValue",
    "Put",
    "SqliteStatistics",
    "SqliteStore",
    "Store",
    "StoreClosed",
    "StoreError",
    "TxnResult",
    "open_store",
    "prefix_end",
]

_DB_FILE = "mapmesh.db"


async def open_store(data_dir: str | os.PathLike[str]) -> Store:
    """Open (creating it if needed) the store kept in ``<data_dir>/mapmesh.db``."""
    return await SqliteStore.open(Path(data_dir) / _DB_FILE)
