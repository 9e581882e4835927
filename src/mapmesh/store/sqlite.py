"""The embedded default store: the :mod:`mapmesh.store.base` contract on stdlib ``sqlite3``.

Theory of operation
-------------------
*One thread owns the database.* Every sqlite call runs on a single-thread executor, so the
event loop never blocks on disk and sqlite never sees two threads. Reads queue behind writes
on that thread; that is simple, and it makes every read trivially consistent.

*Durability.* The database runs in WAL mode with ``synchronous=FULL``: ``COMMIT`` returns only
after the WAL is fsynced, and ``txn`` resolves only after ``COMMIT`` returned, so an
acknowledged write survives ``kill -9`` (and power loss, as far as the disk is honest).

*Group commit.* An fsync costs the same for one transaction as for a hundred. ``txn`` queues a
request and one committer task drains the queue: every request queued while a commit is in
flight goes into the next sqlite transaction, each under its own savepoint, with its own
compare check and its own revision, in arrival order. A request that raises (say a key that
is not valid UTF-8) rolls back to its savepoint and fails alone.

*Revisions* follow etcd: a successful txn that changes something takes the next revision; one
that changes nothing (no ops, or only deletes of absent keys) takes none and reports the
current revision. Ops apply in order, so a key touched twice in one txn gets both events.

*History.* Each change is also appended to ``log``, which serves watches that start in the
past. Every ``step`` revisions the commit that crosses the line deletes log rows older than
the last ``history`` revisions, in the same sqlite transaction (no extra fsync). At least
``history`` revisions are always kept; a watch from before the oldest kept one raises
:class:`Compacted`.

*Watches* are an in-process fan-out. After a commit the committer hands the new events to
every watcher (on the loop, before acknowledging the txns). A watcher alternates between two
sources without gap or duplicate, using its ``cursor`` (last revision delivered):

* the log, read in pages of revisions while it is *behind*; a page read also returns the
  head revision it was read at;
* its in-memory buffer, once a page reached the head. The watcher registered before its
  first read, so every commit after that read is in the buffer; buffered events at or below
  the cursor are dropped.

The buffer is bounded (``_WATCH_BUFFER`` events). A slow watcher that overflows it drops the
buffer and goes back to reading the log, so writers never wait and memory stays bounded; it
sees :class:`Compacted` only if the log was compacted past its cursor meanwhile.

Known approximation: prefix matching is ``prefix <= key < prefix_end(prefix)``, so a key that
continues a prefix with U+10FFFF and more characters is not matched.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ParamSpec, TypeVar

from mapmesh.store.base import (
    Compacted,
    Compare,
    Delete,
    Event,
    EventType,
    KeyValue,
    Put,
    StoreClosed,
    TxnResult,
    prefix_end,
)

__all__ = ["SqliteStatistics", "SqliteStore"]

P = ParamSpec("P")
T = TypeVar("T")

_MAX_GROUP = 1_000  # txn requests per sqlite transaction
_LOG_PAGE = 1_000  # revisions per log read while a watcher catches up
_WATCH_BUFFER = 100_000  # events buffered per watcher before it falls back to the log

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL,
    version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
    revision INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (revision, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    revision INTEGER NOT NULL,
    compacted INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, revision, compacted) VALUES (0, 0, 0);
"""


@dataclass(frozen=True, slots=True)
class SqliteStatistics:
    revision: int  # last revision handed to watchers and acknowledged
    watchers: int
    queued_txns: int
    commits: int  # sqlite write transactions
    committed_txns: int  # txn requests they carried (committed_txns / commits = group size)


@dataclass(slots=True)
class _TxnRequest:
    compares: tuple[Compare, ...]
    ops: tuple[Put | Delete, ...]
    future: asyncio.Future[TxnResult]


@dataclass(frozen=True, slots=True)
class _Applied:
    """What one request did inside a commit: its result (or its own error) and its events."""

    outcome: TxnResult | Exception
    events: tuple[Event, ...] = ()


