"""Health decisions without I/O: the state machine, the report rule, the schedule diff."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mapmesh.health import (
    DEFAULT_FAILURE_THRESHOLD,
    CheckSpec,
    HealthState,
    ProbeTarget,
    Transition,
    check_spec,
    desired_checks,
    next_probe_at,
    plan_schedule,
    should_report,
)
from mapmesh.model.registry import (
    HealthCheckConfig,
    HealthCheckCustomConfig,
    HealthCheckType,
    HealthStatus,
    Instance,
    Service,
    ServiceType,
)

HEALTHY, UNHEALTHY, UNKNOWN = HealthStatus.HEALTHY, HealthStatus.UNHEALTHY, HealthStatus.UNKNOWN
NOW = datetime(2024, 1, 1, tzinfo=UTC)


def service(service_id: str = "srv-1", config: HealthCheckConfig | None = None) -> Service:
    return Service(
        id=service_id,
        arn=f"arn:aws:servicediscovery:us-east-1:111122223333:service/{service_id}",
        name=service_id,
        namespace_id="ns-1",
        type=ServiceType.HTTP,
        health_check_config=config,
        create_date=NOW,
        created_by_account="111122223333",
        resource_owner="111122223333",
    )


def instance(instance_id: str = "i-1", service_id: str = "srv-1", **attributes: str) -> Instance:
    return Instance(
        id=instance_id,
        service_id=service_id,
        attributes=attributes,
        created_by_account="111122223333",
        registered_at=NOW,
        health_status=HEALTHY,
    )


# -- the state machine -------------------------------------------------------------------


def test_a_new_check_starts_healthy_with_route53_default_threshold() -> None:
    state = HealthState()
    assert state.status is HEALTHY
    assert state.threshold == DEFAULT_FAILURE_THRESHOLD == 3


def test_failures_flip_to_unhealthy_only_at_the_threshold_and_name_the_reason() -> None:
    state = HealthState(threshold=3)
    assert state.observe(False, "HTTP 500 from 127.0.0.1:8080/health") is None
    assert state.observe(False, "HTTP 500 from 127.0.0.1:8080/health") is None
    assert state.streak == 2
    transition = state.observe(False, "connect timeout after 2.0s to 127.0.0.1:8080")
    assert transition == Transition(
        previous=HEALTHY, status=UNHEALTHY, reason="connect timeout after 2.0s to 127.0.0.1:8080"
    )
    assert state.status is UNHEALTHY
    assert state.streak == 0


def test_a_success_in_between_resets_the_failure_streak() -> None:
    state = HealthState(threshold=2)
    assert state.observe(False, "HTTP 500") is None
    assert state.observe(True, "HTTP 200") is None
    assert state.observe(False, "HTTP 500") is None
    assert state.status is HEALTHY
    assert state.observe(False, "HTTP 500") is not None


def test_recovery_needs_the_same_number_of_consecutive_successes() -> None:
    state = HealthState(threshold=2, status=UNHEALTHY)
    assert state.observe(True, "HTTP 200") is None
    assert state.observe(False, "HTTP 503") is None  # resets the success streak
    assert state.observe(True, "HTTP 200") is None
    transition = state.observe(True, "HTTP 204")
    assert transition == Transition(previous=UNHEALTHY, status=HEALTHY, reason="HTTP 204")


def test_threshold_one_flips_on_every_opposite_observation() -> None:
    state = HealthState(threshold=1)
    assert state.observe(False, "down") is not None
    assert state.observe(True, "up") is not None
    assert state.observe(True, "up") is None


@pytest.mark.parametrize("threshold", [0, -1])
def test_threshold_must_be_positive(threshold: int) -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        HealthState(threshold=threshold)


def test_unknown_is_not_a_state_of_a_checked_instance() -> None:
    with pytest.raises(ValueError, match="status"):
        HealthState(status=UNKNOWN)


@settings(max_examples=300)
@given(
    threshold=st.integers(min_value=1, max_value=6),
    observations=st.lists(st.booleans(), max_size=80),
)
def test_status_flips_only_after_exactly_threshold_consecutive_opposite_observations(
    threshold: int, observations: list[bool]
) -> None:
    """Cut the observations at each transition: every segment ends in exactly ``threshold``
    observations opposite to the status it started with, and holds no earlier such run."""
    state = HealthState(threshold=threshold)
    segment: list[bool] = []
    status = HEALTHY
    for ok in observations:
        segment.append(ok)
        transition = state.observe(ok, "r")
        opposite = ok is (status is UNHEALTHY)
        tail = segment[-threshold:]
        run_complete = len(tail) == threshold and all(o is ok for o in tail) and opposite
        assert (transition is not None) is run_complete, (segment, status)
        if transition is not None:
            assert transition.previous is status
            assert transition.status is (HEALTHY if ok else UNHEALTHY)
            status = transition.status
            segment = []
        assert state.status is status


class HealthStateMachine(RuleBasedStateMachine):
    """Random walks of observations against a run-length model of Route 53's rule."""

    def __init__(self) -> None:
        super().__init__()
        self.threshold = 0
        self.state: HealthState | None = None
        self.run = 0  # consecutive observations opposite to the model's status
        self.status = HEALTHY

    @precondition(lambda self: self.state is None)
    @rule(threshold=st.integers(min_value=1, max_value=5))
    def create(self, threshold: int) -> None:
        self.threshold = threshold
        self.state = HealthState(threshold)

    @precondition(lambda self: self.state is not None)
    @rule(ok=st.booleans())
    def observe(self, ok: bool) -> None:
        assert self.state is not None
        transition = self.state.observe(ok, "probe")
        if ok is (self.status is HEALTHY):
            self.run = 0
            assert transition is None
            return
        self.run += 1
        if self.run == self.threshold:
            assert transition is not None
            self.status = transition.status
            self.run = 0
        else:
            assert transition is None

    @invariant()
    def agrees_with_model(self) -> None:
        if self.state is not None:
            assert self.state.status is self.status
            assert self.state.streak == self.run < self.threshold


