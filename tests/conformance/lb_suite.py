"""The conformance suite every load-balancing policy must pass.

Invariant: whatever the policy, a pick is an available endpoint, or None when there is none;
it avoids the excluded endpoints whenever an available one is left; traffic is shared in
proportion to weight; and the same seed gives the same picks. A policy joins by subclassing
:class:`LoadBalancerConformance` in ``test_lb.py`` and setting ``factory``.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapmesh.proxy.lb import LbFactory, LoadBalancer

__all__ = ["LoadBalancerConformance"]

KEYS = [f"10.0.0.{i}:8080" for i in range(1, 11)]


class LoadBalancerConformance:
    """Subclasses set ``factory`` to the policy's constructor."""

    factory: ClassVar[LbFactory]

    def make(
        self, keys: list[str], weights: list[int] | None = None, seed: int = 1
    ) -> LoadBalancer[str]:
        return type(self).factory(keys, weights, rng=random.Random(seed))

    def share(self, lb: LoadBalancer[str], picks: int) -> Counter[str]:
        """Who takes ``picks`` sequential requests, each finished before the next starts."""
        seen: Counter[str] = Counter()
        for _ in range(picks):
            key = lb.pick()
            assert key is not None
            lb.on_request_start(key)
            lb.on_request_end(key)
            seen[key] += 1
        return seen

    # -- nothing to pick -------------------------------------------------------------------

    def test_no_endpoints_gives_none(self) -> None:
        lb = self.make([])
        assert lb.pick() is None
        assert lb.pick({"10.0.0.1:8080"}) is None
        assert lb.statistics().empty == 2

    def test_all_unavailable_gives_none_and_recovers(self) -> None:
        lb = self.make(KEYS[:3])
        for key in KEYS[:3]:
            lb.set_available(key, False)
        assert lb.pick() is None
        lb.set_available(KEYS[1], True)
        assert {lb.pick() for _ in range(20)} == {KEYS[1]}

    def test_one_endpoint_takes_everything(self) -> None:
        lb = self.make(KEYS[:1])
        assert {lb.pick() for _ in range(20)} == {KEYS[0]}

    # -- fairness ----------------------------------------------------------------------------

    def test_equal_weights_share_evenly(self) -> None:
        seen = self.share(self.make(KEYS), 10_000)
        assert set(seen) == set(KEYS)
        for key in KEYS:
            assert 850 <= seen[key] <= 1150, seen

    def test_weighted_shares_follow_weights(self) -> None:
        weights = [1, 2, 3, 4]
        seen = self.share(self.make(KEYS[:4], weights), 10_000)
        for key, weight in zip(KEYS[:4], weights, strict=True):
            expected = 10_000 * weight / sum(weights)
            assert abs(seen[key] - expected) <= 0.1 * expected, seen

    def test_new_weights_from_set_endpoints_take_effect(self) -> None:
        """A snapshot that changes only weights (endpoint weights from Cloud Map) changes the
        shares at once, and dropping the weights evens them out again."""
        lb = self.make(KEYS[:2])
        lb.set_endpoints(KEYS[:2], [3, 1])
        seen = self.share(lb, 4_000)
        assert 2_800 <= seen[KEYS[0]] <= 3_200, seen
        lb.set_endpoints(KEYS[:2])
        seen = self.share(lb, 4_000)
        assert 1_850 <= seen[KEYS[0]] <= 2_150, seen

    def test_weighted_shares_over_the_available_endpoints(self) -> None:
        @settings(max_examples=25, deadline=None)
        @given(
            weights=st.lists(st.integers(1, 8), min_size=1, max_size=5),
            down=st.sets(st.integers(0, 4), max_size=4),
            seed=st.integers(0, 2**16),
        )
        def check(weights: list[int], down: set[int], seed: int) -> None:
            self.check_weighted_shares(weights, down, seed)

        check()

    def check_weighted_shares(self, weights: list[int], down: set[int], seed: int) -> None:
        """Whatever the weights and whichever endpoints are down, each available endpoint's
        share is its weight over the available total (within five standard deviations)."""
        keys = KEYS[: len(weights)]
        lb = self.make(keys[:1], seed=seed)
        lb.set_endpoints(keys, weights)  # weights arriving with an update, not the constructor
        unavailable = {keys[i] for i in down if i < len(keys)}
        for key in unavailable:
            lb.set_available(key, False)
        available = [(k, w) for k, w in zip(keys, weights, strict=True) if k not in unavailable]
        picks = 2_000
        if not available:
            assert lb.pick() is None
            return
        seen = self.share(lb, picks)
        total = sum(w for _, w in available)
        assert set(seen) == {k for k, _ in available}
        for key, weight in available:
            p = weight / total
            assert abs(seen[key] - picks * p) <= 5 * (picks * p * (1 - p)) ** 0.5 + 2, seen

    def test_in_flight_requests_spread(self) -> None:
        """1,000 requests held open at once end up spread over the ten endpoints."""
        lb = self.make(KEYS)
        held: Counter[str] = Counter()
        for _ in range(1_000):
            key = lb.pick()
            assert key is not None
            lb.on_request_start(key)
            held[key] += 1
        assert max(held.values()) <= 120, held
        assert min(held.values()) >= 80, held

    # -- availability and exclusion ----------------------------------------------------------

    def test_never_picks_an_unavailable_endpoint(self) -> None:
        # Hypothesis runs a closure per policy: a @given method shared by subclasses would be
        # one test called from several executors.
        @settings(max_examples=60, deadline=None)
        @given(
            n=st.integers(1, 8),
            ops=st.lists(
                st.tuples(st.sampled_from(["down", "up", "pick"]), st.integers(0, 7)),
                max_size=60,
            ),
            weighted=st.booleans(),
            seed=st.integers(0, 2**16),
        )
        def check(n: int, ops: list[tuple[str, int]], weighted: bool, seed: int) -> None:
            self.check_availability(n, ops, weighted, seed)

        check()

    def check_availability(
        self, n: int, ops: list[tuple[str, int]], weighted: bool, seed: int
    ) -> None:
        keys = KEYS[:n]
        weights = [(i % 3) + 1 for i in range(n)] if weighted else None
        lb = self.make(keys, weights, seed)
        down: set[str] = set()
        for op, i in ops:
            key = keys[i % n]
            if op == "down":
                lb.set_available(key, False)
                down.add(key)
            elif op == "up":
                lb.set_available(key, True)
                down.discard(key)
            else:
                picked = lb.pick()
                if len(down) == n:
                    assert picked is None
                else:
                    assert picked in keys and picked not in down

    def test_respects_exclusion_when_possible(self) -> None:
        @settings(max_examples=60, deadline=None)
        @given(
            n=st.integers(1, 8),
            excluded=st.sets(st.integers(0, 7), max_size=8),
            down=st.sets(st.integers(0, 7), max_size=8),
            weighted=st.booleans(),
            seed=st.integers(0, 2**16),
        )
        def check(n: int, excluded: set[int], down: set[int], weighted: bool, seed: int) -> None:
            self.check_exclusion(n, excluded, down, weighted, seed)

        check()

    def check_exclusion(
        self, n: int, excluded: set[int], down: set[int], weighted: bool, seed: int
    ) -> None:
        keys = KEYS[:n]
        lb = self.make(keys, [(i % 4) + 1 for i in range(n)] if weighted else None, seed)
        unavailable = {keys[i % n] for i in down}
        for key in unavailable:
            lb.set_available(key, False)
        available = set(keys) - unavailable
        avoid = {keys[i % n] for i in excluded}
        for _ in range(10):
            picked = lb.pick(avoid)
            if not available:
                assert picked is None
            elif available - avoid:
                assert picked in available - avoid
            else:  # everything available is excluded: any available endpoint will do
                assert picked in available

    def test_retry_goes_back_to_the_only_endpoint(self) -> None:
        lb = self.make(KEYS[:2])
        lb.set_available(KEYS[1], False)
        assert lb.pick({KEYS[0]}) == KEYS[0]
        assert lb.statistics().fallbacks == 1

    def test_set_endpoints_keeps_availability_of_kept_endpoints(self) -> None:
        lb = self.make(KEYS[:3])
        lb.set_available(KEYS[0], False)
        lb.set_endpoints([KEYS[0], KEYS[1], KEYS[5]])
        picked = {lb.pick() for _ in range(50)}
        assert picked == {KEYS[1], KEYS[5]}
        stats = lb.statistics()
        assert (stats.endpoints, stats.available) == (3, 2)

    def test_unknown_keys_are_ignored(self) -> None:
        lb = self.make(KEYS[:2])
        lb.set_available("gone:1", False)
        lb.on_request_start("gone:1")
        lb.on_request_end("gone:1")
        assert lb.statistics().available == 2

    def test_bad_weights_are_refused_with_the_field(self) -> None:
        with pytest.raises(ValueError, match=r"weights\[1\]: must be >= 1"):
            self.make(KEYS[:2], [1, 0])
        with pytest.raises(ValueError, match="weights: 1 given for 2 endpoints"):
            self.make(KEYS[:2], [1])
        with pytest.raises(ValueError, match=r"keys\[1\]: duplicate endpoint"):
            self.make([KEYS[0], KEYS[0]])

    # -- determinism -------------------------------------------------------------------------

    def test_same_seed_same_picks(self) -> None:
        @settings(max_examples=25, deadline=None)
        @given(seed=st.integers(0, 2**32), weighted=st.booleans())
        def check(seed: int, weighted: bool) -> None:
            self.check_determinism(seed, weighted)

        check()

    def check_determinism(self, seed: int, weighted: bool) -> None:
        weights = [1, 2, 3, 1, 2, 3, 1, 2, 3, 1] if weighted else None
        runs = []
        for _ in range(2):
            lb = self.make(KEYS, weights, seed)
            picks = []
            for i in range(200):
                key = lb.pick({KEYS[i % 10]} if i % 7 == 0 else frozenset())
                assert key is not None
                picks.append(key)
                lb.on_request_start(key)
                if i % 3:
                    lb.on_request_end(key)
                if i == 100:
                    lb.set_available(KEYS[4], False)
            runs.append(picks)
        assert runs[0] == runs[1]

    def test_statistics_name_the_policy_and_count_picks(self) -> None:
        lb = self.make(KEYS[:3])
        for _ in range(5):
            lb.pick()
        stats = lb.statistics()
        assert stats.policy == lb.name
        assert (stats.picks, stats.endpoints, stats.available) == (5, 3, 3)
