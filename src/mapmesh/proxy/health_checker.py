"""Active health checks of a cluster's endpoints, as configured on the target node's listener.

One task per cluster with a health check: every ``interval_ms`` it probes each endpoint
(HTTP GET of the path, or a TCP connect) within ``timeout_ms``, and feeds the result to the
cluster, whose :class:`~mapmesh.proxy.resilience.health.ClusterHealth` applies the healthy
and unhealthy thresholds and takes endpoints in and out of the load balancer. Probes of one
round run concurrently; the first round starts at a random offset so many proxies do not
probe in lockstep.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

from mapmesh.core.probes import ProbeTarget, probe
from mapmesh.model.health import HealthCheckType
from mapmesh.model.snapshot import HealthCheck
from mapmesh.proxy.stats import Stats

if TYPE_CHECKING:
    from mapmesh.proxy.cluster import ClusterRuntime

__all__ = ["ActiveHealthChecker"]

_TYPES = {"http": HealthCheckType.HTTP, "http2": HealthCheckType.HTTP, "grpc": HealthCheckType.TCP,
          "tcp": HealthCheckType.TCP}  # fmt: skip


class ActiveHealthChecker:
    def __init__(
        self, cluster: ClusterRuntime, check: HealthCheck, stats: Stats, rng: random.Random
    ) -> None:
        self._cluster = cluster
        self._check = check
        self._stats = stats
        self._rng = rng
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop_soon(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        interval = self._check.interval_ms / 1000
        await asyncio.sleep(self._rng.uniform(0, interval))
        while True:
            await self.probe_all()
            await asyncio.sleep(interval)

    async def probe_all(self) -> None:
        check = self._check
        kind = _TYPES.get(check.protocol, HealthCheckType.TCP)
        keys = list(self._cluster.endpoints)
        # The listener's port names the node's port; endpoints may be reached on another
        # (an instance's AWS_INSTANCE_PORT), so only an explicitly configured port overrides.
        port = None if "port" in check.defaulted else check.port
        results = await asyncio.gather(
            *(
                probe(
                    ProbeTarget(kind, key.address, port or key.port, check.path or "/"),
                    check.timeout_ms / 1000,
                )
                for key in keys
            )
        )
        labels = (("cluster", self._cluster.name),)
        for key, result in zip(keys, results, strict=True):
            self._stats.inc("health_check_success" if result.ok else "health_check_failure", labels)
            self._cluster.observe_health(key, result.ok, result.reason)
