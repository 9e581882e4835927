"""A snapshot compiled for the request path, and the swap that applies a new one.

:class:`ProxyConfig` is immutable once built: route matchers compiled, retry policies
built, clusters bound. Applying a snapshot builds a new config and swaps one reference, so a
request in flight finishes on the config it started with. Cluster runtimes are reused across
configs when their policies are unchanged — pools, breaker counts and outlier history carry
over; only endpoints are reconciled.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from mapmesh.model import snapshot
from mapmesh.model.snapshot import Route, Snapshot
from mapmesh.proxy.cluster import ClusterRuntime, policy_key
from mapmesh.proxy.resilience.retry import RetryPolicy
from mapmesh.proxy.route import CompiledGatewayRoutes, OutboundRoutes
from mapmesh.proxy.stats import Stats

__all__ = ["PASSTHROUGH_TIMEOUTS", "ClusterSet", "ProxyConfig", "build_config"]


@dataclass(frozen=True)
class ProxyConfig:
    snapshot: Snapshot
    version: int
    outbound: OutboundRoutes
    gateway: CompiledGatewayRoutes
    clusters: dict[str, ClusterRuntime]
    retry_policies: dict[int, RetryPolicy] = field(default_factory=dict)  # id(route) -> policy

    def retry_policy(self, route: Route | None) -> RetryPolicy:
        """The route's retry policy; no retries for the inbound listener (route None)."""
        policy = self.retry_policies.get(id(route)) if route is not None else None
        return policy if policy is not None else _NO_RETRIES


_NO_RETRIES = RetryPolicy.from_snapshot(None)

# Egress passthrough uses the defaults a route would get (docs/defaults.md).
PASSTHROUGH_POOL = snapshot.ConnectionPool(
    max_connections=1024, max_pending_requests=1024, max_requests=1024
)
PASSTHROUGH_TIMEOUTS = snapshot.Timeouts(request_ms=15_000, idle_ms=300_000)


class ClusterSet:
    """The cluster runtimes alive across configs, reconciled on every snapshot.

    ``connect_timeout`` (seconds) bounds every upstream connect of every cluster's pool. App
    Mesh has no field for it, so it is a proxy setting (``--connect-timeout``), not snapshot
    content; a connect that times out answers 503 UF like any other connect failure.
    """

    def __init__(
        self,
        stats: Stats,
        clock: Callable[[], float],
        rng: random.Random,
        *,
        connect_timeout: float = 5.0,
    ) -> None:
        if not connect_timeout > 0:
            raise ValueError(f"connect_timeout: must be > 0 seconds, got {connect_timeout}")
        self._stats = stats
        self._clock = clock
        self._rng = rng
        self.connect_timeout = connect_timeout
        self.runtimes: dict[str, ClusterRuntime] = {}
        self._passthrough: dict[str, ClusterRuntime] = {}

    def reconcile(self, clusters: tuple[snapshot.Cluster, ...]) -> dict[str, ClusterRuntime]:
        current: dict[str, ClusterRuntime] = {}
        for cluster in clusters:
            runtime = self.runtimes.get(cluster.name)
            if runtime is not None and runtime.policy == policy_key(cluster):
                runtime.update(cluster)
            else:
                if runtime is not None:
                    runtime.close()
                runtime = ClusterRuntime(
                    cluster, self._stats, self._clock, self._rng, self.connect_timeout
                )
            current[cluster.name] = runtime
        for name, runtime in self.runtimes.items():
            if name not in current:
                runtime.close()
        self.runtimes = current
        return current

    def passthrough(self, host: str, port: int) -> ClusterRuntime:
        """A cluster for a host outside the mesh (egress filter ALLOW_ALL), made on demand."""
        name = f"passthrough|{host}:{port}"
        runtime = self._passthrough.get(name)
        if runtime is None:
            cluster = snapshot.Cluster(
                name=name,
                virtual_node="",
                port=port,
                protocol="http",
                lb_policy="round_robin",
                connection_pool=PASSTHROUGH_POOL,
                outlier_detection=None,
                health_check=None,
                discovery=snapshot.Discovery(
                    kind="dns", hostname=host, ip_preference="IPv4_PREFERRED"
                ),
                endpoints=(snapshot.Endpoint(address=host, port=port, health="UNKNOWN"),),
            )
            runtime = self._passthrough[name] = ClusterRuntime(
                cluster, self._stats, self._clock, self._rng, self.connect_timeout
            )
        return runtime

    def sweep(self, now: float) -> None:
        for runtime in (*self.runtimes.values(), *self._passthrough.values()):
            runtime.pool.sweep(now)

    def close(self) -> None:
        for runtime in (*self.runtimes.values(), *self._passthrough.values()):
            runtime.close()
        self.runtimes = {}
        self._passthrough = {}


def build_config(snap: snapshot.Snapshot, version: int, clusters: ClusterSet) -> ProxyConfig:
    """Compile ``snap``; raises (before anything is swapped) when it cannot be enforced."""
    if snap.format_version != snapshot.FORMAT_VERSION:
        raise ValueError(f"unknown snapshot format {snap.format_version}")
    outbound = OutboundRoutes.from_snapshot(snap.route_tables, snap.egress_filter)
    gateway = CompiledGatewayRoutes.from_snapshot(snap.gateway_routes)
    policies = {
        id(route): RetryPolicy.from_snapshot(route.retry)
        for table in snap.route_tables
        for route in table.routes
    }
    runtimes = clusters.reconcile(snap.clusters)
    return ProxyConfig(snap, version, outbound, gateway, runtimes, policies)
