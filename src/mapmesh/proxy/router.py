"""Where a request goes: route → weighted target → cluster, then a :class:`Forwarding`.

Theory of operation
-------------------
A downstream connection hands each request to :meth:`Router.handle` with the config in
force when the request arrived (a snapshot applied meanwhile does not change it). Matching
depends on the listener: *outbound* routes by the Host header to a backend's route table;
*gateway* matches gateway routes, rewrites, then routes within the target service; *inbound*
sends everything to the local app. The trip upstream — attempts, retries, timeouts — is
:class:`~mapmesh.proxy.forwarding.Forwarding`'s job.

A request that cannot be routed is answered here: 404 NR (no route), 503 UH (no target
with weight, cluster missing).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from mapmesh.proxy.cluster import ClusterRuntime
from mapmesh.proxy.config import PASSTHROUGH_TIMEOUTS, ProxyConfig
from mapmesh.proxy.deadlines import Deadlines
from mapmesh.proxy.forwarding import Forwarding, LocalReply, Target
from mapmesh.proxy.protocol.events import RequestHead
from mapmesh.proxy.protocol.headers import header_map
from mapmesh.proxy.route import NoRoute, RouteHit
from mapmesh.proxy.routing.request import RequestHead as MatchHead
from mapmesh.proxy.routing.request import split_authority
from mapmesh.proxy.routing.table import timeout_ms
from mapmesh.proxy.stats import Stats

if TYPE_CHECKING:  # the downstream module imports this one
    from mapmesh.proxy.downstream import DownstreamExchange

__all__ = ["LocalReply", "Router"]

_PASSTHROUGH_MS: Final = timeout_ms(PASSTHROUGH_TIMEOUTS)


class _LazyHeaders(Mapping[str, str]):
    """The header map route matching reads, built only if a route has header conditions."""

    __slots__ = ("_head", "_map")

    def __init__(self, head: RequestHead) -> None:
        self._head = head
        self._map: dict[str, str] | None = None

    def _built(self) -> dict[str, str]:
        if self._map is None:
            self._map = header_map(self._head.headers)
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


_AUTHORITY_CACHE: Final = 1024
_GATEWAY_HEALTHY: Final = LocalReply(200, "healthy", "")


class Router:
    def __init__(
        self,
        kind: str,
        listener_port: int,
        stats: Stats,
        clock: Callable[[], float],
        rng: random.Random,
        deadlines: Deadlines,
        *,
        inbound: Callable[[], tuple[ClusterRuntime, int, int] | None] | None = None,
        passthrough: Callable[[str, int], ClusterRuntime] | None = None,
    ) -> None:
        if kind not in ("outbound", "inbound", "gateway"):
            raise ValueError(f"unknown listener kind {kind!r}")
        self.kind = kind
        self.port = listener_port
        self._stats = stats
        self._clock = clock
        self._rng = rng
        self._deadlines = deadlines
        self._inbound = inbound
        self._passthrough = passthrough
        self._authorities: dict[bytes | None, tuple[str, int]] = {}

    def handle(self, config: ProxyConfig, exchange: DownstreamExchange) -> Forwarding | None:
        """Answer the request or start forwarding it (returned, so it can be cancelled)."""
        target = self._target(config, exchange)
        if isinstance(target, LocalReply):
            exchange.reply(target)
            return None
        forwarding = Forwarding(exchange, target, self._clock, self._deadlines)
        forwarding.start()
        return forwarding

    # -- where the request goes ----------------------------------------------------------

    def _target(self, config: ProxyConfig, exchange: DownstreamExchange) -> Target | LocalReply:
        if self.kind == "inbound":
            local = self._inbound() if self._inbound is not None else None
            if local is None:
                return LocalReply(503, "no local application is configured", "UH")
            throttled = config.inbound_limit.check()
            if throttled is not None:
                return LocalReply(429, throttled.reason, "RL", throttled.headers)
            cluster, request_ms, idle_ms = local
            return Target(cluster, request_ms, idle_ms, config.retry_policy(None))
        head = exchange.head
        host, port = self._locate(head.authority)
        exchange.destination = host  # telemetry's edge; a gateway route names its own below
        if self.kind == "outbound":
            table = config.outbound.table_of_host(host)
            if table is not None and table.always is not None and head.path[:1] == b"/":
                return self._to_route(config, exchange, table.always)  # nothing else to test
        view = MatchHead(
            head.method.decode("latin-1"),
            head.path.decode("latin-1"),
            host,
            self.port if self.kind == "gateway" else port,
            "http",
            _LazyHeaders(head),
        )
        path = new_host = None
        if self.kind == "gateway":
            if head.path == config.health_path:
                return _GATEWAY_HEALTHY
            gateway_hit = config.gateway.match(view)
            if isinstance(gateway_hit, NoRoute):
                return self._no_route(gateway_hit)
            exchange.destination = gateway_hit.virtual_service
            throttled = config.gateway_limits[gateway_hit.index].check()
            if throttled is not None:
                return LocalReply(429, throttled.reason, "RL", throttled.headers)
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
                outside = self._passthrough(host, port)
                request_ms, idle_ms = _PASSTHROUGH_MS
                return Target(outside, request_ms, idle_ms, config.retry_policy(None))
            return self._no_route(hit)
        return self._to_route(config, exchange, hit, path, new_host)

    def _to_route(
        self,
        config: ProxyConfig,
        exchange: DownstreamExchange,
        hit: RouteHit,
        path: str | None = None,
        new_host: str | None = None,
    ) -> Target | LocalReply:
        exchange.route_name = hit.name
        weighted = hit.picker.choose(self._rng)
        if weighted is None:
            return LocalReply(503, f"route {hit.name} has no target with weight", "UH")
        name = weighted.cluster
        cluster = config.clusters.get(name)
        if cluster is None:
            return LocalReply(503, f"cluster {name} is not configured", "UH")
        return Target(
            cluster,
            hit.request_ms,
            hit.idle_ms,
            config.retry_policy(hit.route),
            path,
            new_host,
        )

    def _locate(self, authority: bytes | None) -> tuple[str, int]:
        """``split_authority`` of a Host value, remembered: clients name few hosts."""
        located = self._authorities.get(authority)
        if located is None:
            located = split_authority((authority or b"").decode("latin-1"), self.port)
            if len(self._authorities) >= _AUTHORITY_CACHE:
                self._authorities.clear()  # a client inventing hosts: start over
            self._authorities[authority] = located
        return located

    def _no_route(self, miss: NoRoute) -> LocalReply:
        self._stats.inc("downstream_rq_rejected", (("reason", miss.cause),))
        return LocalReply(miss.status, miss.reason, miss.flag)
