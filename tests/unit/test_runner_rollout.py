"""Rollouts, scaling and replica health as plain decisions (no processes, no clock)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapmesh.runner.health import Health, HealthTracker
from mapmesh.runner.rollout import (
    MAX_ROLLOUT_FAILURES,
    Abort,
    ReplicaView,
    Start,
    Stop,
    Wait,
    next_step,
)

View = ReplicaView[str]


class Node:
    """Replicas of one node, driven by :func:`next_step` like the supervisor drives them.
    Started replicas become ready on the following step; stops take effect at once."""

    def __init__(self, replicas: list[View]) -> None:
        self.replicas = replicas
        self.initial = len(replicas)
        self.next_number = max((r.number for r in replicas), default=0) + 1
        self.log: list[str] = []

    def run(self, spec: str, count: int, steps: int = 50) -> list[str]:
        for _ in range(steps):
            step = next_step(self.replicas, spec, count)
            self.check(spec, count)
            if step is None:
                return self.log
            if isinstance(step, Start):
                for _ in range(step.count):
                    self.replicas.append(ReplicaView(self.next_number, spec, ready=False))
                    self.log.append(f"start {self.next_number}")
                    self.next_number += 1
            elif isinstance(step, Stop):
                self.replicas = [r for r in self.replicas if r.number != step.number]
                self.log.append(f"stop {step.number}")
            elif isinstance(step, Wait):
                self.replicas = [replace(r, ready=True) for r in self.replicas]
                self.log.append("wait")
            else:
                raise AssertionError(step)
        raise AssertionError(f"no convergence: {self.log}")

    def check(self, spec: str, count: int) -> None:
        """A replacement runs at most one replica more than wanted (or than there were)."""
        if any(r.spec != spec for r in self.replicas):
            assert len(self.replicas) <= max(count + 1, self.initial)


def views(spec: str, *numbers: int, ready: bool = True) -> list[View]:
    return [ReplicaView(n, spec, ready) for n in numbers]


def test_first_start_starts_every_replica_at_once_then_waits_for_them() -> None:
    node = Node([])
    assert node.run("a", 3) == ["start 1", "start 2", "start 3", "wait"]


def test_a_rolling_replacement_starts_one_then_stops_one() -> None:
    node = Node(views("old", 1, 2))
    log = node.run("new", 2)
    assert log == ["start 3", "wait", "stop 1", "start 4", "wait", "stop 2"]
    assert [(r.number, r.spec) for r in node.replicas] == [(3, "new"), (4, "new")]


def test_replacing_while_scaling_down_stops_outdated_first() -> None:
    node = Node(views("old", 1, 2, 3))
    assert node.run("new", 1) == ["stop 1", "stop 2", "start 4", "wait", "stop 3"]


def test_replacing_while_scaling_up_keeps_one_replica_of_surge() -> None:
    node = Node(views("old", 1, 2))
    log = node.run("new", 3)
    assert log == ["start 3", "wait", "start 4", "wait", "stop 1", "start 5", "wait", "stop 2"]


def test_scale_down_stops_the_newest_and_unready_first() -> None:
    replicas = [ReplicaView(1, "a", True), ReplicaView(2, "a", False), ReplicaView(3, "a", True)]
    assert next_step(replicas, "a", 2) == Stop(2)
    assert next_step(views("a", 1, 2, 3), "a", 1) == Stop(3)
    assert next_step(views("a", 1, 2), "a", 0) == Stop(2)


def test_an_old_replica_is_never_stopped_before_its_replacement_is_ready() -> None:
    replicas = [*views("old", 1, 2), ReplicaView(3, "new", ready=False)]
    assert next_step(replicas, "new", 2) == Wait()


def test_a_replacement_that_keeps_failing_is_given_up() -> None:
    failing = ReplicaView(3, "new", ready=False, failures=MAX_ROLLOUT_FAILURES)
    assert next_step([*views("old", 1, 2), failing], "new", 2) == Abort(3)
    # Without old replicas to fall back on, it just keeps trying (the replica restarts).
    assert next_step([failing], "new", 1) == Wait()


def test_replicas_being_stopped_do_not_count() -> None:
    replicas = [ReplicaView(1, "a", True, stopping=True), ReplicaView(2, "a", True)]
    assert next_step(replicas, "a", 2) == Start(1)
    assert next_step(views("a", 1, 2), "a", 2) is None


@settings(max_examples=200, deadline=None)
@given(
    old=st.integers(min_value=0, max_value=5),
    current=st.integers(min_value=0, max_value=3),
    count=st.integers(min_value=0, max_value=6),
)
def test_every_rollout_converges_to_count_current_replicas(
    old: int, current: int, count: int
) -> None:
    node = Node([*views("old", *range(1, old + 1)), *views("new", *range(10, 10 + current))])
    node.run("new", count)
    assert len(node.replicas) == count
    assert all(r.spec == "new" and r.ready for r in node.replicas)


@settings(max_examples=200, deadline=None)
@given(old=st.integers(min_value=1, max_value=5), count=st.integers(min_value=1, max_value=5))
def test_a_replacement_never_leaves_fewer_ready_replicas_than_wanted(old: int, count: int) -> None:
    node = Node(views("old", *range(1, old + 1)))
    for _ in range(60):
        step = next_step(node.replicas, "new", count)
        if step is None:
            break
        if isinstance(step, Stop):
            node.replicas = [r for r in node.replicas if r.number != step.number]
        elif isinstance(step, Start):
            node.replicas += [
                ReplicaView(node.next_number + i, "new", False) for i in range(step.count)
            ]
            node.next_number += step.count
        else:
            node.replicas = [replace(r, ready=True) for r in node.replicas]
        ready = sum(r.ready for r in node.replicas)
        assert ready >= min(count, old), node.replicas


# -- health ---------------------------------------------------------------------------------


def test_a_replica_is_healthy_after_enough_passes_in_a_row() -> None:
    tracker = HealthTracker(healthy_threshold=2, unhealthy_threshold=3)
    assert tracker.state is Health.STARTING
    assert tracker.observe(True, "ok") is None
    assert tracker.observe(False, "refused") is None  # starting: a failure resets the count
    assert tracker.observe(True, "ok") is None
    assert tracker.observe(True, "ok") is Health.HEALTHY


@pytest.mark.parametrize("threshold", [1, 2, 3])
def test_a_healthy_replica_turns_unhealthy_after_failures_in_a_row(threshold: int) -> None:
    tracker = HealthTracker(healthy_threshold=1, unhealthy_threshold=threshold)
    assert tracker.observe(True, "ok") is Health.HEALTHY
    for _ in range(threshold - 1):
        assert tracker.observe(False, "HTTP 500") is None
    assert tracker.observe(True, "ok") is None  # one success resets the streak
    for _ in range(threshold - 1):
        assert tracker.observe(False, "HTTP 500") is None
    assert tracker.observe(False, "HTTP 500") is Health.UNHEALTHY
    assert tracker.reason == "HTTP 500"
    assert tracker.observe(True, "ok") is None  # final: the replica is restarted instead
    assert tracker.state is Health.UNHEALTHY
