"""A snapshot compiled for the request path, and the swap that applies a new one.

:class:`ProxyConfig` is immutable once built: route matchers compiled, retry policies
built, clusters bound. Applying a snapshot builds a new config and swaps one reference, so a
request in flight finishes on the config it started with. Cluster runtimes are reused across
configs when their policies are unchanged — pools, breaker counts and outlier history carry
over; only endpoints are reconciled. Rate limiters likewise keep their buckets while their
limit is unchanged (:class:`RateLimiterSet`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from mapmesh.model import snapshot
from mapmesh.model.snapshot import Route, Snapshot
from mapmesh.proxy.cluster import ClusterRuntime, policy_key
from mapmesh.proxy.resilience.ratelimit import TokenBucket, retry_after
from mapmesh.proxy.resilience.retry import RetryPolicy
from mapmesh.proxy.route import CompiledGatewayRoutes, OutboundRoutes
from mapmesh.proxy.stats import Stats

__all__ = [
    "NO_RATE_LIMIT",
    "PASSTHROUGH_TIMEOUTS",
    "ClusterSet",
    "ConfigSource",
    "ProxyConfig",
    "RateLimiter",
    "RateLimiterSet",
    "Throttled",
    "Unlimited",
    "build_config",
]


@dataclass(frozen=True, slots=True)
class Throttled:
    """A request over its rate limit: the reason (the 429's body) and its ``Retry-After``."""

    reason: str
    headers: tuple[tuple[bytes, bytes], ...]


class RateLimiter:
    """One rate limit as the router meets it: :meth:`check` takes a token from the bucket, or
    counts ``ratelimit_over_limit`` and says what to answer."""

    __slots__ = ("_clock", "_labels", "_reason", "_stats", "bucket", "policy")

    def __init__(
        self,
        policy: snapshot.RateLimit,
        what: str,
        labels: tuple[tuple[str, str], ...],
        stats: Stats,
        clock: Callable[[], float],
    ) -> None:
        self.policy = policy
        self.bucket = TokenBucket(policy.requests * 1000 / policy.per_ms, policy.burst, clock())
        unit = "second" if policy.per_ms == 1000 else "minute"
        requests = f"{policy.requests} request" + ("" if policy.requests == 1 else "s")
        self._reason = f"rate limited: {what} allows {requests} per {unit}"
        self._labels = labels
        self._stats = stats
        self._clock = clock

    def check(self) -> Throttled | None:
        """None: go on (the common case allocates nothing); else answer 429."""
        wait = self.bucket.take(self._clock())
        if not wait:
            return None
        self._stats.inc("ratelimit_over_limit", self._labels)
        seconds = str(retry_after(wait)).encode()
        return Throttled(self._reason, ((b"retry-after", seconds),))


class Unlimited:
    """The limiter of a route or listener without a rate limit: always goes on."""

    __slots__ = ()

    def check(self) -> Throttled | None:
        return None


NO_RATE_LIMIT = Unlimited()
Limiter = RateLimiter | Unlimited


@dataclass(frozen=True)
class ProxyConfig:
    snapshot: Snapshot
    version: int
    outbound: OutboundRoutes
    gateway: CompiledGatewayRoutes
    clusters: dict[str, ClusterRuntime]
    retry_policies: dict[int, RetryPolicy] = field(default_factory=dict)  # id(route) -> policy
    gateway_limits: tuple[Limiter, ...] = ()  # by gateway route, as snapshot.gateway_routes
    inbound_limit: Limiter = NO_RATE_LIMIT  # a sidecar's inbound listener
    health_path: bytes | None = None  # a gateway answers its listener's health check itself

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


class ConfigSource:
    """The config in force, as a listener's getter: calling it returns ``current``.

    A compiled object rather than a lambda: every request asks for the config, and a lambda
    is an interpreted call each time. The process sets ``current`` when a snapshot applies.
    """

    __slots__ = ("current",)

    def __init__(self, current: ProxyConfig | None = None) -> None:
        self.current = current

    def __call__(self) -> ProxyConfig | None:
        return self.current


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


class RateLimiterSet:
    """The rate limiters alive across configs, by what they limit (a gateway route's name, an
    inbound listener's port). A limit that is unchanged in a new snapshot keeps its bucket, so
    an unrelated config change neither refills nor empties it; a changed limit starts full."""

    def __init__(self, stats: Stats, clock: Callable[[], float]) -> None:
        self._stats = stats
        self._clock = clock
        self._live: dict[tuple[str, str], RateLimiter] = {}

    def reconcile(self, snap: snapshot.Snapshot) -> tuple[tuple[Limiter, ...], Limiter]:
        """(a limiter per gateway route, in order; the inbound listener's limiter)."""
        current: dict[tuple[str, str], RateLimiter] = {}
        gateway = tuple(
            self._limiter(current, "gateway_route", route.name, route.rate_limit)
            for route in snap.gateway_routes
        )
        inbound: Limiter = NO_RATE_LIMIT
        if snap.kind == "virtualNode" and snap.listeners:
            listener = snap.listeners[0]  # the one the inbound port serves
            inbound = self._limiter(current, "listener", str(listener.port), listener.rate_limit)
        self._live = current
        return gateway, inbound

    def _limiter(
        self,
        current: dict[tuple[str, str], RateLimiter],
        scope: str,
        name: str,
        policy: snapshot.RateLimit | None,
    ) -> Limiter:
        if policy is None:
            return NO_RATE_LIMIT
        key = (scope, name)
        limiter = self._live.get(key)
        if limiter is None or limiter.policy != policy:
            what = f"gateway route {name}" if scope == "gateway_route" else f"listener {name}"
            labels = (("scope", scope), ("name", name))
            limiter = RateLimiter(policy, what, labels, self._stats, self._clock)
        current[key] = limiter
        return limiter


def build_config(
    snap: snapshot.Snapshot,
    version: int,
    clusters: ClusterSet,
    limits: RateLimiterSet | None = None,
) -> ProxyConfig:
    """Compile ``snap``; raises (before anything is swapped) when it cannot be enforced.

    ``limits`` carries rate-limit buckets across configs (without it they start full)."""
    if snap.format_version != snapshot.FORMAT_VERSION:
        raise ValueError(f"unknown snapshot format {snap.format_version}")
    outbound = OutboundRoutes.from_snapshot(snap.route_tables, snap.egress_filter)
    gateway = CompiledGatewayRoutes.from_snapshot(snap.gateway_routes)
    policies = {
        id(route): RetryPolicy.from_snapshot(route.retry)
        for table in snap.route_tables
        for route in table.routes
    }
    if limits is None:
        limits = RateLimiterSet(clusters._stats, clusters._clock)
    gateway_limits, inbound_limit = limits.reconcile(snap)
    runtimes = clusters.reconcile(snap.clusters)
    return ProxyConfig(
        snap,
        version,
        outbound,
        gateway,
        runtimes,
        policies,
        gateway_limits,
        inbound_limit,
        _gateway_health_path(snap),
    )


def _gateway_health_path(snap: Snapshot) -> bytes | None:
    """The path of a gateway listener's HTTP health check: the gateway answers it (200 while
    it has a config) so a load balancer or container health check in front can probe it."""
    if snap.kind != "virtualGateway":
        return None
    for listener in snap.listeners:
        check = listener.health_check
        if check is not None and check.protocol in ("http", "http2") and check.path:
            return check.path.encode("latin-1")
    return None
