"""The request flow: route → weighted target → load balancer → pool → upstream, with
retries and timeouts around the upstream part.

Theory of operation
-------------------
A downstream connection hands each request to :meth:`Router.handle` with the config in
force when the request arrived (a snapshot applied meanwhile does not change it). Matching
depends on the listener: *outbound* routes by the Host header to a backend's route table;
*gateway* matches gateway routes, rewrites, then routes within the target service; *inbound*
sends everything to the local app.

Each attempt: pick an endpoint not tried yet, ask the pool for a connection (the breaker
may refuse: 503 UO with ``x-mapmesh-overloaded: true``), send head and body, wait for the
response head until the attempt deadline (per-try timeout or request deadline, whichever is
first). The outcome — a status or a local failure — goes to outlier detection and to the
retry state, which answers Done, Retry (after a short backoff, on another endpoint when one
exists) or NoRetry with a reason. The response that is used streams to the client as it
arrives; a discarded one closes its connection.

Every response the proxy generates names its reason in the body and carries an Envoy-style
flag in the access log: NR no route, UH no healthy upstream, UF connect failure, UC reset,
UT timeout, URX retry limit exceeded, UO overflow, UPE upstream protocol error.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from mapmesh.model import snapshot
from mapmesh.proxy.cluster import ClusterRuntime
from mapmesh.proxy.config import PASSTHROUGH_TIMEOUTS, ProxyConfig
from mapmesh.proxy.pool import EndpointKey
from mapmesh.proxy.protocol.events import RequestHead, ResponseHead
from mapmesh.proxy.protocol.headers import header_map
from mapmesh.proxy.protocol.http1 import request_head_bytes
from mapmesh.proxy.resilience.breaker import OVERLOADED_HEADER, Overflow
from mapmesh.proxy.resilience.retry import Done, Failure, NoRetry, Outcome, Retry, RetryState
from mapmesh.proxy.route import NoRoute, RouteHit
from mapmesh.proxy.routing.request import RequestHead as MatchHead
from mapmesh.proxy.routing.request import split_authority
from mapmesh.proxy.stats import CODE_CLASS, Stats
from mapmesh.proxy.upstream import UpstreamConnection, UpstreamFailure

__all__ = ["Exchange", "LocalReply", "Router"]

_OVERLOADED = ((OVERLOADED_HEADER[0].encode(), OVERLOADED_HEADER[1].encode()),)


@dataclass(frozen=True, slots=True)
class LocalReply:
    """A response the proxy generates: status, reason (the body), flag, extra headers."""

    status: int
    reason: str
    flag: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


_OVERFLOW_REPLY = LocalReply(503, "upstream overloaded (circuit breaker open)", "UO", _OVERLOADED)
_TIMEOUT_REPLY = LocalReply(504, "upstream request timeout", "UT")
_REQUEST_TIMEOUT_REPLY = LocalReply(
    408, "request timeout: the client did not send the whole request in time", "DT"
)


class Exchange(Protocol):
    """What the router needs from the downstream side of one request."""

    head: RequestHead
    request_id: bytes
    extra_headers: tuple[tuple[bytes, bytes], ...]
    flags: list[str]
    upstream: str | None
    route_name: str | None

    def body_ready(self) -> asyncio.Future[bytes | None]:
        """The whole body when it is small enough to replay; None when it must stream."""
        ...

    def stream_body_to(self, conn: UpstreamConnection) -> None: ...

    def respond(self, response: ResponseHead, conn: UpstreamConnection) -> None: ...

    def reply(self, reply: LocalReply) -> None: ...


@dataclass(frozen=True, slots=True)
class _Answered:
    response: ResponseHead
    conn: UpstreamConnection


@dataclass(frozen=True, slots=True)
class _Failed:
    outcome: Failure
    reply: LocalReply


@dataclass(frozen=True, slots=True)
class _Target:
    cluster: ClusterRuntime
    route: snapshot.Route | None
    timeouts: snapshot.Timeouts | None
    path: str | None = None  # gateway rewrites
    host: str | None = None


class _LazyHeaders(Mapping[str, str]):
    """The header map route matching reads, built only if a route has header conditions."""

    __slots__ = ("_fields", "_map")

    def __init__(self, fields: list[tuple[bytes, bytes]]) -> None:
        self._fields = fields
        self._map: dict[str, str] | None = None

    def _built(self) -> dict[str, str]:
        if self._map is None:
            self._map = header_map(self._fields)
        return self._map

    def __getitem__(self, name: str) -> str:
        return self._built()[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self._built().get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._built()

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())


def _expire(future: asyncio.Future[ResponseHead]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


async def _within(future: asyncio.Future[ResponseHead], seconds: float | None) -> ResponseHead:
    """Await ``future`` for at most ``seconds``: one timer handle, unlike ``wait_for``,
    which also makes a waiter future and callbacks per call."""
    if seconds is None:
        return await future
    handle = future.get_loop().call_later(seconds, _expire, future)
    try:
        return await future
    finally:
        handle.cancel()


class Router:
    def __init__(
        self,
        kind: str,
        listener_port: int,
        stats: Stats,
        clock: Callable[[], float],
        rng: random.Random,
        *,
        inbound: Callable[[], tuple[ClusterRuntime, snapshot.Timeouts] | None] | None = None,
        passthrough: Callable[[str, int], ClusterRuntime] | None = None,
    ) -> None:
        if kind not in ("outbound", "inbound", "gateway"):
            raise ValueError(f"unknown listener kind {kind!r}")
        self.kind = kind
        self.port = listener_port
        self._stats = stats
        self._clock = clock
        self._rng = rng
        self._inbound = inbound
        self._passthrough = passthrough

    async def handle(self, config: ProxyConfig, exchange: Exchange) -> None:
        target = self._target(config, exchange)
        if isinstance(target, LocalReply):
            exchange.reply(target)
            return
        await self._forward(config, exchange, target)

    # -- where the request goes ----------------------------------------------------------

    def _target(self, config: ProxyConfig, exchange: Exchange) -> _Target | LocalReply:
        if self.kind == "inbound":
            local = self._inbound() if self._inbound is not None else None
            if local is None:
                return LocalReply(503, "no local application is configured", "UH")
            return _Target(local[0], None, local[1])
        head = exchange.head
        host, port = split_authority((head.authority or b"").decode("latin-1"), self.port)
        view = MatchHead(
            head.method.decode("latin-1"),
            head.path.decode("latin-1"),
            host,
            self.port if self.kind == "gateway" else port,
            "http",
            _LazyHeaders(head.headers),
        )
        path = new_host = None
        if self.kind == "gateway":
            gateway_hit = config.gateway.match(view)
            if isinstance(gateway_hit, NoRoute):
                return self._no_route(gateway_hit)
            path, new_host = gateway_hit.rewrite(view)
            view = gateway_hit.forward(view)
            table = config.outbound.table(gateway_hit.virtual_service)
            hit: RouteHit | NoRoute = (
                table.match(view)
                if table is not None
                else NoRoute("empty_table", f"{gateway_hit.virtual_service} has no route table")
            )
        else:
            hit = config.outbound.match(view)
        if isinstance(hit, NoRoute):
            if hit.egress_allowed and self._passthrough is not None:
                return _Target(self._passthrough(host, port), None, PASSTHROUGH_TIMEOUTS)
            return self._no_route(hit)
        exchange.route_name = hit.route.name
        weighted = hit.picker.choose(self._rng)
        if weighted is None:
            return LocalReply(503, f"route {hit.route.name} has no target with weight", "UH")
        cluster = config.clusters.get(weighted.cluster)
        if cluster is None:
            return LocalReply(503, f"cluster {weighted.cluster} is not configured", "UH")
        return _Target(cluster, hit.route, hit.route.timeout, path, new_host)

    def _no_route(self, miss: NoRoute) -> LocalReply:
        self._stats.inc("downstream_rq_rejected", (("reason", miss.cause),))
        return LocalReply(miss.status, miss.reason, miss.flag)

    # -- attempts ------------------------------------------------------------------------

    async def _forward(self, config: ProxyConfig, exchange: Exchange, target: _Target) -> None:
        cluster = target.cluster
        labels = (("cluster", cluster.name),)
        request_ms = target.timeouts.request_ms if target.timeouts is not None else None
        deadline = self._clock() + request_ms / 1000 if request_ms else None
        ready = exchange.body_ready()
        try:
            body = (
                ready.result()
                if ready.done()
                else await asyncio.wait_for(ready, self._left(deadline))
            )
        except TimeoutError:
            exchange.reply(_REQUEST_TIMEOUT_REPLY)
            return
        retry = config.retry_policy(target.route).start(
            request_deadline=deadline,
            replayable=body is not None or not exchange.head.has_body,
            budget=cluster.budget,
        )
        head_bytes = request_head_bytes(
            exchange.head,
            target=target.path.encode("latin-1") if target.path is not None else None,
            host=target.host.encode("latin-1") if target.host is not None else None,
            request_id=exchange.request_id,
            extra=exchange.extra_headers,
        )
        tried: set[EndpointKey] = set()
        try:
            while True:
                result = await self._attempt(exchange, cluster, retry, tried, head_bytes, body)
                if result is None:
                    exchange.reply(_OVERFLOW_REPLY)
                    return
                outcome: Outcome = (
                    result.response.status if isinstance(result, _Answered) else result.outcome
                )
                decision = retry.on_attempt_result(outcome, self._clock())
                if isinstance(decision, Retry):
                    if isinstance(result, _Answered):
                        result.conn.discard()
                    self._stats.inc("upstream_rq_retry", labels)
                    if decision.backoff:
                        await asyncio.sleep(decision.backoff)
                    continue
                reply = result.reply if isinstance(result, _Failed) else None
                if isinstance(decision, NoRetry):
                    self._stats.inc("upstream_rq_" + decision.reason.counter, labels)
                    if decision.flag is not None:
                        exchange.flags.append(decision.flag)
                    if decision.reason.name == "OVERALL_DEADLINE":
                        self._stats.inc("upstream_rq_timeout", labels)
                        reply = _TIMEOUT_REPLY
                assert isinstance(decision, Done | NoRetry)
                if isinstance(result, _Answered):
                    idle_ms = target.timeouts.idle_ms if target.timeouts is not None else 0
                    result.conn.idle_timeout = idle_ms / 1000 if idle_ms else None
                    exchange.respond(result.response, result.conn)
                elif reply is not None:
                    exchange.reply(reply)
                return
        finally:
            retry.close()

    async def _attempt(
        self,
        exchange: Exchange,
        cluster: ClusterRuntime,
        retry: RetryState,
        tried: set[EndpointKey],
        head_bytes: bytes,
        body: bytes | None,
    ) -> _Answered | _Failed | None:
        """One attempt: a response head, a failure, or None when the breaker overflowed."""
        key = cluster.pick(tried)
        if key is None:
            return _Failed(
                Failure.CONNECT_FAILURE,
                LocalReply(503, f"no healthy upstream in {cluster.name}", "UH"),
            )
        tried.add(key)
        exchange.upstream = str(key)
        labels = (("cluster", cluster.name),)
        deadline = retry.attempt_deadline(self._clock())
        try:
            acquired = cluster.pool.acquire_idle(key)
            if acquired is None:
                acquired = await asyncio.wait_for(cluster.pool.acquire(key), self._left(deadline))
        except TimeoutError:
            return _Failed(Failure.PER_TRY_TIMEOUT, _TIMEOUT_REPLY)
        except UpstreamFailure as failure:
            cluster.observe(key, Failure.CONNECT_FAILURE)
            return _Failed(
                Failure.CONNECT_FAILURE,
                LocalReply(503, f"upstream connect error: {failure.detail}", "UF"),
            )
        if isinstance(acquired, Overflow):
            return None
        conn = acquired
        cluster.lb.on_request_start(key)
        self._stats.inc("upstream_rq_total", labels)
        try:
            answer = conn.send(exchange.head.method, head_bytes + (body or b""))
            if body is None and exchange.head.has_body:
                exchange.stream_body_to(conn)
            response = await _within(answer, self._left(deadline))
        except TimeoutError:
            conn.discard()
            self._stats.inc("upstream_rq_per_try_timeout", labels)
            cluster.observe(key, Failure.PER_TRY_TIMEOUT)
            return _Failed(Failure.PER_TRY_TIMEOUT, _TIMEOUT_REPLY)
        except UpstreamFailure as failure:
            conn.discard()
            cluster.observe(key, Failure.CONNECTION_RESET)
            if failure.kind == "protocol":
                reply = LocalReply(502, f"upstream protocol error: {failure.detail}", "UPE")
            else:
                reply = LocalReply(503, f"upstream reset: {failure.detail}", "UC")
            return _Failed(Failure.CONNECTION_RESET, reply)
        finally:
            cluster.lb.on_request_end(key)
        status = response.status
        cluster.observe(key, status)
        self._stats.inc("upstream_rq_xx", (*labels, CODE_CLASS[min(status // 100, 9)]))
        if status >= 500:
            self._stats.inc("upstream_rq_5xx", labels)
        return _Answered(response, conn)

    def _left(self, deadline: float | None) -> float | None:
        return None if deadline is None else max(deadline - self._clock(), 0.0)