TestHealthStateMachine = HealthStateMachine.TestCase


# -- when to write to the registry -------------------------------------------------------


def test_transitions_are_always_reported() -> None:
    transition = Transition(previous=HEALTHY, status=UNHEALTHY, reason="HTTP 500")
    assert should_report(UNHEALTHY, UNHEALTHY, False, transition)


def test_agreeing_status_is_not_reported() -> None:
    assert not should_report(HEALTHY, HEALTHY, True, None)
    assert not should_report(HEALTHY, HEALTHY, False, None)


def test_a_stale_unhealthy_is_corrected_on_the_first_success() -> None:
    assert should_report(UNHEALTHY, HEALTHY, True, None)
    assert should_report(UNKNOWN, HEALTHY, True, None)


def test_a_stale_unhealthy_is_kept_while_probes_fail_below_threshold() -> None:
    assert not should_report(UNHEALTHY, HEALTHY, False, None)


# -- what to check -----------------------------------------------------------------------


def test_spec_targets_ipv4_port_and_resource_path() -> None:
    config = HealthCheckConfig(
        type=HealthCheckType.HTTP, resource_path="/health", failure_threshold=2
    )
    spec = check_spec(
        service(config=config), instance(AWS_INSTANCE_IPV4="10.0.0.1", AWS_INSTANCE_PORT="8080")
    )
    assert spec == CheckSpec(ProbeTarget(HealthCheckType.HTTP, "10.0.0.1", 8080, "/health"), 2)


@pytest.mark.parametrize(
    ("kind", "port"),
    [(HealthCheckType.HTTP, 80), (HealthCheckType.HTTPS, 443), (HealthCheckType.TCP, 80)],
)
def test_default_ports_and_path(kind: HealthCheckType, port: int) -> None:
    spec = check_spec(
        service(config=HealthCheckConfig(type=kind)),
        instance(AWS_INSTANCE_IPV6="fd00::1"),
    )
    assert spec is not None
    assert (spec.target.host, spec.target.port, spec.target.path) == ("fd00::1", port, "/")
    assert spec.failure_threshold == DEFAULT_FAILURE_THRESHOLD


def test_ipv4_wins_over_ipv6_and_missing_address_is_kept_as_none() -> None:
    svc = service(config=HealthCheckConfig(type=HealthCheckType.TCP))
    both = check_spec(svc, instance(AWS_INSTANCE_IPV4="10.0.0.1", AWS_INSTANCE_IPV6="fd00::1"))
    assert both is not None and both.target.host == "10.0.0.1"
    none = check_spec(svc, instance(color="blue"))
    assert none is not None and none.target.host is None


def test_targets_render_authority_and_escape_the_path() -> None:
    v6 = ProbeTarget(HealthCheckType.HTTP, "::1", 8080, "health check\r\nX: y")
    assert v6.authority == "[::1]:8080"
    assert v6.label == "[::1]:8080/health%20check%0D%0AX:%20y"
    assert ProbeTarget(HealthCheckType.TCP, "10.0.0.1", 22).label == "10.0.0.1:22"


