"""Every load-balancing policy against the conformance suite, plus what only one promises."""

from __future__ import annotations

import random
from collections import Counter
from typing import ClassVar

import pytest

from mapmesh.proxy.lb import POLICIES, LbFactory, LeastRequest, RoundRobin, build

from .lb_suite import KEYS, LoadBalancerConformance


class TestRoundRobin(LoadBalancerConformance):
    factory: ClassVar[LbFactory] = RoundRobin


class TestLeastRequest(LoadBalancerConformance):
    factory: ClassVar[LbFactory] = LeastRequest


def test_every_policy_runs_the_suite() -> None:
    tested = {cls.factory for cls in (TestRoundRobin, TestLeastRequest)}
    assert set(POLICIES.values()) == tested
    assert list(POLICIES) == ["round_robin", "least_request"]


def test_build_names_the_unknown_policy() -> None:
    assert isinstance(build("least_request", KEYS), LeastRequest)
    with pytest.raises(ValueError, match=r"lb_policy: unknown policy 'random' \(known: "):
        build("random", KEYS)


# -- round robin -----------------------------------------------------------------------------


def test_round_robin_takes_turns_in_order() -> None:
    lb = RoundRobin(["a", "b", "c"])
    assert [lb.pick() for _ in range(7)] == ["a", "b", "c", "a", "b", "c", "a"]


def test_round_robin_seed_only_moves_the_start() -> None:
    lb = RoundRobin(["a", "b", "c"], rng=random.Random(3))
    picks = [lb.pick() for _ in range(6)]
    assert picks[:3] == picks[3:]
    assert set(picks[:3]) == {"a", "b", "c"}


def test_weights_one_and_three_give_one_pick_in_four_exactly() -> None:
    lb = RoundRobin(["a", "b"], weights=[1, 3])
    for _ in range(5):
        window = Counter(lb.pick() for _ in range(4))
        assert window == {"a": 1, "b": 3}


def test_edf_interleaves_rather_than_bursts() -> None:
    """Weights 2:1:1 never give the heavy endpoint more than two picks in a row."""
    lb = RoundRobin(["a", "b", "c"], weights=[2, 1, 1])
    picks = "".join(str(lb.pick()) for _ in range(40))
    assert "aaa" not in picks
    assert Counter(picks) == {"a": 20, "b": 10, "c": 10}


def test_a_retry_skipping_an_endpoint_does_not_cost_it_its_turn() -> None:
    lb = RoundRobin(["a", "b", "c"], weights=[1, 1, 2])
    before = Counter(lb.pick() for _ in range(8))
    skipped = Counter(lb.pick({"c"}) for _ in range(2))
    after = Counter(lb.pick() for _ in range(6))
    assert before == {"a": 2, "b": 2, "c": 4}
    assert "c" not in skipped
    assert (skipped + after)["c"] == 4


def test_edf_deadlines_are_rebased_and_stay_fair() -> None:
    """Deadlines grow with every pick; past 2**20 they are shifted back towards zero, so
    float steps of 1/weight stay exact enough, and the rotation carries on unchanged."""
    lb = RoundRobin(["a", "b"], weights=[1, 2])
    heap = lb._heap
    assert heap is not None
    heap[:] = [(d + 2**20, seq, key, step) for d, seq, key, step in heap]  # as if long-running
    window = Counter(lb.pick() for _ in range(300))
    assert window == {"a": 100, "b": 200}
    assert max(entry[0] for entry in heap) < 1_000


def test_round_robin_becomes_unweighted_when_only_equal_weights_are_available() -> None:
    lb = RoundRobin(["a", "b", "c"], weights=[5, 1, 1])
    assert lb.statistics().weighted
    lb.set_available("a", False)
    assert not lb.statistics().weighted
    assert Counter(lb.pick() for _ in range(10)) == {"b": 5, "c": 5}


# -- least request ---------------------------------------------------------------------------


def test_least_request_prefers_the_endpoint_with_fewer_requests_in_flight() -> None:
    lb = LeastRequest(["busy", "idle"], rng=random.Random(5))
    for _ in range(10):
        lb.on_request_start("busy")
    picks = Counter(lb.pick() for _ in range(1_000))
    # Only a draw of "busy" twice picks it: a quarter of the time.
    assert 200 <= picks["busy"] <= 300
    assert lb.statistics().active == {"busy": 10, "idle": 0}


def test_least_request_compares_requests_per_weight() -> None:
    """4 in flight on weight 4 is as loaded as 1 on weight 1; 5 on weight 4 is less loaded
    than 2 on weight 1."""
    lb = LeastRequest(["heavy", "light"], weights=[4, 1], rng=random.Random(9))
    for _ in range(5):
        lb.on_request_start("heavy")
    for _ in range(2):
        lb.on_request_start("light")
    assert lb._lesser(0, 1) == 0
    lb.on_request_end("light")
    lb.on_request_end("heavy")
    assert lb._lesser(0, 1) == 0  # 4/4 == 1/1: the first draw wins the tie
    assert lb._lesser(1, 0) == 1


def test_least_request_keeps_in_flight_counts_across_endpoint_updates() -> None:
    lb = LeastRequest(["a", "b"], rng=random.Random(1))
    lb.on_request_start("a")
    lb.set_endpoints(["b", "a", "c"])
    assert lb.statistics().active == {"b": 0, "a": 1, "c": 0}
    lb.on_request_end("a")
    lb.on_request_end("a")  # a stray end never makes a count negative
    assert lb.statistics().active["a"] == 0
