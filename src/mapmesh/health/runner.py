"""The health runner: probes every instance of every service that has a ``HealthCheckConfig``.

Theory of operation
-------------------
The runner keeps one *checker* per checked instance: a :class:`~mapmesh.health.state.HealthState`
and an asyncio task that probes the instance every ``interval`` seconds and reports status
changes to a :class:`HealthRecorder` (the registry).

* **Schedule.** After every batch the registry view applies, the runner asks the pure function
  :func:`plan_schedule` which checkers to stop and which to start, given the checkers it runs
  and the checks the view asks for (:func:`desired_checks`), limited to the services the batch
  touched. A check is identified by ``(service_id, instance_id)`` and described by a
  :class:`CheckSpec` (probe target + threshold): a new key starts a checker, a vanished key
  stops it at once (its task is cancelled), and a key whose spec changed — new
  ``HealthCheckConfig``, new address or port — is restarted with fresh state. Anything else,
  such as the instance's own health status changing because the runner reported it, keeps the
  checker and its history.
* **Timing.** Each checker's first probe happens at a random offset within the interval (the
  ``rng`` is a parameter, so a seed reproduces the spread); later probes follow a fixed-rate
  grid (:func:`next_probe_at`), skipping slots rather than bursting when a probe overran.
* **Bounds.** A probe never outlasts ``timeout`` (< ``interval``), and at most ``concurrency``
  probes are in flight at once (a semaphore); waiting for the semaphore does not count against
  the probe's timeout.
* **Reporting.** Only transitions are reported — plus, once, a stored status that disagrees
  with a fresh checker (see :func:`~mapmesh.health.state.should_report`). A recorder error is
  logged and counted; the checker keeps running and retries on the next agreeing probe because
  its idea of the stored status did not change.

Approximations: the runner is a single checker per control plane (Route 53 uses many regions);
with several control-plane replicas each would probe — run it on one replica.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from mapmesh.core.probes import ProbeResult, ProbeTarget, probe
from mapmesh.health.state import (
    DEFAULT_FAILURE_THRESHOLD,
    HealthState,
    Transition,
    should_report,
)
from mapmesh.model.registry import HealthCheckType, HealthStatus, Instance, Service

if TYPE_CHECKING:
    from mapmesh.registry.view import ViewChange

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_INTERVAL",
    "DEFAULT_TIMEOUT",
    "CheckKey",
    "CheckSpec",
    "HealthRecorder",
    "HealthRunner",
    "HealthStatistics",
    "HealthView",
    "SchedulePlan",
    "check_spec",
    "desired_checks",
    "next_probe_at",
    "plan_schedule",
]

log = logging.getLogger("mapmesh.health")

DEFAULT_INTERVAL = 10.0
"""Seconds between two probes of one instance (Route 53's fast interval; a mapmesh setting)."""
DEFAULT_TIMEOUT = 2.0
"""Seconds one probe may take, connect to status line."""
DEFAULT_CONCURRENCY = 64
"""Probes in flight at once, over all instances."""

_DEFAULT_PORTS = {HealthCheckType.HTTP: 80, HealthCheckType.HTTPS: 443, HealthCheckType.TCP: 80}

CheckKey = tuple[str, str]
"""``(service_id, instance_id)``."""


class HealthRecorder(Protocol):
    """Where status changes go (the registry). A status equal to the stored one is a no-op."""

    async def record_health(
        self, service_id: str, instance_id: str, status: HealthStatus, reason: str
    ) -> None: ...


class HealthView(Protocol):
    """The part of :class:`~mapmesh.registry.view.RegistryView` the runner reads."""

    @property
    def services(self) -> Mapping[str, Service]: ...

    def instances_of(self, service_id: str) -> Mapping[str, Instance]: ...

    def subscribe(self, listener: Callable[[ViewChange], None]) -> None: ...


# -- deciding: pure functions --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """Everything that, when changed, restarts an instance's checker with fresh state."""

    target: ProbeTarget
    failure_threshold: int


def check_spec(service: Service, instance: Instance) -> CheckSpec | None:
    """The check ``service``'s ``HealthCheckConfig`` asks for on ``instance`` (None: no check)."""
    config = service.health_check_config
    if config is None:
        return None
    port = instance.port
    target = ProbeTarget(
        type=config.type,
        host=instance.ipv4 or instance.ipv6 or None,
        port=port if port is not None else _DEFAULT_PORTS[config.type],
        path="/" if config.type is HealthCheckType.TCP else (config.resource_path or "/"),
    )
    threshold = config.failure_threshold or DEFAULT_FAILURE_THRESHOLD
    return CheckSpec(target=target, failure_threshold=threshold)


def desired_checks(view: HealthView, service_ids: Iterable[str]) -> dict[CheckKey, CheckSpec]:
    """The checks the view asks for among ``service_ids`` (unknown ids contribute none)."""
    desired: dict[CheckKey, CheckSpec] = {}
    for service_id in service_ids:
        service = view.services.get(service_id)
        if service is None or service.health_check_config is None:
            continue
        for instance_id, instance in view.instances_of(service_id).items():
            spec = check_spec(service, instance)
            if spec is not None:
                desired[(service_id, instance_id)] = spec
    return desired


@dataclass(frozen=True, slots=True)
class SchedulePlan:
    """Checkers to stop, then checkers to start; a restart appears in both."""

    stop: frozenset[CheckKey] = frozenset()
    start: Mapping[CheckKey, CheckSpec] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.stop and not self.start


def plan_schedule(
    running: Mapping[CheckKey, CheckSpec],
    desired: Mapping[CheckKey, CheckSpec],
    scope: Collection[str] | None = None,
) -> SchedulePlan:
    """Diff the running checkers against the desired ones.

    ``scope`` limits the diff to those service ids (the services a view batch touched);
    running checkers of other services are left alone. ``None`` means every service.
    ``desired`` must hold every check of the services in scope.
    """
    stop = frozenset(
        key
        for key, spec in running.items()
        if (scope is None or key[0] in scope) and desired.get(key) != spec
    )
    start = {key: spec for key, spec in desired.items() if running.get(key) != spec}
    return SchedulePlan(stop=stop, start=start)


def next_probe_at(slot: float, now: float, interval: float) -> float:
    """The first time on the grid ``slot + k * interval`` (k >= 1) that is after ``now``."""
    if now < slot + interval:
        return slot + interval
    return slot + (math.floor((now - slot) / interval) + 1) * interval


# -- doing: the asyncio driver -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HealthStatistics:
    """A snapshot of the runner's counters (all since construction, except the gauges)."""

    checked_instances: int
    probes_in_flight: int
    probes_run: int
    failures: int
    failures_by_outcome: Mapping[str, int]
    transitions: int
    reports: int
    recorder_errors: int


@dataclass(slots=True)
class _Counters:
    """Every counter the runner keeps, declared in one place."""

    probes_in_flight: int = 0
    probes_run: int = 0
    failures: int = 0
    failures_by_outcome: Counter[str] = field(default_factory=Counter)
    transitions: int = 0
    reports: int = 0
    recorder_errors: int = 0


@dataclass(slots=True)
class _Checker:
    key: CheckKey
    spec: CheckSpec
    state: HealthState
    stored: HealthStatus  # what the registry holds, as far as this checker knows
    task: asyncio.Task[None] | None = None


class HealthRunner:
    """Runs the active health checks for the services in ``view`` (see the module docstring)."""

    def __init__(
        self,
        view: HealthView,
        recorder: HealthRecorder,
        *,
        interval: float = DEFAULT_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        concurrency: int = DEFAULT_CONCURRENCY,
        rng: random.Random | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval: must be > 0, got {interval}")
        if not 0 < timeout < interval:
            raise ValueError(f"timeout: must be > 0 and < interval ({interval}), got {timeout}")
        if concurrency < 1:
            raise ValueError(f"concurrency: must be >= 1, got {concurrency}")
        self._view = view
        self._recorder = recorder
        self.interval = interval
        self.timeout = timeout
        self.concurrency = concurrency
        self._rng = rng if rng is not None else random.Random()
        self._semaphore = asyncio.Semaphore(concurrency)
        self._checkers: dict[str, dict[str, _Checker]] = {}  # service id -> instance id
        self._retired: set[asyncio.Task[None]] = set()  # cancelled, not yet finished
        self._counters = _Counters()
        self._running = False
        self._subscribed = False

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Schedule checks for everything in the view now, and follow its changes."""
        if self._running:
            return
        self._running = True
        if not self._subscribed:
            self._view.subscribe(self._on_change)
            self._subscribed = True
        self._sync(None)

    async def stop(self) -> None:
        """Cancel every checker and wait for them; view changes are ignored until start()."""
        self._running = False
        tasks = [c.task for c in self._every_checker() if c.task is not None]
        tasks.extend(self._retired)
        self._checkers.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def statistics(self) -> HealthStatistics:
        counters = self._counters
        return HealthStatistics(
            checked_instances=sum(len(bucket) for bucket in self._checkers.values()),
            probes_in_flight=counters.probes_in_flight,
            probes_run=counters.probes_run,
            failures=counters.failures,
            failures_by_outcome=dict(counters.failures_by_outcome),
            transitions=counters.transitions,
            reports=counters.reports,
            recorder_errors=counters.recorder_errors,
        )

    def status_of(self, service_id: str, instance_id: str) -> HealthStatus | None:
        """The checker's current status for an instance (None: not checked)."""
        checker = self._checkers.get(service_id, {}).get(instance_id)
        return checker.state.status if checker is not None else None

    def __repr__(self) -> str:
        return (
            f"<HealthRunner checks={self.statistics().checked_instances} interval={self.interval}"
            f" timeout={self.timeout} running={self._running}>"
        )

    # -- schedule ------------------------------------------------------------------------

    def _on_change(self, change: ViewChange) -> None:
        if self._running:
            self._sync(None if change.reset else change.services)

    def _every_checker(self) -> Iterator[_Checker]:
        for bucket in self._checkers.values():
            yield from bucket.values()

    def _sync(self, scope: Collection[str] | None) -> None:
        """Bring the checkers of ``scope`` (None: all services) in line with the view.

        Costs O(instances of the services in scope), so a batch touching one service does not
        walk every checker.
        """
        service_ids = list(self._view.services) if scope is None else scope
        desired = desired_checks(self._view, service_ids)
        running = {
            (service_id, instance_id): checker.spec
            for service_id in (list(self._checkers) if scope is None else scope)
            for instance_id, checker in self._checkers.get(service_id, {}).items()
        }
        plan = plan_schedule(running, desired, scope)
        for service_id, instance_id in plan.stop:
            bucket = self._checkers[service_id]
            task = bucket.pop(instance_id).task
            if not bucket:
                del self._checkers[service_id]
            if task is not None and not task.done():
                task.cancel()
                self._retired.add(task)
                task.add_done_callback(self._retired.discard)
        for key in sorted(plan.start):
            self._start_checker(key, plan.start[key])
        self._refresh_stored(desired.keys() - plan.start.keys())
        if not plan.empty:
            log.debug(
                "health schedule updated",
                extra={
                    "started": len(plan.start),
                    "stopped": len(plan.stop),
                    "checked": self.statistics().checked_instances,
                },
            )

    def _refresh_stored(self, keys: Iterable[CheckKey]) -> None:
        """Kept checkers learn the status the registry now stores for their instance."""
        for service_id, instance_id in keys:
            instance = self._view.instances_of(service_id).get(instance_id)
            checker = self._checkers.get(service_id, {}).get(instance_id)
            if instance is not None and checker is not None:
                checker.stored = instance.health_status

    def _start_checker(self, key: CheckKey, spec: CheckSpec) -> None:
        instance = self._view.instances_of(key[0]).get(key[1])
        stored = instance.health_status if instance is not None else HealthStatus.UNKNOWN
        checker = _Checker(key, spec, HealthState(spec.failure_threshold), stored)
        loop = asyncio.get_running_loop()
        first_at = loop.time() + self._rng.uniform(0.0, self.interval)
        checker.task = loop.create_task(
            self._check_loop(checker, first_at), name=f"health-check {key[0]}/{key[1]}"
        )
        checker.task.add_done_callback(_log_crash)
        self._checkers.setdefault(key[0], {})[key[1]] = checker

    # -- one checker -----------------------------------------------------------------------

    async def _check_loop(self, checker: _Checker, first_at: float) -> None:
        loop = asyncio.get_running_loop()
        slot = first_at
        await asyncio.sleep(max(0.0, slot - loop.time()))
        while True:
            async with self._semaphore:
                self._counters.probes_in_flight += 1
                try:
                    result = await probe(checker.spec.target, self.timeout)
                finally:
                    self._counters.probes_in_flight -= 1
            await self._observe(checker, result)
            slot = next_probe_at(slot, loop.time(), self.interval)
            await asyncio.sleep(max(0.0, slot - loop.time()))

    async def _observe(self, checker: _Checker, result: ProbeResult) -> None:
        counters = self._counters
        counters.probes_run += 1
        if not result.ok:
            counters.failures += 1
            counters.failures_by_outcome[result.outcome.value] += 1
        transition = checker.state.observe(result.ok, result.reason)
        if transition is not None:
            counters.transitions += 1
            _log_transition(checker.key, transition)
        status = checker.state.status
        if not should_report(checker.stored, status, result.ok, transition):
            return
        service_id, instance_id = checker.key
        try:
            await self._recorder.record_health(service_id, instance_id, status, result.reason)
        except Exception:
            counters.recorder_errors += 1
            log.exception(
                "recording instance health failed",
                extra={"service_id": service_id, "instance_id": instance_id, "status": status},
            )
        else:
            counters.reports += 1
            checker.stored = status


def _log_transition(key: CheckKey, transition: Transition) -> None:
    level = logging.WARNING if transition.status is HealthStatus.UNHEALTHY else logging.INFO
    log.log(
        level,
        "instance %s/%s is now %s: %s",
        key[0],
        key[1],
        transition.status.value,
        transition.reason,
        extra={
            "service_id": key[0],
            "instance_id": key[1],
            "status": transition.status.value,
            "previous": transition.previous.value,
            "reason": transition.reason,
        },
    )


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("health checker crashed", exc_info=task.exception())
