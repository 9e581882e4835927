"""A cluster at run time: endpoints, load balancer, breaker, outlier detector, pool.

A :class:`ClusterRuntime` is built from one snapshot :class:`~mapmesh.model.snapshot.Cluster`
and survives snapshot updates that leave its policies alone: only the endpoint set is
reconciled then, so connection pools and outlier history carry over (equal config compares
equal — STYLE #5). An endpoint takes traffic when the registry does not mark it UNHEALTHY
and outlier detection has not ejected it; when every endpoint is registry-unhealthy they all
take traffic again (Route 53 and Envoy's panic mode both fail open that way). Endpoint
weights (``MAPMESH_WEIGHT`` in Cloud Map, 1 when unset) go to the load balancer with every
endpoint set, so a weight change is just another reconcile.

Ejections, returns from ejection and active health transitions are also reported as events
(``stats.events``, which the telemetry reporter sends to the control plane).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Set
from typing import Any, Final

from mapmesh.model import snapshot
from mapmesh.proxy.health_checker import ActiveHealthChecker
from mapmesh.proxy.lb import LoadBalancer, build
from mapmesh.proxy.pool import EndpointKey, Pool
from mapmesh.proxy.resilience.breaker import CircuitBreaker
from mapmesh.proxy.resilience.budget import RetryBudget
from mapmesh.proxy.resilience.health import HealthTracker, health_tracker
from mapmesh.proxy.resilience.outlier import Ejection, OutlierMonitor, outlier_detector
from mapmesh.proxy.resilience.retry import Outcome
from mapmesh.proxy.stats import Stats

__all__ = ["RETRY_FLOOR", "ClusterRuntime", "policy_key"]

RETRY_FLOOR: Final = 16


def policy_key(cluster: snapshot.Cluster) -> tuple[Any, ...]:
    """Everything about a cluster except its endpoints: equal keys keep the runtime."""
    return (
        cluster.lb_policy,
        cluster.connection_pool,
        cluster.outlier_detection,
        cluster.health_check,
        cluster.port,
        cluster.protocol,
    )


class ClusterRuntime:
    def __init__(
        self,
        config: snapshot.Cluster,
        stats: Stats,
        clock: Callable[[], float],
        rng: random.Random | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        self.name = config.name
        self.config = config
        self.policy = policy_key(config)
        self._stats = stats
        self._labels = (("cluster", config.name),)
        self._clock = clock
        # Per-request counters, looked up once (see Stats).
        self.stats_rq_total = stats.cell("upstream_rq_total", self._labels)
        # upstream_rq_xx by status // 100, and upstream_rq_5xx with them
        self.stats_rq_xx = stats.status_classes(
            "upstream_rq_xx", self._labels, server_errors="upstream_rq_5xx"
        )
        self.stats_rq_retry = stats.cell("upstream_rq_retry", self._labels)
        self.stats_rq_timeout = stats.cell("upstream_rq_timeout", self._labels)
        self.stats_per_try_timeout = stats.cell("upstream_rq_per_try_timeout", self._labels)
        self.stats_rq_time = stats.histogram("upstream_rq_time", self._labels)
        self.breaker = CircuitBreaker.from_snapshot(config.connection_pool)
        self.pool = Pool(
            config.name,
            self.breaker,
            stats,
            connect_timeout=connect_timeout,
            max_idle_per_endpoint=config.connection_pool.max_connections,
        )
        # Envoy's budget shape (20% of active requests) with a floor high enough that a few
        # concurrent clients of a failing endpoint are all retried; App Mesh set no budget.
        self.budget = RetryBudget(self.breaker, min_retry_concurrency=RETRY_FLOOR)
        self.endpoints: dict[EndpointKey, snapshot.Endpoint] = {}
        self.lb: LoadBalancer[EndpointKey] = build(config.lb_policy, [], rng=rng)
        self.outlier: OutlierMonitor[EndpointKey] = outlier_detector(config.outlier_detection)
        self._detecting = config.outlier_detection is not None  # else observe() has no work
        self.health: HealthTracker[EndpointKey] = health_tracker(config.health_check)
        self._next_expiry: float | None = None
        self.set_endpoints(config.endpoints)
        self._checker: ActiveHealthChecker | None = None
        if config.health_check is not None:
            self._checker = ActiveHealthChecker(
                self, config.health_check, stats, rng or random.Random()
            )
            self._checker.start()

    # -- membership ----------------------------------------------------------------------

    def update(self, config: snapshot.Cluster) -> None:
        """Take a new snapshot of this cluster whose policies are unchanged."""
        self.config = config
        self.set_endpoints(config.endpoints)

    def set_endpoints(self, endpoints: tuple[snapshot.Endpoint, ...]) -> None:
        new = {EndpointKey(e.address, e.port): e for e in endpoints}
        for gone in self.endpoints.keys() - new.keys():
            self.pool.remove_endpoint(gone)
        self.endpoints = new
        keys = sorted(new)
        self.lb.set_endpoints(keys, [_weight(new[key]) for key in keys])
        self.outlier.set_endpoints(keys)
        self.health.set_endpoints({k: e.health for k, e in new.items()})
        self._refresh_availability()

    def _refresh_availability(self) -> None:
        usable = {k for k, e in self.endpoints.items() if e.health != "UNHEALTHY"}
        if not usable:
            usable = set(self.endpoints)  # all registry-unhealthy: fail open
        healthy = 0
        for key in self.endpoints:
            available = (
                key in usable and self.health.is_healthy(key) and not self.outlier.is_ejected(key)
            )
            self.lb.set_available(key, available)
            healthy += available
        self._stats.set("membership_total", len(self.endpoints), self._labels)
        self._stats.set("membership_healthy", healthy, self._labels)

    # -- per request ---------------------------------------------------------------------

    def pick(self, excluded: Set[EndpointKey] = frozenset()) -> EndpointKey | None:
        if self._next_expiry is not None and self._clock() >= self._next_expiry:
            self._return_ejected()
        return self.lb.pick(excluded)

    def count(self, name: str) -> None:
        """Add one to ``name{cluster}`` (for the uncommon counters)."""
        self._stats.inc(name, self._labels)

    def observe(self, key: EndpointKey, outcome: Outcome) -> None:
        """Tell outlier detection how an attempt on ``key`` ended."""
        if not self._detecting:
            return
        now = self._clock()
        verdict = self.outlier.observe(key, outcome, now)
        if isinstance(verdict, Ejection):
            self.lb.set_available(key, False)
            self._stats.events.add(
                "ejection",
                cluster=self.name,
                endpoint=key.text,
                durationMs=round((verdict.until - now) * 1000),
            )
            self._stats.inc("outlier_detection_ejections_total", self._labels)
            self._stats.inc("outlier_detection_ejections_active", self._labels)
            self._next_expiry = self.outlier.next_expiry()
            self._refresh_availability()

    def observe_health(self, key: EndpointKey, ok: bool, reason: str) -> None:
        """An active health check's result for ``key``."""
        if key not in self.endpoints:
            return
        transition = self.health.observe(key, ok, reason)
        if transition is not None:
            self._stats.events.add(
                "health",
                cluster=self.name,
                endpoint=key.text,
                healthy=transition.status == "HEALTHY",
                reason=transition.reason,
            )
            self._refresh_availability()

    def _return_ejected(self) -> None:
        returned = self.outlier.tick(self._clock())
        if returned:
            for key in returned:
                self._stats.events.add("return", cluster=self.name, endpoint=key.text)
            self._stats.inc("outlier_detection_ejections_active", self._labels, -len(returned))
            self._refresh_availability()
        self._next_expiry = self.outlier.next_expiry()

    def snapshot_state(self) -> dict[str, Any]:
        """For the admin ``/clusters`` page."""
        self._return_ejected()
        breaker = self.breaker.statistics()
        return {
            "name": self.name,
            "virtual_node": self.config.virtual_node,
            "endpoints": [
                {
                    "address": key.address,
                    "port": key.port,
                    "registry_health": endpoint.health,
                    "weight": _weight(endpoint),
                    "ejected": self.outlier.is_ejected(key),
                    "health_check": "healthy" if self.health.is_healthy(key) else "unhealthy",
                    "idle_connections": self.pool.idle_count(key),
                }
                for key, endpoint in sorted(self.endpoints.items())
            ],
            "circuit_breaker": {
                "connections": breaker.connections,
                "max_connections": breaker.max_connections,
                "pending_requests": breaker.pending_requests,
                "max_pending_requests": breaker.max_pending_requests,
                "active_requests": breaker.active_requests,
                "max_requests": breaker.max_requests,
            },
        }

    def close(self) -> None:
        if self._checker is not None:
            self._checker.stop_soon()
        self.pool.close()


def _weight(endpoint: snapshot.Endpoint) -> int:
    return endpoint.weight if endpoint.weight is not None else 1
