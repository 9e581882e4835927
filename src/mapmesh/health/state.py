"""Health state of one checked instance: consecutive probe results in, transitions out.

Theory of operation
-------------------
This is Route 53's health-check rule, which Cloud Map applies to services created with a
``HealthCheckConfig``. It does no I/O and knows no clock: the runner feeds it one observation
per probe and acts on what it returns.

Rules:

* A new check starts **HEALTHY**. Route 53 treats a freshly created check as healthy until it
  has seen enough failures, so registering an instance never makes it disappear from discovery
  before it was probed.
* The machine counts the *streak*: consecutive observations that disagree with the current
  status. An agreeing observation resets the streak to zero.
* When the streak reaches ``threshold`` (Cloud Map's ``FailureThreshold``; Route 53's default
  is 3 when unset), the status flips and the streak restarts at zero. The same number of
  consecutive successes is needed to come back, as in Route 53.

Transition table (``t`` = threshold, ``s`` = streak before the observation)::

    status     observation  s + 1 < t            s + 1 == t
    HEALTHY    success      s := 0               s := 0
    HEALTHY    failure      s := s + 1           -> UNHEALTHY, s := 0, Transition
    UNHEALTHY  failure      s := 0               s := 0
    UNHEALTHY  success      s := s + 1           -> HEALTHY, s := 0, Transition

:meth:`HealthState.observe` returns the :class:`Transition` (the new status and the reason of
the observation that caused it) or ``None``; it never returns a bare bool.

Convergence with the stored status (:func:`should_report`): the registry stores the status the
runner last reported. After the runner (or one instance's checker) restarts, a fresh machine may
disagree with what is stored — e.g. the store says UNHEALTHY while the new machine starts
HEALTHY. Such a disagreement is reported once, on the first observation that *agrees* with the
machine's status, so the stored status only changes on evidence: a stored UNHEALTHY becomes
HEALTHY after one successful probe, and stays UNHEALTHY while probes keep failing (the machine
then flips to UNHEALTHY itself after ``threshold`` failures).

Approximations against Route 53: Route 53 aggregates results from many checker regions and calls
an endpoint healthy when more than 18% of checkers agree; mapmesh has a single checker, so the
threshold applies to its own consecutive results.
"""

from __future__ import annotations

from dataclasses import dataclass

from mapmesh.model.registry import HealthStatus

__all__ = [
    "DEFAULT_FAILURE_THRESHOLD",
    "HealthState",
    "Transition",
    "should_report",
]

DEFAULT_FAILURE_THRESHOLD = 3
"""Route 53's ``FailureThreshold`` when a ``HealthCheckConfig`` leaves it unset."""


@dataclass(frozen=True, slots=True)
class Transition:
    """A status change and the reason of the observation that caused it."""

    previous: HealthStatus
    status: HealthStatus
    reason: str


class HealthState:
    """Consecutive-result state machine of one instance (see the module docstring)."""

    __slots__ = ("_status", "_streak", "threshold")

    def __init__(
        self,
        threshold: int = DEFAULT_FAILURE_THRESHOLD,
        status: HealthStatus = HealthStatus.HEALTHY,
    ) -> None:
        if threshold < 1:
            raise ValueError(f"failure_threshold: must be >= 1, got {threshold}")
        if status is HealthStatus.UNKNOWN:
            raise ValueError("status: a checked instance is HEALTHY or UNHEALTHY")
        self.threshold = threshold
        self._status = status
        self._streak = 0

    @property
    def status(self) -> HealthStatus:
        return self._status

    @property
    def streak(self) -> int:
        """Consecutive observations so far that disagree with :attr:`status`."""
        return self._streak

    def observe(self, ok: bool, reason: str) -> Transition | None:
        """Feed one probe result; return the transition it caused, if any."""
        agrees = ok is (self._status is HealthStatus.HEALTHY)
        if agrees:
            self._streak = 0
            return None
        self._streak += 1
        if self._streak < self.threshold:
            return None
        previous = self._status
        self._status = HealthStatus.HEALTHY if ok else HealthStatus.UNHEALTHY
        self._streak = 0
        return Transition(previous=previous, status=self._status, reason=reason)

    def __repr__(self) -> str:
        return f"<HealthState {self._status.value} streak={self._streak}/{self.threshold}>"


def should_report(
    stored: HealthStatus, current: HealthStatus, ok: bool, transition: Transition | None
) -> bool:
    """Whether the runner should write ``current`` to the registry after an observation.

    Always for a transition; otherwise only to converge a stored status that disagrees with
    the machine, and only once the latest observation ``ok`` agrees with the machine's status.
    """
    if transition is not None:
        return True
    return stored is not current and ok is (current is HealthStatus.HEALTHY)
