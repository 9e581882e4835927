"""The store conformance suite on :class:`SqliteStore`, plus what only SQLite promises.

The SQLite-only tests pin the mechanisms behind the contract: group commit, a request that
fails alone inside a group, and a slow watcher that overflows its buffer and catches up from
the log without a gap or a duplicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mapmesh.store import Event, Put, SqliteStore, Store, open_store
from mapmesh.store import sqlite as sqlite_backend

from .store_suite import DEFAULT_HISTORY, StoreConformance, collect, flat_events


class SqliteBackend:
    """Each name is its own database file under one temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def open(self, name: str = "main", *, history: int = DEFAULT_HISTORY) -> Store:
        return await SqliteStore.open(self.root / name / "mapmesh.db", history=history)


class TestSqliteStore(StoreConformance):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> SqliteBackend:
        return SqliteBackend(tmp_path)


async def test_open_store_creates_the_data_dir(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "data")
    try:
        assert await store.revision() == 0
        assert (tmp_path / "data" / "mapmesh.db").exists()
    finally:
        await store.close()


async def test_history_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="history"):
        await SqliteStore.open(tmp_path / "db", history=0)


async def test_concurrent_txns_share_commits(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "db")
    try:
        await asyncio.gather(*(store.txn([], [Put(f"g/{i}", b"v")]) for i in range(200)))
        stats = store.statistics()
        assert stats.committed_txns == 200
        assert stats.commits < 20, "queued txns are committed together"
    finally:
        await store.close()


async def test_a_failing_request_fails_alone_in_its_group(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "db")
    try:
        results = await asyncio.gather(
            store.txn([], [Put("ok/1", b"v")]),
            store.txn([], [Put("ok/bad", b"v"), Put("\ud800", b"not utf-8")]),
            store.txn([], [Put("ok/2", b"v")]),
            return_exceptions=True,
        )
        assert isinstance(results[1], UnicodeEncodeError)
        entries, revision = await store.range("ok/")
        assert [kv.key for kv in entries] == ["ok/1", "ok/2"]
        assert revision == 2, "the failed request took no revision"
    finally:
        await store.close()


async def test_slow_watcher_overflows_and_catches_up_from_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_backend, "_WATCH_BUFFER", 4)
    monkeypatch.setattr(sqlite_backend, "_LOG_PAGE", 3)
    store = await SqliteStore.open(tmp_path / "db")
    try:
        slow = store.watch("s/", 0)
        first = await put_all(store, 0, 1)
        assert [e.key for e in await anext(slow)] == ["s/0"]

        last = await put_all(store, first, 40)  # far more than the watcher buffers
        writer = asyncio.create_task(put_all(store, last, 20))  # keeps writing meanwhile
        seen = await drain(slow, until=last + 20)
        await writer

        assert [e.key for e in seen] == [f"s/{i}" for i in range(1, 61)]
        assert [e.revision for e in seen] == list(range(2, 62))
    finally:
        await store.close()


async def test_compaction_survives_reopen(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "db", history=3)
    last = await put_all(store, 0, 12)
    await store.close()

    store = await SqliteStore.open(tmp_path / "db", history=3)
    try:
        events = flat_events(await collect(store, "s/", last - 3, last))
        assert [e.revision for e in events] == [last - 2, last - 1, last]
    finally:
        await store.close()


async def put_all(store: Store, start: int, count: int) -> int:
    """Write ``s/<start>`` … one txn each; returns the last revision."""
    revision = 0
    for i in range(start, start + count):
        revision = (await store.txn([], [Put(f"s/{i}", b"v")])).revision
    return revision


async def drain(watch: AsyncIterator[list[Event]], until: int) -> list[Event]:
    seen: list[Event] = []
    async with asyncio.timeout(5):
        async for batch in watch:
            seen += batch
            if seen[-1].revision >= until:
                return seen
    raise AssertionError("watch ended early")
