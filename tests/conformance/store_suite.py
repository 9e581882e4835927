"""The conformance suite every :class:`~mapmesh.store.Store` backend must pass.

Invariant: a backend is a drop-in for any other — same values, versions, revisions, watch
batches and errors for the same calls. The suite is written once against the protocol; a
backend joins by subclassing :class:`StoreConformance` in a small test file and overriding
the ``backend`` fixture with something that satisfies :class:`StoreBackend`.

Revisions are asserted relative to the revision a store starts at, so a backend whose
revision counter is shared (etcd) runs the same suite.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mapmesh.store import (
    Compacted,
    Compare,
    Delete,
    Event,
    EventType,
    KeyValue,
    Put,
    Store,
    StoreClosed,
    TxnResult,
)

__all__ = ["DEFAULT_HISTORY", "StoreBackend", "StoreConformance", "collect", "flat_events"]

DEFAULT_HISTORY = 10_000
WAIT = 5.0  # seconds a watch may take to deliver what the test expects


class StoreBackend(Protocol):
    """How the suite gets stores from a backend."""

    async def open(self, name: str = "main", *, history: int = DEFAULT_HISTORY) -> Store:
        """Open the store called ``name``; after ``close``, opening it again reopens its data.

        Stores with different names are independent. ``history`` is how many revisions of
        events the store must keep for watches that start in the past.
        """
        ...


async def collect(store: Store, prefix: str, after: int, until: int) -> list[list[Event]]:
    """The batches a watch from ``after`` yields until it has delivered revision ``until``."""
    batches: list[list[Event]] = []
    async with asyncio.timeout(WAIT):
        async for batch in store.watch(prefix, after):
            batches.append(batch)
            if batch[-1].revision >= until:
                return batches
    raise AssertionError("watch ended early")


async def stop(watch: AsyncIterator[list[Event]]) -> None:
    """End a watch now rather than when it is garbage collected."""
    aclose = getattr(watch, "aclose", None)
    if aclose is not None:
        await aclose()


async def put(store: Store, key: str, value: bytes = b"v") -> int:
    result = await store.txn([], [Put(key, value)])
    assert result.succeeded
    return result.revision


def flat_events(batches: Sequence[Sequence[Event]]) -> list[Event]:
    return [e for batch in batches for e in batch]


# -- the model ---------------------------------------------------------------------------

KEYS = ["a", "a/1", "a/2", "ab", "b/x"]
Op = tuple[str, str, bytes]  # ("put" | "delete", key, value)

COMPARES = st.lists(
    st.tuples(st.sampled_from(KEYS), st.sampled_from(["current", "absent", "stale"])),
    max_size=2,
)
OPS = st.lists(
    st.tuples(st.sampled_from(["put", "delete"]), st.sampled_from(KEYS), st.binary(max_size=3)),
    max_size=3,
    unique_by=lambda op: op[1],
)


def to_op(op: Op) -> Put | Delete:
    kind, key, value = op
    return Put(key, value) if kind == "put" else Delete(key)


@dataclass
class Model:
    """The contract in a dict: what the store must answer, and the events it must emit."""

    revision: int
    start: int = 0
    data: dict[str, KeyValue] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.start = self.revision

    def compares(self, wanted: list[tuple[str, str]]) -> list[Compare]:
        """Turn "current" / "absent" / "stale" into compares against the model's state."""
        out = []
        for key, kind in wanted:
            current = self.data[key].mod_revision if key in self.data else 0
            expected = {"current": current, "absent": 0, "stale": current + 1}[kind]
            out.append(Compare(key, expected))
        return out

    def txn(self, compares: list[Compare], ops: list[Put | Delete]) -> TxnResult:
        if any(self._mod(c.key) != c.mod_revision for c in compares):
            return TxnResult(False, self.revision)
        revision = self.revision + 1
        changes = [e for e in (self._apply(op, revision) for op in ops) if e is not None]
        if changes:
            self.revision = revision
            self.events += changes
        return TxnResult(True, self.revision)

    def _mod(self, key: str) -> int:
        return self.data[key].mod_revision if key in self.data else 0

    def _apply(self, op: Put | Delete, revision: int) -> Event | None:
        old = self.data.get(op.key)
        if isinstance(op, Delete):
            if old is None:
                return None
            del self.data[op.key]
            return Event(EventType.DELETE, op.key, b"", revision)
        created, version = (old.create_revision, old.version + 1) if old else (revision, 1)
        self.data[op.key] = KeyValue(op.key, op.value, created, revision, version)
        return Event(EventType.PUT, op.key, op.value, revision)

    async def check(self, store: Store) -> None:
        """The store's state, ranges, revision and replayed history all match the model."""
        assert await store.revision() == self.revision
        for prefix in ["", "a", "a/", "b/"]:
            entries, revision = await store.range(prefix)
            expected = sorted(
                (kv for key, kv in self.data.items() if key.startswith(prefix)),
                key=lambda kv: kv.key,
            )
            assert (entries, revision) == (expected, self.revision), prefix
        for key in KEYS:
            assert await store.get(key) == self.data.get(key)
        if self.events:
            replay = await collect(store, "", self.start, self.revision)
            assert flat_events(replay) == self.events


