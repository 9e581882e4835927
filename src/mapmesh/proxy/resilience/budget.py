"""Retry budget: how many retries a cluster may have in flight at once.

Theory of operation
-------------------
A retry multiplies load on a cluster that is already failing; without a bound, every client
retrying twice turns an outage into three times the traffic. App Mesh has no such bound;
Envoy's ``retry_budget`` (in a cluster's circuit-breaker thresholds) is what mapmesh follows:

    retries in flight  <  max(min_retry_concurrency, budget_percent% of (active + pending requests))

so a quiet cluster may still retry a few requests (``min_retry_concurrency``, default 3) and a
busy one may have at most ``budget_percent`` (default 20%) of its requests be retries. The
request counts are read from the cluster's :class:`~mapmesh.proxy.resilience.breaker.CircuitBreaker`
(anything with ``active_requests`` and ``pending_requests``), so nothing is counted twice.

:meth:`RetryBudget.try_acquire` takes a slot when a retry is decided and
:meth:`RetryBudget.release` gives it back when that retry attempt ends; both are O(1) integer
operations. :class:`~mapmesh.proxy.resilience.retry.RetryState` does both for the caller.
:data:`UNLIMITED` is the null budget (never refuses), for tests and for callers that opt out.

Approximations against Envoy: the limit is computed from the counts at the moment a retry is
decided (as Envoy does); Envoy's percentage is a double, mapmesh's a float; the result of the
multiplication is truncated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

__all__ = [
    "DEFAULT_BUDGET_PERCENT",
    "DEFAULT_MIN_RETRY_CONCURRENCY",
    "UNLIMITED",
    "Budget",
    "BudgetStatistics",
    "RequestLoad",
    "RetryBudget",
    "UnlimitedBudget",
]

DEFAULT_BUDGET_PERCENT: Final = 20.0
"""Envoy's ``retry_budget.budget_percent`` default."""

DEFAULT_MIN_RETRY_CONCURRENCY: Final = 3
"""Envoy's ``retry_budget.min_retry_concurrency`` default."""


class Budget(Protocol):
    """What :class:`~mapmesh.proxy.resilience.retry.RetryState` needs from a budget."""

    def try_acquire(self) -> bool: ...

    def release(self) -> None: ...

    def statistics(self) -> BudgetStatistics: ...


class RequestLoad(Protocol):
    """The request counts a budget is a share of (the cluster's circuit breaker)."""

    @property
    def active_requests(self) -> int: ...

    @property
    def pending_requests(self) -> int: ...


@dataclass(frozen=True, slots=True)
class BudgetStatistics:
    """``limit`` is the current bound; ``exhausted``: retries refused (counter
    ``retry_overflow``)."""

    budget_percent: float
    min_retry_concurrency: int
    active_retries: int
    limit: int | None
    granted: int
    exhausted: int


class RetryBudget:
    """Concurrent retries bounded by a share of the cluster's requests (see module docstring)."""

    __slots__ = ("_active", "_exhausted", "_granted", "_load", "_min", "_share")

    def __init__(
        self,
        load: RequestLoad,
        *,
        budget_percent: float = DEFAULT_BUDGET_PERCENT,
        min_retry_concurrency: int = DEFAULT_MIN_RETRY_CONCURRENCY,
    ) -> None:
        if not 0.0 <= budget_percent <= 100.0:
            raise ValueError(f"budget_percent: must be within [0, 100], got {budget_percent}")
        if min_retry_concurrency < 0:
            raise ValueError(f"min_retry_concurrency: must be >= 0, got {min_retry_concurrency}")
        self._load = load
        self._share = budget_percent / 100.0
        self._min = min_retry_concurrency
        self._active = 0
        self._granted = 0
        self._exhausted = 0

    @property
    def active_retries(self) -> int:
        return self._active

    def limit(self) -> int:
        """Retries allowed in flight right now."""
        load = self._load
        return max(self._min, int(self._share * (load.active_requests + load.pending_requests)))

    def try_acquire(self) -> bool:
        """Take a slot for one retry; False (and counted as exhausted) when none is left."""
        if self._active < self.limit():
            self._active += 1
            self._granted += 1
            return True
        self._exhausted += 1
        return False

    def release(self) -> None:
        """The retry attempt that held a slot has ended."""
        if self._active <= 0:
            raise RuntimeError("retry budget released more often than acquired")
        self._active -= 1

    def statistics(self) -> BudgetStatistics:
        return BudgetStatistics(
            budget_percent=self._share * 100.0,
            min_retry_concurrency=self._min,
            active_retries=self._active,
            limit=self.limit(),
            granted=self._granted,
            exhausted=self._exhausted,
        )

    def __repr__(self) -> str:
        return f"<RetryBudget active={self._active}/{self.limit()}>"


class UnlimitedBudget:
    """The null budget: every retry is allowed (retries stay bounded per request by
    ``max_retries``). Stateless, so one instance serves every cluster."""

    __slots__ = ()

    def try_acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass

    def statistics(self) -> BudgetStatistics:
        return BudgetStatistics(
            budget_percent=100.0,
            min_retry_concurrency=0,
            active_retries=0,
            limit=None,
            granted=0,
            exhausted=0,
        )


UNLIMITED: Final = UnlimitedBudget()
"""The shared null budget."""