@dataclass(frozen=True, slots=True)
class _LogPage:
    events: list[Event]
    upto: int  # the page covers revisions (after, upto]
    head: int  # the database revision the page was read at
    compacted: int  # revisions <= compacted are gone from the log


@dataclass(eq=False, slots=True)
class _Watcher:
    prefix: str
    cursor: int  # last revision delivered (or the watch's ``after``)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    buffer: list[Event] = field(default_factory=list)
    overflowed: bool = False  # the buffer was dropped: only the log is complete now
    closed: bool = False

    def offer(self, events: Sequence[Event]) -> None:
        """Buffer the matching events of a commit and wake the watch; never blocks."""
        end = prefix_end(self.prefix)
        matching = [e for e in events if self.prefix <= e.key < end]
        if not matching:
            return
        if len(self.buffer) + len(matching) > _WATCH_BUFFER:
            self.buffer.clear()
            self.overflowed = True
        else:
            self.buffer.extend(matching)
        self.wake.set()

    def take(self) -> tuple[list[Event], bool]:
        """Buffered events past the cursor (advancing it), and whether the watcher is behind."""
        self.wake.clear()
        if self.overflowed:
            self.buffer.clear()
            self.overflowed = False
            return [], True
        batch = [e for e in self.buffer if e.revision > self.cursor]
        self.buffer.clear()
        if batch:
            self.cursor = batch[-1].revision
        return batch, False

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class SqliteStore:
    """The :class:`~mapmesh.store.base.Store` contract on one sqlite file. See module doc."""

    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor, history: int):
        """Use :meth:`open`; this only wires up an already opened connection."""
        self._conn: sqlite3.Connection | None = conn
        self._executor = executor
        self._history = history
        self._step = max(1, min(1_000, history // 10))
        # Owned by the worker thread: the committed head and the compaction point.
        self._head, self._compacted = _read_meta(conn)
        # Owned by the loop.
        self._revision = self._head
        self._queue: list[_TxnRequest] = []
        self._committer: asyncio.Task[None] | None = None
        self._watchers: set[_Watcher] = set()
        self._closed = False
        self._commits = 0
        self._committed_txns = 0

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, history: int = 10_000) -> SqliteStore:
        """Open (creating it and its directory if needed) the store at ``path``.

        ``history`` is how many revisions of events are kept for watches that start in the
        past; older ones are compacted.
        """
        if history < 1:
            raise ValueError(f"history: must be >= 1, got {history}")
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mapmesh-sqlite")
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(executor, _connect, Path(path))
            return await loop.run_in_executor(executor, cls, conn, executor, history)
        except BaseException:
            executor.shutdown(wait=False)
            raise

    # -- reads -----------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        return await self._run(self._get, key)

    async def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        """All keys starting with ``prefix`` in key order, and the revision they were read at."""
        return await self._run(self._range, prefix)

    async def revision(self) -> int:
        """The current revision (0 for an empty store)."""
        self._check_open()
        return self._revision

    def statistics(self) -> SqliteStatistics:
        return SqliteStatistics(
            revision=self._revision,
            watchers=len(self._watchers),
            queued_txns=len(self._queue),
            commits=self._commits,
            committed_txns=self._committed_txns,
        )

    # -- writes ----------------------------------------------------------------------------

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Put | Delete]) -> TxnResult:
        """Apply ``ops`` atomically if every compare holds; durable before returning."""
        self._check_open()
        future: asyncio.Future[TxnResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_TxnRequest(tuple(compares), tuple(ops), future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._drain(), name="mapmesh-sqlite-commit")
        return await future

    async def _drain(self) -> None:
        """Commit queued requests in groups until the queue is empty."""
        while self._queue:
            group, self._queue = self._queue[:_MAX_GROUP], self._queue[_MAX_GROUP:]
            try:
                # Not ``_run``: requests queued before ``close`` still commit.
                applied = await asyncio.wrap_future(self._executor.submit(self._commit, group))
            except Exception as exc:
                for request in group:
                    _settle(request.future, exc)
                continue
            self._publish(applied)
            for request, done in zip(group, applied, strict=True):
                _settle(request.future, done.outcome)

    def _publish(self, applied: list[_Applied]) -> None:
        events = [e for outcome in applied for e in outcome.events]
        self._revision = max((e.revision for e in events), default=self._revision)
        self._commits += 1
        self._committed_txns += len(applied)
        if events:
            for watcher in self._watchers:
                watcher.offer(events)

    # -- watches ---------------------------------------------------------------------------

    async def watch(self, prefix: str, after: int) -> AsyncIterator[list[Event]]:
        """Batches of events under ``prefix`` with revision > ``after``; see module doc."""
        self._check_open()
        watcher = _Watcher(prefix, cursor=max(after, 0))
        self._watchers.add(watcher)
        try:
            behind = True
            while True:
                if behind:
                    batch, behind = await self._catch_up(watcher)
                else:
                    await watcher.wake.wait()
                    batch, behind = watcher.take()
                if watcher.closed:
                    raise StoreClosed("store closed")
                if batch:
                    yield batch
        finally:
            self._watchers.discard(watcher)

    async def _catch_up(self, watcher: _Watcher) -> tuple[list[Event], bool]:
        """Read one page of the log; returns its events and whether the watcher is still behind.

        The watcher stays behind if the page did not reach the head, or if its buffer
        overflowed while the page was read (the buffer then misses commits after the head).
        """
        watcher.overflowed = False
        page = await self._run(self._read_log, watcher.prefix, watcher.cursor)
        if watcher.cursor < page.compacted:
            raise Compacted(watcher.cursor + 1, page.compacted + 1)
        watcher.cursor = page.upto
        return page.events, page.upto < page.head or watcher.overflowed

    # -- lifecycle -------------------------------------------------------------------------

    async def close(self) -> None:
        """End all watches with :class:`StoreClosed`, finish queued txns, close the file."""
        if self._closed:
            return
        self._closed = True
        for watcher in self._watchers:
            watcher.close()
        if self._committer is not None:
            await asyncio.shield(self._committer)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._close_db)
        finally:
            self._executor.shutdown(wait=False)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("store closed")

    async def _run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the database thread."""
        self._check_open()
        return await asyncio.wrap_future(self._executor.submit(fn, *args, **kwargs))

    # -- worker thread ---------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreClosed("store closed")
        return self._conn

    def _close_db(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _get(self, key: str) -> KeyValue | None:
        row = (
            self._db()
            .execute(
                "SELECT key, value, create_revision, mod_revision, version FROM kv WHERE key = ?",
                (key,),
            )
            .fetchone()
        )
        return None if row is None else KeyValue(*row)

    def _range(self, prefix: str) -> tuple[list[KeyValue], int]:
        db = self._db()
        with _read_txn(db):
            rows = db.execute(
                "SELECT key, value, create_revision, mod_revision, version FROM kv"
                " WHERE key >= ? AND key < ? ORDER BY key",
                (prefix, prefix_end(prefix)),
            ).fetchall()
            revision, _ = _read_meta(db)
        return [KeyValue(*row) for row in rows], revision

    def _read_log(self, prefix: str, after: int) -> _LogPage:
        db = self._db()
        with _read_txn(db):
            head, compacted = _read_meta(db)
            upto = min(head, after + _LOG_PAGE)
            rows = db.execute(
                "SELECT type, key, value, revision FROM log WHERE revision > ? AND revision <= ?"
                " AND key >= ? AND key < ? ORDER BY revision, seq",
                (after, upto, prefix, prefix_end(prefix)),
            ).fetchall()
        events = [Event(EventType(t), key, value, rev) for t, key, value, rev in rows]
        return _LogPage(events, max(upto, after), head, compacted)

    def _commit(self, group: list[_TxnRequest]) -> list[_Applied]:
        """Apply a group of requests in one durable sqlite transaction."""
        db = self._db()
        head = self._head
        applied: list[_Applied] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for request in group:
                applied.append(_apply_isolated(db, request, head))
                head = _new_head(applied[-1], head)
            compacted = self._compaction_point(head)
            if compacted > self._compacted:
                db.execute("DELETE FROM log WHERE revision <= ?", (compacted,))
            db.execute("UPDATE meta SET revision = ?, compacted = ?", (head, compacted))
            db.execute("COMMIT")
        except BaseException:
            db.rollback()
            raise
        self._head, self._compacted = head, compacted
        return applied

    def _compaction_point(self, head: int) -> int:
        if head - self._compacted >= self._history + self._step:
            return head - self._history
        return self._compacted


# -- sqlite helpers (worker thread) ------------------------------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SCHEMA)
    except BaseException:
        conn.close()
        raise
    return conn


def _read_meta(db: sqlite3.Connection) -> tuple[int, int]:
    revision, compacted = db.execute("SELECT revision, compacted FROM meta").fetchone()
    return int(revision), int(compacted)


@contextmanager
def _read_txn(db: sqlite3.Connection) -> Iterator[None]:
    """One sqlite read transaction, so several SELECTs see the same snapshot."""
    db.execute("BEGIN")
    try:
        yield
    finally:
        db.execute("COMMIT")


def _apply_isolated(db: sqlite3.Connection, request: _TxnRequest, head: int) -> _Applied:
    """Apply one request under a savepoint, so that its failure is its own."""
    db.execute("SAVEPOINT request")
    try:
        applied = _apply(db, request, head)
    except Exception as exc:
        db.execute("ROLLBACK TO request")
        applied = _Applied(exc)
    db.execute("RELEASE request")
    return applied


def _new_head(applied: _Applied, head: int) -> int:
    return applied.outcome.revision if isinstance(applied.outcome, TxnResult) else head


def _apply(db: sqlite3.Connection, request: _TxnRequest, head: int) -> _Applied:
    """Check the compares, then apply the ops at revision ``head + 1`` if anything changes."""
    for compare in request.compares:
        if _mod_revision(db, compare.key) != compare.mod_revision:
            return _Applied(TxnResult(succeeded=False, revision=head))
    revision = head + 1
    events: list[Event] = []
    for op in request.ops:
        event = _put(db, op, revision) if isinstance(op, Put) else _delete(db, op, revision)
        if event is not None:
            db.execute(
                "INSERT INTO log (revision, seq, type, key, value) VALUES (?, ?, ?, ?, ?)",
                (revision, len(events), event.type.value, event.key, event.value),
            )
            events.append(event)
    if not events:
        return _Applied(TxnResult(succeeded=True, revision=head))
    return _Applied(TxnResult(succeeded=True, revision=revision), tuple(events))


def _mod_revision(db: sqlite3.Connection, key: str) -> int:
    row = db.execute("SELECT mod_revision FROM kv WHERE key = ?", (key,)).fetchone()
    return 0 if row is None else int(row[0])


def _put(db: sqlite3.Connection, op: Put, revision: int) -> Event:
    value = bytes(op.value)
    db.execute(
        "INSERT INTO kv (key, value, create_revision, mod_revision, version)"
        " VALUES (?1, ?2, ?3, ?3, 1)"
        " ON CONFLICT (key) DO UPDATE SET value = ?2, mod_revision = ?3, version = version + 1",
        (op.key, value, revision),
    )
    return Event(EventType.PUT, op.key, value, revision)


def _delete(db: sqlite3.Connection, op: Delete, revision: int) -> Event | None:
    if db.execute("DELETE FROM kv WHERE key = ?", (op.key,)).rowcount == 0:
        return None
    return Event(EventType.DELETE, op.key, b"", revision)


def _settle(future: asyncio.Future[TxnResult], outcome: TxnResult | Exception) -> None:
    """Resolve a txn's future unless its caller gave up on it."""
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
