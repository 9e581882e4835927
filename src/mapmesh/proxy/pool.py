"""A cluster's upstream connections: keep-alive reuse, circuit-breaker accounting, queueing.

Theory of operation
-------------------
Idle keep-alive connections are kept per endpoint (last in, first out, so the warmest one
is reused and surplus ones idle out). A request for an endpoint asks the cluster's
:class:`CircuitBreaker` for admission — it decides (assign an idle connection, open a new
one, queue, or overflow) and the pool then does the I/O it asked for (STYLE #2).

A queued request waits for the next connection that frees up anywhere in the cluster
(Envoy keeps a queue per host; one per cluster is simpler and keeps the breaker's single
pending count honest). When a connection closes while requests wait, the pool opens a new
one for the oldest waiter if the breaker allows.

Every exchange ends exactly once (:class:`UpstreamConnection` guarantees it); the pool then
releases the request's slot and either parks the connection, hands it to a waiter, or lets
it go.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Final

from mapmesh.proxy.resilience.breaker import Action, CircuitBreaker, Overflow
from mapmesh.proxy.stats import Stats
from mapmesh.proxy.upstream import UpstreamConnection, UpstreamFailure, connect

__all__ = ["KEEPALIVE_IDLE", "EndpointKey", "Pool"]

KEEPALIVE_IDLE: Final = (
    300.0  # seconds an unused keep-alive connection stays open (App Mesh: 300 s)
)


class EndpointKey:
    """An endpoint as pools, balancers and health state key it, ordered by address then port.

    Hashed on every request, so the hash is made once, and a plain class rather than a
    dataclass: the methods a dataclass generates are interpreted Python, these are compiled.
    """

    __slots__ = ("_hash", "address", "port", "text")

    def __init__(self, address: str, port: int) -> None:
        self.address: Final = address
        self.port: Final = port
        self.text: Final = f"{address}:{port}"  # what logs and stats show
        self._hash: Final = hash((address, port))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EndpointKey):
            return NotImplemented
        return self is other or (self.port == other.port and self.address == other.address)

    def __lt__(self, other: EndpointKey) -> bool:
        return (self.address, self.port) < (other.address, other.port)

    def __repr__(self) -> str:
        return f"EndpointKey(address={self.address!r}, port={self.port})"

    def __str__(self) -> str:
        return self.text


class Pool:
    def __init__(
        self,
        cluster: str,
        breaker: CircuitBreaker,
        stats: Stats,
        *,
        connect_timeout: float = 5.0,
        max_idle_per_endpoint: int = 64,
    ) -> None:
        self.cluster = cluster
        self.breaker = breaker
        self._stats = stats
        self._labels = (("cluster", cluster),)
        self._connect_timeout = connect_timeout
        self._max_idle = max_idle_per_endpoint
        self._idle: dict[EndpointKey, list[UpstreamConnection]] = {}
        self._endpoint_of: dict[UpstreamConnection, EndpointKey] = {}
        self._waiters: deque[asyncio.Future[UpstreamConnection]] = deque()
        self._closing = False

    # -- acquiring -----------------------------------------------------------------------

    def acquire_idle(self, key: EndpointKey) -> UpstreamConnection | Overflow | None:
        """The common case without a coroutine: an idle connection to ``key`` (or the
        breaker's refusal); None when the request must wait or connect (:meth:`acquire`)."""
        idle = self._idle.get(key)
        while idle and not idle[-1].usable:
            idle.pop().close()  # closed by the upstream while idle
        if not idle:
            return None
        admission = self.breaker.try_acquire_request(idle_connection=True)
        if isinstance(admission, Overflow):
            self._stats.inc("upstream_cx_overflow", self._labels)
            return admission
        return idle.pop()

    async def acquire(self, key: EndpointKey) -> UpstreamConnection | Overflow:
        """A connection to ``key`` (or, when queued, to whichever endpoint frees first)."""
        idle = self._idle.get(key)
        admission = self.breaker.try_acquire_request(idle_connection=bool(idle))
        if isinstance(admission, Overflow):
            self._stats.inc("upstream_cx_overflow", self._labels)
            if admission.reason.name == "MAX_PENDING_REQUESTS":
                self._stats.inc("upstream_rq_pending_overflow", self._labels)
            return admission
        if admission.action is Action.ASSIGN:
            assert idle
            while idle:
                conn = idle.pop()
                if conn.usable:
                    return conn
                conn.close()  # closed by the upstream while idle; its slot frees on loss
            return await self._replace_stale(key)
        if admission.action is Action.CONNECT:
            try:
                return await self._open(key)
            except BaseException:
                self.breaker.release_request()
                raise
        return await self._wait_in_queue()

    async def _replace_stale(self, key: EndpointKey) -> UpstreamConnection:
        """The idle connections the request was admitted onto were dead: open a fresh one."""
        if not self.breaker.may_open_connection():
            self.breaker.release_request()
            raise UpstreamFailure("reset", "the upstream closed the pooled connections")
        self.breaker.on_connection_opening()
        try:
            return await self._open(key)
        except BaseException:
            self.breaker.release_request()
            raise

    async def _open(self, key: EndpointKey) -> UpstreamConnection:
        """Open a connection whose breaker slot is already reserved."""
        try:
            conn = await connect(
                key.address,
                key.port,
                self._connect_timeout,
                self._exchange_ended,
                self._connection_closed,
            )
        except BaseException as exc:
            self.breaker.on_connection_closed()
            if isinstance(exc, UpstreamFailure):
                self._stats.inc("upstream_cx_connect_fail", self._labels)
            raise
        self._endpoint_of[conn] = key
        self._stats.inc("upstream_cx_total", self._labels)
        self._stats.inc("upstream_cx_active", self._labels)
        return conn

    async def _wait_in_queue(self) -> UpstreamConnection:
        waiter: asyncio.Future[UpstreamConnection] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._stats.inc("upstream_rq_pending_active", self._labels)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed a connection just as the waiter gave up: give it back.
                self._exchange_ended(waiter.result(), True, admitted=True)
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
                self.breaker.abandon_pending()
            raise
        finally:
            self._stats.inc("upstream_rq_pending_active", self._labels, -1)

    # -- connection events ---------------------------------------------------------------

    def _exchange_ended(
        self, conn: UpstreamConnection, reusable: bool, admitted: bool = True
    ) -> None:
        if admitted:
            self.breaker.release_request()
        if not reusable or conn.closed or self._closing:
            conn.close()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            if isinstance(self.breaker.assign_pending(), Overflow):
                self._waiters.appendleft(waiter)
                break
            waiter.set_result(conn)
            return
        key = self._endpoint_of.get(conn)
        if key is None:
            conn.close()
            return
        idle = self._idle.get(key)
        if idle is None:
            idle = self._idle[key] = []
        if len(idle) >= self._max_idle:
            conn.close()
            return
        idle.append(conn)

    def _connection_closed(self, conn: UpstreamConnection) -> None:
        key = self._endpoint_of.pop(conn, None)
        if key is None:
            return
        self.breaker.on_connection_closed()
        self._stats.inc("upstream_cx_active", self._labels, -1)
        if not conn.closed_locally:
            self._stats.inc("upstream_cx_destroy_remote", self._labels)
        idle = self._idle.get(key)
        if idle is not None and conn in idle:
            idle.remove(conn)
        self._serve_waiter_with_new_connection(key)

    def _serve_waiter_with_new_connection(self, key: EndpointKey) -> None:
        if self._closing or not self._waiters or not self.breaker.may_open_connection():
            return
        waiter = self._waiters.popleft()
        if waiter.done():
            return
        admission = self.breaker.assign_pending()
        if isinstance(admission, Overflow):
            self._waiters.appendleft(waiter)
            return
        self.breaker.on_connection_opening()

        async def open_for_waiter() -> None:
            try:
                conn = await self._open(key)
            except BaseException as exc:
                self.breaker.release_request()
                if not waiter.done():
                    waiter.set_exception(exc if isinstance(exc, Exception) else UpstreamFailure(
                        "connect", "cancelled"))  # fmt: skip
                return
            if waiter.done():
                self._exchange_ended(conn, True)
            else:
                waiter.set_result(conn)

        asyncio.get_running_loop().create_task(open_for_waiter())

    # -- lifecycle -----------------------------------------------------------------------

    def sweep(self, now: float) -> None:
        """Apply idle timeouts to every connection of the pool."""
        for conn in list(self._endpoint_of):
            conn.expire(now, KEEPALIVE_IDLE)

    def remove_endpoint(self, key: EndpointKey) -> None:
        """The endpoint left the cluster: close its idle connections."""
        for conn in self._idle.pop(key, []):
            conn.close()

    def idle_count(self, key: EndpointKey) -> int:
        return len(self._idle.get(key, ()))

    def close(self) -> None:
        self._closing = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(UpstreamFailure("connect", "cluster removed"))
                with contextlib.suppress(Exception):
                    waiter.exception()