class StoreConformance:
    """Subclass and override the ``backend`` fixture to run the suite on a backend."""

    @pytest.fixture
    def backend(self) -> StoreBackend:
        raise NotImplementedError("a backend's test file overrides this fixture")

    @pytest.fixture
    async def store(self, backend: StoreBackend) -> AsyncIterator[Store]:
        store = await backend.open()
        yield store
        await store.close()

    # -- keys, values, versions ----------------------------------------------------------

    async def test_get_of_absent_key_is_none(self, store: Store) -> None:
        assert await store.get("nothing/here") is None

    async def test_versions_and_revisions_follow_a_keys_life(self, store: Store) -> None:
        r1 = await put(store, "k", b"one")
        assert await store.get("k") == KeyValue("k", b"one", r1, r1, 1)

        r2 = await put(store, "k", b"two")
        assert r2 == r1 + 1
        assert await store.get("k") == KeyValue("k", b"two", r1, r2, 2)

        deleted = await store.txn([], [Delete("k")])
        assert deleted == TxnResult(True, r2 + 1)
        assert await store.get("k") is None

        r4 = await put(store, "k", b"again")
        assert await store.get("k") == KeyValue("k", b"again", r4, r4, 1), "recreated: v1"

    async def test_values_are_bytes_kept_exactly(self, store: Store) -> None:
        value = bytes(range(256)) + b"\x00"
        await put(store, "bin", value)
        got = await store.get("bin")
        assert got is not None and got.value == value
        await put(store, "empty", b"")
        got = await store.get("empty")
        assert got is not None and got.value == b""

    # -- range -----------------------------------------------------------------------------

    async def test_range_is_in_key_order_and_isolates_prefixes(self, store: Store) -> None:
        for key in ["a/2", "ab", "a/10", "b/1", "a", "a/1", "a/", "a/é", "a0"]:
            await put(store, key)

        entries, _ = await store.range("a/")
        assert [kv.key for kv in entries] == ["a/", "a/1", "a/10", "a/2", "a/é"]

        everything, _ = await store.range("")
        keys = [kv.key for kv in everything]
        assert keys == sorted(keys)
        assert {"ab", "a0", "a", "b/1"} <= set(keys)

        assert await store.range("zzz/") == ([], await store.revision())

    async def test_range_returns_the_revision_it_read_at(self, store: Store) -> None:
        await put(store, "r/1")
        last = await put(store, "other")
        entries, revision = await store.range("r/")
        assert revision == last == await store.revision()
        assert [kv.key for kv in entries] == ["r/1"]

    # -- txn -----------------------------------------------------------------------------

    async def test_compare_zero_means_absent(self, store: Store) -> None:
        created = await store.txn([Compare("lock", 0)], [Put("lock", b"me")])
        assert created.succeeded

        again = await store.txn([Compare("lock", 0)], [Put("lock", b"you")])
        assert again == TxnResult(False, created.revision), "fails at the current revision"
        kv = await store.get("lock")
        assert kv is not None and kv.value == b"me"

    async def test_compare_on_mod_revision_is_compare_and_swap(self, store: Store) -> None:
        r1 = await put(store, "cas", b"1")
        r2 = await put(store, "cas", b"2")

        stale = await store.txn([Compare("cas", r1)], [Put("cas", b"stale")])
        assert stale == TxnResult(False, r2)

        fresh = await store.txn([Compare("cas", r2)], [Put("cas", b"3")])
        assert fresh == TxnResult(True, r2 + 1)

        gone = await store.txn([Compare("cas", r2 + 1)], [Delete("cas")])
        assert gone.succeeded
        assert (await store.txn([Compare("cas", 0)], [Put("cas", b"4")])).succeeded

    async def test_a_failed_compare_applies_no_op(self, store: Store) -> None:
        await put(store, "x", b"old")
        before = await store.revision()

        result = await store.txn(
            [Compare("x", before), Compare("y", 12345)],
            [Put("x", b"new"), Put("z", b"new"), Delete("x")],
        )

        assert result == TxnResult(False, before)
        assert await store.revision() == before
        kv = await store.get("x")
        assert kv is not None and kv.value == b"old"
        assert await store.get("z") is None

    async def test_all_ops_of_a_txn_share_one_revision(self, store: Store) -> None:
        await put(store, "m/gone")
        result = await store.txn(
            [Compare("m/a", 0)], [Put("m/a", b"a"), Put("m/b", b"b"), Delete("m/gone")]
        )
        assert result.succeeded
        entries, revision = await store.range("m/")
        assert revision == result.revision
        assert [(kv.key, kv.mod_revision) for kv in entries] == [
            ("m/a", result.revision),
            ("m/b", result.revision),
        ]

    async def test_each_write_takes_the_next_revision(self, store: Store) -> None:
        start = await store.revision()
        seen = [await put(store, f"seq/{i}") for i in range(5)]
        assert seen == list(range(start + 1, start + 6))
        assert await store.revision() == start + 5

    async def test_a_txn_that_changes_nothing_takes_no_revision(self, store: Store) -> None:
        start = await store.revision()
        assert await store.txn([], []) == TxnResult(True, start)
        assert await store.txn([], [Delete("never/was")]) == TxnResult(True, start)
        assert await store.revision() == start

    async def test_concurrent_txns_get_distinct_revisions(self, store: Store) -> None:
        start = await store.revision()
        results = await asyncio.gather(*(store.txn([], [Put(f"c/{i}", b"v")]) for i in range(60)))
        revisions = sorted(r.revision for r in results)
        assert revisions == list(range(start + 1, start + 61))
        entries, _ = await store.range("c/")
        assert len(entries) == 60

    async def test_concurrent_cas_on_one_key_has_exactly_one_winner(self, store: Store) -> None:
        base = await put(store, "leader", b"nobody")
        results = await asyncio.gather(
            *(
                store.txn([Compare("leader", base)], [Put("leader", f"n{i}".encode())])
                for i in range(40)
            )
        )
        winners = [i for i, r in enumerate(results) if r.succeeded]
        assert len(winners) == 1
        kv = await store.get("leader")
        assert kv is not None and kv.value == f"n{winners[0]}".encode()
        assert kv.mod_revision == results[winners[0]].revision

    # -- watch -----------------------------------------------------------------------------

    async def test_watch_replays_history_then_follows_live(self, store: Store) -> None:
        start = await store.revision()
        r1 = await put(store, "w/a", b"1")
        r2 = await put(store, "w/b", b"2")
        watch = store.watch("w/", start)

        replay = await asyncio.wait_for(anext(watch), WAIT)
        seen = list(replay)
        while seen[-1].revision < r2:
            seen += await asyncio.wait_for(anext(watch), WAIT)

        r3 = await put(store, "w/a", b"3")
        r4 = (await store.txn([], [Delete("w/b")])).revision
        while seen[-1].revision < r4:
            seen += await asyncio.wait_for(anext(watch), WAIT)
        await stop(watch)

        assert seen == [
            Event(EventType.PUT, "w/a", b"1", r1),
            Event(EventType.PUT, "w/b", b"2", r2),
            Event(EventType.PUT, "w/a", b"3", r3),
            Event(EventType.DELETE, "w/b", b"", r4),
        ], "no gap and no duplicate between replay and live"

    async def test_watch_starts_strictly_after_its_revision(self, store: Store) -> None:
        await put(store, "after/1")
        mark = await put(store, "after/2")
        last = await put(store, "after/3")
        batches = await collect(store, "after/", mark, last)
        assert [e.key for e in flat_events(batches)] == ["after/3"]

    async def test_watch_sees_only_its_prefix(self, store: Store) -> None:
        start = await store.revision()
        await put(store, "p/in")
        await put(store, "pq")
        await put(store, "p")
        last = await put(store, "p/also")
        await put(store, "q/out")
        batches = await collect(store, "p/", start, last)
        assert [e.key for e in flat_events(batches)] == ["p/in", "p/also"]

    async def test_events_of_one_txn_come_in_one_batch(self, store: Store) -> None:
        start = await store.revision()
        await put(store, "t/old")
        done = await store.txn(
            [], [Put("t/1", b"1"), Put("t/2", b"2"), Delete("t/old"), Put("t/3", b"3")]
        )
        batches = await collect(store, "t/", start, done.revision)
        holding = [b for b in batches if any(e.revision == done.revision for e in b)]
        assert len(holding) == 1
        assert [(e.type, e.key) for e in holding[0] if e.revision == done.revision] == [
            (EventType.PUT, "t/1"),
            (EventType.PUT, "t/2"),
            (EventType.DELETE, "t/old"),
            (EventType.PUT, "t/3"),
        ]

    async def test_watchers_are_independent(self, store: Store) -> None:
        """A fast and a stalled watcher both see everything; writers never wait for them."""
        start = await store.revision()
        stalled = store.watch("ind/", start)
        first = await put(store, "ind/0")
        fast_task = asyncio.create_task(collect(store, "ind/", start, first + 49))
        stalled_first = await asyncio.wait_for(anext(stalled), WAIT)

        async with asyncio.timeout(WAIT):
            last = max([await put(store, f"ind/{i}") for i in range(1, 50)])
        fast = flat_events(await fast_task)

        rest = list(stalled_first)
        while rest[-1].revision < last:
            rest += await asyncio.wait_for(anext(stalled), WAIT)
        await stop(stalled)

        expected = [f"ind/{i}" for i in range(50)]
        assert [e.key for e in fast] == expected
        assert [e.key for e in rest] == expected

    async def test_watch_from_before_history_raises_compacted(self, backend: StoreBackend) -> None:
        store = await backend.open("compacting", history=5)
        try:
            start = await store.revision()
            for i in range(30):
                last = await put(store, f"h/{i % 3}")

            with pytest.raises(Compacted) as info:
                await collect(store, "h/", start, last)
            assert info.value.requested <= start + 1 < info.value.oldest

            recent = flat_events(await collect(store, "h/", last - 5, last))
            assert [e.revision for e in recent] == list(range(last - 4, last + 1))
        finally:
            await store.close()

    async def test_close_ends_watches_and_refuses_operations(self, backend: StoreBackend) -> None:
        store = await backend.open("closing")
        start = await store.revision()
        watch = store.watch("", start)
        pending = asyncio.ensure_future(anext(watch))
        await asyncio.sleep(0.01)

        await store.close()

        with pytest.raises(StoreClosed):
            await asyncio.wait_for(pending, WAIT)
        with pytest.raises(StoreClosed):
            await store.get("k")
        with pytest.raises(StoreClosed):
            await store.range("")
        with pytest.raises(StoreClosed):
            await store.txn([], [Put("k", b"v")])
        with pytest.raises(StoreClosed):
            await store.revision()
        with pytest.raises(StoreClosed):
            await anext(store.watch("", 0))
        await store.close()  # closing twice is harmless

    async def test_reopen_keeps_data_and_revision_numbering(self, backend: StoreBackend) -> None:
        store = await backend.open("durable")
        await put(store, "d/1", b"one")
        last = await put(store, "d/2", b"two")
        await store.close()

        store = await backend.open("durable")
        try:
            assert await store.revision() >= last
            entries, _ = await store.range("d/")
            assert [(kv.key, kv.value) for kv in entries] == [("d/1", b"one"), ("d/2", b"two")]
            replay = flat_events(await collect(store, "d/", last - 2, last))
            assert [e.key for e in replay] == ["d/1", "d/2"]
            assert await put(store, "d/3") == last + 1
        finally:
            await store.close()

    # -- the store against a dict ----------------------------------------------------------

    _stores = itertools.count()

    @settings(
        max_examples=100,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(program=st.lists(st.tuples(COMPARES, OPS), min_size=1, max_size=12))
    async def test_matches_a_dict_model(
        self, backend: StoreBackend, program: list[tuple[list[tuple[str, str]], list[Op]]]
    ) -> None:
        store = await backend.open(f"model-{next(self._stores)}")
        try:
            model = Model(await store.revision())
            for compares, ops in program:
                txn = model.compares(compares), [to_op(op) for op in ops]
                assert await store.txn(*txn) == model.txn(*txn)
            await model.check(store)
        finally:
            await store.close()
