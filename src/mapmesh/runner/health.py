"""A replica's health as the runner sees it: probe results in, verdicts out (pure).

Theory of operation
-------------------
A replica starts **starting**: it is not healthy until ``healthy_threshold`` consecutive
probes pass; failures while starting only reset that count (the start timeout, enforced by
the replica's driver, bounds how long it may take). Once **healthy**, ``unhealthy_threshold``
consecutive failures make it **unhealthy**, which is final: the driver takes the replica out of
Cloud Map and restarts it, with a fresh tracker. Any result that agrees with the current state
resets the streak.

    state      result   streak + 1 < threshold    streak + 1 == threshold
    starting   ok       streak += 1               -> healthy      (healthy_threshold)
    starting   fail     streak := 0               streak := 0
    healthy    ok       streak := 0               streak := 0
    healthy    fail     streak += 1               -> unhealthy    (unhealthy_threshold)

:meth:`HealthTracker.observe` returns the new :class:`Health` when it changed, else None.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Health", "HealthTracker"]


class Health(StrEnum):
    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class HealthTracker:
    def __init__(self, healthy_threshold: int, unhealthy_threshold: int) -> None:
        self.state = Health.STARTING
        self.reason = "not checked yet"
        self._streak = 0
        self._healthy_threshold = healthy_threshold
        self._unhealthy_threshold = unhealthy_threshold

    def observe(self, ok: bool, reason: str) -> Health | None:
        self.reason = reason
        if self.state is Health.UNHEALTHY:
            return None
        agrees = ok == (self.state is Health.HEALTHY)
        if agrees:
            self._streak = 0
            return None
        self._streak += 1
        threshold = (
            self._healthy_threshold if self.state is Health.STARTING else self._unhealthy_threshold
        )
        if self._streak < threshold:
            return None
        self._streak = 0
        self.state = Health.HEALTHY if ok else Health.UNHEALTHY
        return self.state
