"""What keeps a failing upstream from failing the request, and a busy one from sinking.

The pieces, in the order a request meets them (``docs/resilience.md`` has the semantics):

* :mod:`.breaker` — :class:`CircuitBreaker`, connection-pool accounting: admit, queue or
  overflow (503, ``x-mapmesh-overloaded: true``);
* :mod:`.retry` — :class:`RetryPolicy` / :class:`RetryState`: after each attempt, ``Done``,
  ``Retry`` or ``NoRetry(reason)``; per-try and overall deadlines;
* :mod:`.budget` — :class:`RetryBudget`, the share of a cluster's requests that may be retries;
* :mod:`.outlier` — :class:`OutlierDetector`, ejection after consecutive errors (null detector
  when not configured);
* :mod:`.health` — :class:`ClusterHealth`, active health-check state per endpoint (null tracker
  when not configured);
* :mod:`.ratelimit` — :class:`TokenBucket`, a rate limit (mapmesh extension): admit, or the
  wait until a token (429 with ``Retry-After``).

All of it is plain, synchronous code: no I/O, no clock (``now`` is passed in, in seconds of the
caller's monotonic clock), no timers, randomness only from an injected ``random.Random``. Each
piece exposes ``statistics()``.
"""

from __future__ import annotations

from mapmesh.proxy.resilience.breaker import (
    ADMIT_ASSIGN,
    ADMIT_CONNECT,
    ADMIT_QUEUE,
    OVERLOADED_HEADER,
    Action,
    Admission,
    Admit,
    BreakerStatistics,
    CircuitBreaker,
    Overflow,
    OverflowReason,
)
from mapmesh.proxy.resilience.budget import (
    UNLIMITED,
    Budget,
    BudgetStatistics,
    RequestLoad,
    RetryBudget,
    UnlimitedBudget,
)
from mapmesh.proxy.resilience.health import (
    ClusterHealth,
    EndpointHealth,
    HealthStatistics,
    HealthTracker,
    NoHealthCheck,
    Transition,
    health_tracker,
)
from mapmesh.proxy.resilience.outlier import (
    Ejection,
    EjectionSkipped,
    NullOutlierDetector,
    OutlierDetector,
    OutlierMonitor,
    OutlierStatistics,
    OutlierVerdict,
    outlier_detector,
)
from mapmesh.proxy.resilience.ratelimit import BucketStatistics, TokenBucket, retry_after
from mapmesh.proxy.resilience.retry import (
    DONE,
    NO_RETRIES,
    Done,
    Failure,
    NoRetry,
    NoRetryReason,
    Outcome,
    Retry,
    RetryDecision,
    RetryOn,
    RetryPolicy,
    RetryState,
    RetryStatistics,
)

__all__ = [
    "ADMIT_ASSIGN",
    "ADMIT_CONNECT",
    "ADMIT_QUEUE",
    "DONE",
    "NO_RETRIES",
    "OVERLOADED_HEADER",
    "UNLIMITED",
    "Action",
    "Admission",
    "Admit",
    "BreakerStatistics",
    "BucketStatistics",
    "Budget",
    "BudgetStatistics",
    "CircuitBreaker",
    "ClusterHealth",
    "Done",
    "Ejection",
    "EjectionSkipped",
    "EndpointHealth",
    "Failure",
    "HealthStatistics",
    "HealthTracker",
    "NoHealthCheck",
    "NoRetry",
    "NoRetryReason",
    "NullOutlierDetector",
    "Outcome",
    "OutlierDetector",
    "OutlierMonitor",
    "OutlierStatistics",
    "OutlierVerdict",
    "Overflow",
    "OverflowReason",
    "RequestLoad",
    "Retry",
    "RetryBudget",
    "RetryDecision",
    "RetryOn",
    "RetryPolicy",
    "RetryState",
    "RetryStatistics",
    "TokenBucket",
    "Transition",
    "UnlimitedBudget",
    "health_tracker",
    "outlier_detector",
    "retry_after",
]
