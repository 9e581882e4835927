"""Active health checking, as the proxy sees it: probe results in, transitions out.

Theory of operation
-------------------
A virtual node's listener may configure a ``healthCheck``; the proxies that call that node
probe each of its endpoints (Envoy's active health checking, which App Mesh configures). The
prober is I/O and lives elsewhere; this module only keeps the score.

Rules (Envoy's, with its two thresholds):

* an endpoint starts **healthy** when the registry says HEALTHY or UNKNOWN, **unhealthy** when
  it says UNHEALTHY — a new endpoint is not held back until its first probe, and one the
  registry already distrusts must earn its way in;
* ``unhealthy_threshold`` consecutive failures make a healthy endpoint unhealthy;
* ``healthy_threshold`` consecutive successes make an unhealthy endpoint healthy;
* any result that agrees with the current state resets the streak.

Transition table (``s`` = streak before the observation, ``u``/``h`` the thresholds)::

    state      result   s + 1 < threshold   s + 1 == threshold
    healthy    ok       s := 0              s := 0
    healthy    fail     s := s + 1          -> unhealthy, s := 0   (threshold u)
    unhealthy  fail     s := 0              s := 0
    unhealthy  ok       s := s + 1          -> healthy, s := 0     (threshold h)

:meth:`EndpointHealth.observe` returns the :class:`Transition` (with the reason of the probe
that caused it) or ``None``. An endpoint takes traffic when the registry does not say
UNHEALTHY, this state is healthy and the outlier detector has not ejected it — the caller
combines the three and tells the load balancer (``docs/resilience.md``).

:class:`ClusterHealth` holds one state per endpoint of a cluster; clusters without a health
check get :class:`NoHealthCheck`, under which every endpoint counts as healthy (the registry
alone decides). O(1) per observation.

Approximations against Envoy: no "degraded" state, no ``no_traffic_interval``, no immediate
failure on ``x-envoy-immediate-health-check-fail``; a timeout is simply a failed probe.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from mapmesh.model import snapshot

__all__ = [
    "ClusterHealth",
    "EndpointHealth",
    "HealthStatistics",
    "HealthTracker",
    "NoHealthCheck",
    "Status",
    "Transition",
    "health_tracker",
]

K = TypeVar("K", bound=Hashable)

Status = Literal["HEALTHY", "UNHEALTHY"]


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of an endpoint's active-check status and the probe result that caused it."""

    previous: Status
    status: Status
    reason: str


class EndpointHealth:
    """Active-check state of one endpoint (see the module docstring)."""

    __slots__ = ("_healthy", "_streak", "healthy_threshold", "unhealthy_threshold")

    def __init__(
        self,
        healthy_threshold: int,
        unhealthy_threshold: int,
        registry: snapshot.HealthState = "UNKNOWN",
    ) -> None:
        if healthy_threshold < 1:
            raise ValueError(
                f"health_check.healthy_threshold: must be >= 1, got {healthy_threshold}"
            )
        if unhealthy_threshold < 1:
            raise ValueError(
                f"health_check.unhealthy_threshold: must be >= 1, got {unhealthy_threshold}"
            )
        self.healthy_threshold = healthy_threshold
        self.unhealthy_threshold = unhealthy_threshold
        self._healthy = registry != "UNHEALTHY"
        self._streak = 0

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def status(self) -> Status:
        return "HEALTHY" if self._healthy else "UNHEALTHY"

    @property
    def streak(self) -> int:
        """Consecutive results so far that disagree with the current status."""
        return self._streak

    def observe(self, ok: bool, reason: str) -> Transition | None:
        """Feed one probe result; the transition it caused, if any."""
        if ok is self._healthy:
            self._streak = 0
            return None
        self._streak += 1
        threshold = self.healthy_threshold if ok else self.unhealthy_threshold
        if self._streak < threshold:
            return None
        previous = self.status
        self._healthy = ok
        self._streak = 0
        return Transition(previous=previous, status=self.status, reason=reason)

    def __repr__(self) -> str:
        return f"<EndpointHealth {self.status} streak={self._streak}>"


@dataclass(frozen=True, slots=True)
class HealthStatistics:
    enabled: bool
    endpoints: int
    healthy: int
    transitions: int
    probes: int
    failures: int


class HealthTracker(Protocol[K]):
    """What a cluster needs from its active health state, real or null."""

    def observe(self, key: K, ok: bool, reason: str) -> Transition | None: ...

    def is_healthy(self, key: K) -> bool: ...

    def set_endpoints(self, endpoints: Mapping[K, snapshot.HealthState]) -> None: ...

    def statistics(self) -> HealthStatistics: ...


class ClusterHealth(Generic[K]):
    """One :class:`EndpointHealth` per endpoint of a cluster with a health check."""

    __slots__ = ("_failures", "_probes", "_states", "_transitions", "check")

    def __init__(
        self,
        check: snapshot.HealthCheck,
        endpoints: Mapping[K, snapshot.HealthState] | None = None,
    ) -> None:
        self.check = check
        self._states: dict[K, EndpointHealth] = {}
        self._probes = 0
        self._failures = 0
        self._transitions = 0
        self.set_endpoints(endpoints or {})

    def observe(self, key: K, ok: bool, reason: str) -> Transition | None:
        """One probe result for ``key`` (ignored when ``key`` left the cluster)."""
        state = self._states.get(key)
        if state is None:
            return None
        self._probes += 1
        if not ok:
            self._failures += 1
        transition = state.observe(ok, reason)
        if transition is not None:
            self._transitions += 1
        return transition

    def is_healthy(self, key: K) -> bool:
        state = self._states.get(key)
        return state is not None and state.healthy

    def state(self, key: K) -> EndpointHealth | None:
        return self._states.get(key)

    def set_endpoints(self, endpoints: Mapping[K, snapshot.HealthState]) -> None:
        """Follow the cluster's endpoints; kept endpoints keep their state, new ones start
        from the registry's status."""
        self._states = {
            key: self._states.get(key)
            or EndpointHealth(
                self.check.healthy_threshold, self.check.unhealthy_threshold, registry
            )
            for key, registry in endpoints.items()
        }

    def statistics(self) -> HealthStatistics:
        return HealthStatistics(
            enabled=True,
            endpoints=len(self._states),
            healthy=sum(1 for s in self._states.values() if s.healthy),
            transitions=self._transitions,
            probes=self._probes,
            failures=self._failures,
        )


class NoHealthCheck(Generic[K]):
    """The null tracker of a cluster without a health check: every endpoint is healthy as
    far as active checking goes (the registry's status still applies)."""

    __slots__ = ("_endpoints",)

    def __init__(self, endpoints: Mapping[K, snapshot.HealthState] | None = None) -> None:
        self._endpoints = len(endpoints or {})

    def observe(self, key: K, ok: bool, reason: str) -> Transition | None:
        return None

    def is_healthy(self, key: K) -> bool:
        return True

    def set_endpoints(self, endpoints: Mapping[K, snapshot.HealthState]) -> None:
        self._endpoints = len(endpoints)

    def statistics(self) -> HealthStatistics:
        return HealthStatistics(
            enabled=False,
            endpoints=self._endpoints,
            healthy=self._endpoints,
            transitions=0,
            probes=0,
            failures=0,
        )


def health_tracker(
    check: snapshot.HealthCheck | None,
    endpoints: Mapping[K, snapshot.HealthState] | None = None,
) -> HealthTracker[K]:
    """The tracker a cluster's configuration asks for: real, or null without a health check."""
    if check is None:
        return NoHealthCheck(endpoints)
    return ClusterHealth(check, endpoints)