def test_services_without_health_check_config_are_not_checked() -> None:
    custom = service().model_copy(
        update={"health_check_custom_config": HealthCheckCustomConfig(failure_threshold=1)}
    )
    assert check_spec(custom, instance(AWS_INSTANCE_IPV4="10.0.0.1")) is None


class _View:
    def __init__(self, services: list[Service], instances: list[Instance]) -> None:
        self.services = {s.id: s for s in services}
        self._instances: dict[str, dict[str, Instance]] = {}
        for i in instances:
            self._instances.setdefault(i.service_id, {})[i.id] = i

    def instances_of(self, service_id: str) -> dict[str, Instance]:
        return self._instances.get(service_id, {})

    def subscribe(self, listener: object) -> None:  # pragma: no cover - not used here
        raise AssertionError


def test_desired_checks_covers_only_requested_services_with_a_config() -> None:
    http = HealthCheckConfig(type=HealthCheckType.HTTP)
    view = _View(
        [service("a", http), service("b", http), service("c")],
        [
            instance("1", "a", AWS_INSTANCE_IPV4="10.0.0.1"),
            instance("2", "b", AWS_INSTANCE_IPV4="10.0.0.2"),
            instance("3", "c", AWS_INSTANCE_IPV4="10.0.0.3"),
        ],
    )
    assert set(desired_checks(view, ["a", "c", "gone"])) == {("a", "1")}
    assert set(desired_checks(view, view.services)) == {("a", "1"), ("b", "2")}


# -- the schedule diff -------------------------------------------------------------------


def spec(host: str = "10.0.0.1", path: str = "/", threshold: int = 3) -> CheckSpec:
    return CheckSpec(ProbeTarget(HealthCheckType.HTTP, host, 80, path), threshold)


def test_plan_starts_new_stops_removed_and_restarts_changed_checks() -> None:
    running = {("a", "1"): spec(), ("a", "2"): spec("10.0.0.2"), ("a", "3"): spec("10.0.0.3")}
    desired = {
        ("a", "1"): spec(),  # unchanged: kept with its history
        ("a", "2"): spec("10.0.0.9"),  # address changed: restart
        ("a", "4"): spec("10.0.0.4"),  # new
    }  # ("a", "3") was deregistered
    plan = plan_schedule(running, desired, scope={"a"})
    assert plan.stop == {("a", "2"), ("a", "3")}
    assert plan.start == {("a", "2"): spec("10.0.0.9"), ("a", "4"): spec("10.0.0.4")}


def test_plan_restarts_on_a_changed_health_check_config() -> None:
    running = {("a", "1"): spec()}
    plan = plan_schedule(running, {("a", "1"): spec(path="/ready", threshold=1)}, {"a"})
    assert plan.stop == {("a", "1")}
    assert plan.start == {("a", "1"): spec(path="/ready", threshold=1)}


def test_plan_leaves_services_outside_the_scope_alone() -> None:
    running = {("a", "1"): spec(), ("b", "1"): spec()}
    plan = plan_schedule(running, {}, scope={"a"})
    assert plan.stop == {("a", "1")}
    assert not plan.start


def test_full_plan_stops_everything_the_view_no_longer_has() -> None:
    running = {("a", "1"): spec(), ("b", "1"): spec()}
    assert plan_schedule(running, {}, scope=None).stop == set(running)
    assert plan_schedule(running, dict(running), scope=None).empty


@given(
    running=st.dictionaries(
        st.tuples(st.sampled_from("ab"), st.sampled_from("123")),
        st.builds(spec, st.sampled_from(["10.0.0.1", "10.0.0.2"])),
    ),
    desired=st.dictionaries(
        st.tuples(st.sampled_from("ab"), st.sampled_from("123")),
        st.builds(spec, st.sampled_from(["10.0.0.1", "10.0.0.2"])),
    ),
)
def test_applying_a_full_plan_yields_the_desired_schedule(
    running: dict[tuple[str, str], CheckSpec], desired: dict[tuple[str, str], CheckSpec]
) -> None:
    plan = plan_schedule(running, desired)
    after = {k: v for k, v in running.items() if k not in plan.stop} | dict(plan.start)
    assert after == desired
    assert all(running.get(k) != v for k, v in plan.start.items())  # no needless restarts


# -- probe timing ------------------------------------------------------------------------


def test_next_probe_follows_a_fixed_grid_and_skips_missed_slots() -> None:
    assert next_probe_at(100.0, 100.3, 10.0) == 110.0
    assert next_probe_at(100.0, 110.0, 10.0) == 120.0  # a probe that overran its slot
    assert next_probe_at(100.0, 135.5, 10.0) == 140.0
