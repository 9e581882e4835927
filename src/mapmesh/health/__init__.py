"""Active health checks run by the control plane (Cloud Map's ``HealthCheckConfig``).

:class:`HealthRunner` probes every instance of every service that has a ``HealthCheckConfig``
and reports status transitions to a :class:`HealthRecorder` (the registry). The per-instance
state machine (:class:`HealthState`) and the probes are usable on their own.
"""

from mapmesh.core.probes import ProbeOutcome, ProbeResult, ProbeTarget, probe
from mapmesh.health.runner import (
    DEFAULT_CONCURRENCY,
    DEFAULT_INTERVAL,
    DEFAULT_TIMEOUT,
    CheckKey,
    CheckSpec,
    HealthRecorder,
    HealthRunner,
    HealthStatistics,
    HealthView,
    SchedulePlan,
    check_spec,
    desired_checks,
    next_probe_at,
    plan_schedule,
)
from mapmesh.health.state import DEFAULT_FAILURE_THRESHOLD, HealthState, Transition, should_report

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_INTERVAL",
    "DEFAULT_TIMEOUT",
    "CheckKey",
    "CheckSpec",
    "HealthRecorder",
    "HealthRunner",
    "HealthState",
    "HealthStatistics",
    "HealthView",
    "ProbeOutcome",
    "ProbeResult",
    "ProbeTarget",
    "SchedulePlan",
    "Transition",
    "check_spec",
    "desired_checks",
    "next_probe_at",
    "plan_schedule",
    "probe",
    "should_report",
]
