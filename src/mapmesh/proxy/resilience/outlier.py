"""Outlier detection: eject an endpoint that keeps failing, for longer each time it does.

Theory of operation
-------------------
App Mesh's ``outlierDetection`` is Envoy's consecutive-5xx detector; mapmesh follows Envoy's
implementation (``outlier_detection_impl.cc``) except where noted.

Counting (:meth:`OutlierDetector.observe`, on every attempt's outcome):

* a 5xx response **or a locally originated failure** (connect failure, reset, per-try timeout)
  adds one to the endpoint's consecutive-error count — Envoy's behaviour with
  ``split_external_local_origin_errors: false``, its default and App Mesh's;
* any other response resets the count to zero;
* outcomes of an ejected endpoint (requests that were in flight) are ignored.

Ejection happens **at once** when the count reaches ``max_server_errors`` (Envoy ejects
consecutive-5xx outliers inline; ``interval`` is not a window for counting). It is allowed
when, after it, no more than ``max_ejection_percent`` of the cluster's endpoints would be
ejected — or when none is ejected yet: at least one endpoint can always be ejected, as App
Mesh documents ("will eject at least one host regardless of the value"; Envoy's
``always_eject_one_host``). A refused ejection is counted as ``ejections_overflow``. Either
way the count restarts at zero.

Duration: ``base_ejection * multiplier``, capped at ``max(300 s, base_ejection)`` (Envoy's
``max_ejection_time`` default, which App Mesh does not expose). The multiplier grows by one
with each ejection and shrinks by one for every full ``interval`` the endpoint then spends
back in service (Envoy decrements it on each interval sweep); it is computed when the next
ejection happens, so no sweep is needed for it. First ejection 1 x base, an immediate
re-ejection 2 x base, and so on.

Return: an ejection ends exactly when its duration is over. The caller calls
:meth:`OutlierDetector.tick` — at :meth:`OutlierDetector.next_expiry` or every ``interval`` —
and gets back the endpoints that returned, with their counts reset. (Envoy returns them at
the first interval sweep after expiry, so up to one interval late; mapmesh's driver may use
one timer per cluster either way — never one per request.)

Cost: ``observe`` is O(1) and allocates only when it ejects; ejections keep a heap of expiry
times, so ``tick`` is O(k log n) for k returning endpoints.

Clusters without outlier detection get :class:`NullOutlierDetector`, which never ejects
(Envoy's ``DetectorHostMonitorNullImpl``); :func:`outlier_detector` picks one.

Not implemented (App Mesh does not configure them): success-rate and failure-percentage
ejection, consecutive-gateway-failure as a separate detector, ejection jitter, un-ejection on
a passing active health check.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Generic, NamedTuple, Protocol, TypeVar

from mapmesh.model import snapshot
from mapmesh.proxy.resilience.retry import Failure, Outcome

__all__ = [
    "MAX_EJECTION_MS",
    "Ejection",
    "EjectionSkipped",
    "EndpointOutlierStatistics",
    "NullOutlierDetector",
    "OutlierDetector",
    "OutlierMonitor",
    "OutlierStatistics",
    "OutlierVerdict",
    "outlier_detector",
]

K = TypeVar("K", bound=Hashable)

MAX_EJECTION_MS: Final = 300_000
"""Longest ejection unless ``base_ejection_ms`` is longer (Envoy's ``max_ejection_time``)."""


class Ejection(NamedTuple, Generic[K]):
    """``endpoint`` is out of service until ``until`` (``multiplier`` * base)."""

    endpoint: K
    until: float
    multiplier: int
    times_ejected: int


class EjectionSkipped(NamedTuple, Generic[K]):
    """``endpoint`` qualified but ejecting it would exceed ``max_ejection_percent``."""

    endpoint: K
    reason: str = "max_ejection_percent"


OutlierVerdict = Ejection[K] | EjectionSkipped[K] | None


@dataclass(frozen=True, slots=True)
class EndpointOutlierStatistics:
    consecutive_errors: int
    ejected: bool
    ejected_until: float | None
    multiplier: int
    times_ejected: int


@dataclass(frozen=True, slots=True)
class OutlierStatistics:
    """``ejections_overflow``: ejections refused by ``max_ejection_percent``."""

    enabled: bool
    endpoints: int
    ejections_active: int
    ejections_total: int
    ejections_overflow: int
    by_endpoint: Mapping[object, EndpointOutlierStatistics]


class OutlierMonitor(Protocol[K]):
    """What a cluster needs from its detector, real or null."""

    def observe(self, key: K, outcome: Outcome, now: float) -> OutlierVerdict[K]: ...

    def tick(self, now: float) -> tuple[K, ...]: ...

    def next_expiry(self) -> float | None: ...

    def is_ejected(self, key: K) -> bool: ...

    def set_endpoints(self, keys: Iterable[K]) -> None: ...

    def statistics(self) -> OutlierStatistics: ...


class _Monitor:
    """One endpoint's history."""

    __slots__ = ("consecutive", "ejected_until", "multiplier", "returned_at", "seq", "times")

    def __init__(self) -> None:
        self.consecutive = 0
        self.ejected_until: float | None = None
        self.multiplier = 0
        self.returned_at: float | None = None
        self.seq = -1
        self.times = 0


class OutlierDetector(Generic[K]):
    """Consecutive-error ejection over one cluster's endpoints (see the module docstring)."""

    __slots__ = (
        "_active",
        "_base",
        "_expiries",
        "_interval",
        "_max_duration",
        "_max_multiplier",
        "_monitors",
        "_overflow",
        "_percent",
        "_seq",
        "_threshold",
        "_total",
    )

    def __init__(self, config: snapshot.OutlierDetection, endpoints: Iterable[K] = ()) -> None:
        if config.max_server_errors < 1:
            raise ValueError(
                f"outlier_detection.max_server_errors: must be >= 1, got {config.max_server_errors}"
            )
        if not 0 <= config.max_ejection_percent <= 100:
            raise ValueError(
                "outlier_detection.max_ejection_percent: must be within [0, 100], "
                f"got {config.max_ejection_percent}"
            )
        if config.base_ejection_ms < 0 or config.interval_ms < 0:
            raise ValueError("outlier_detection: durations must be >= 0")
        self._threshold = config.max_server_errors
        self._percent = config.max_ejection_percent
        self._interval = config.interval_ms / 1000.0
        self._base = config.base_ejection_ms / 1000.0
        self._max_duration = max(MAX_EJECTION_MS, config.base_ejection_ms) / 1000.0
        self._max_multiplier = math.ceil(self._max_duration / self._base) if self._base > 0 else 1
        self._monitors: dict[K, _Monitor] = {}
        self._expiries: list[tuple[float, int, K]] = []
        self._seq = 0
        self._active = 0
        self._total = 0
        self._overflow = 0
        self.set_endpoints(endpoints)

    # -- the hot path ----------------------------------------------------------------------

    def observe(self, key: K, outcome: Outcome, now: float) -> OutlierVerdict[K]:
        """Count one attempt's outcome on ``key``; eject it when it reached the threshold."""
        monitor = self._monitors.get(key)
        if monitor is None or monitor.ejected_until is not None:
            return None
        if isinstance(outcome, Failure) or outcome >= 500:
            monitor.consecutive += 1
            if monitor.consecutive >= self._threshold:
                monitor.consecutive = 0
                return self._eject(key, monitor, now)
        else:
            monitor.consecutive = 0
        return None

    def is_ejected(self, key: K) -> bool:
        monitor = self._monitors.get(key)
        return monitor is not None and monitor.ejected_until is not None

    # -- the timer ---------------------------------------------------------------------------

    def next_expiry(self) -> float | None:
        """When the earliest ejection ends (None: nothing is ejected)."""
        expiries = self._expiries
        while expiries:
            until, seq, key = expiries[0]
            monitor = self._monitors.get(key)
            if monitor is not None and monitor.seq == seq and monitor.ejected_until is not None:
                return until
            heapq.heappop(expiries)  # stale: the endpoint left or was re-ejected
        return None

    def tick(self, now: float) -> tuple[K, ...]:
        """Return to service every endpoint whose ejection is over; the keys that returned."""
        returned: list[K] = []
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            _, seq, key = heapq.heappop(expiries)
            monitor = self._monitors.get(key)
            if monitor is None or monitor.seq != seq or monitor.ejected_until is None:
                continue
            monitor.ejected_until = None
            monitor.consecutive = 0
            monitor.returned_at = now
            self._active -= 1
            returned.append(key)
        return tuple(returned)

    # -- membership --------------------------------------------------------------------------

    def set_endpoints(self, keys: Iterable[K]) -> None:
        """Follow the cluster's endpoint set; endpoints kept keep their history."""
        wanted = dict.fromkeys(keys)  # ordered, so statistics list endpoints as given
        for key in [k for k in self._monitors if k not in wanted]:
            if self._monitors.pop(key).ejected_until is not None:
                self._active -= 1
        for key in wanted:
            if key not in self._monitors:
                self._monitors[key] = _Monitor()

    def statistics(self) -> OutlierStatistics:
        return OutlierStatistics(
            enabled=True,
            endpoints=len(self._monitors),
            ejections_active=self._active,
            ejections_total=self._total,
            ejections_overflow=self._overflow,
            by_endpoint={
                key: EndpointOutlierStatistics(
                    consecutive_errors=m.consecutive,
                    ejected=m.ejected_until is not None,
                    ejected_until=m.ejected_until,
                    multiplier=m.multiplier,
                    times_ejected=m.times,
                )
                for key, m in self._monitors.items()
            },
        )

    def __repr__(self) -> str:
        return f"<OutlierDetector ejected={self._active}/{len(self._monitors)}>"

    # -- internals ---------------------------------------------------------------------------

    def max_ejected(self) -> int:
        """How many endpoints may be ejected at once: ``max_ejection_percent`` of them,
        rounded down, but at least one."""
        return max(1, self._percent * len(self._monitors) // 100)

    def _eject(self, key: K, monitor: _Monitor, now: float) -> OutlierVerdict[K]:
        if self._active >= self.max_ejected():
            self._overflow += 1
            return EjectionSkipped(key)
        multiplier = monitor.multiplier
        if monitor.returned_at is not None and self._interval > 0:
            multiplier = max(0, multiplier - int((now - monitor.returned_at) // self._interval))
        multiplier = min(multiplier + 1, self._max_multiplier)
        until = now + min(self._base * multiplier, self._max_duration)
        monitor.multiplier = multiplier
        monitor.ejected_until = until
        monitor.times += 1
        monitor.seq = self._seq
        heapq.heappush(self._expiries, (until, self._seq, key))
        self._seq += 1
        self._active += 1
        self._total += 1
        return Ejection(key, until, multiplier, monitor.times)


class NullOutlierDetector(Generic[K]):
    """The detector of a cluster without outlier detection: never ejects."""

    __slots__ = ("_endpoints",)

    def __init__(self, endpoints: Iterable[K] = ()) -> None:
        self._endpoints = len(set(endpoints))

    def observe(self, key: K, outcome: Outcome, now: float) -> OutlierVerdict[K]:
        return None

    def tick(self, now: float) -> tuple[K, ...]:
        return ()

    def next_expiry(self) -> float | None:
        return None

    def is_ejected(self, key: K) -> bool:
        return False

    def set_endpoints(self, keys: Iterable[K]) -> None:
        self._endpoints = len(set(keys))

    def statistics(self) -> OutlierStatistics:
        return OutlierStatistics(
            enabled=False,
            endpoints=self._endpoints,
            ejections_active=0,
            ejections_total=0,
            ejections_overflow=0,
            by_endpoint={},
        )


def outlier_detector(
    config: snapshot.OutlierDetection | None, endpoints: Iterable[K] = ()
) -> OutlierMonitor[K]:
    """The detector a cluster's configuration asks for: real, or null when not configured."""
    if config is None:
        return NullOutlierDetector(endpoints)
    return OutlierDetector(config, endpoints)
