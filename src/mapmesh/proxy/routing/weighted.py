"""Weighted target choice: a route's traffic split over its targets by weight.

Algorithm: cumulative weights and a binary search (``bisect``), O(log n) per pick, O(n) to
build. Route targets are few (App Mesh allows ten), so this beats an alias table on
constant factors and is simple to check. The random draw is a parameter — ``pick(u)`` takes
a number in [0, 1), ``choose(rng)`` draws it from a :class:`random.Random` — so a seeded
generator reproduces every choice.

Targets with weight 0 are dropped when the picker is built and so are never picked. A route
without any positive weight has an empty picker: ``pick`` returns None and the router
answers as for a target without endpoints (503).

Example::

    >>> from mapmesh.model.snapshot import WeightedCluster
    >>> picker = WeightedPicker((
    ...     WeightedCluster(cluster="demo/v1:8080", weight=90, port=8080),
    ...     WeightedCluster(cluster="demo/v2:8080", weight=10, port=8080),
    ... ))
    >>> picker.pick(0.95).cluster
    'demo/v2:8080'
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate

from mapmesh.model.snapshot import WeightedCluster

__all__ = ["WeightedPicker"]


class WeightedPicker:
    """Picks one of a route's targets with probability weight / total weight."""

    __slots__ = ("_bounds", "_last", "_only", "targets", "total")

    def __init__(self, targets: Sequence[WeightedCluster]) -> None:
        live = tuple(t for t in targets if t.weight > 0)
        #: the targets that can be picked (positive weight), in snapshot order
        self.targets = live
        #: the sum of their weights
        self.total = sum(t.weight for t in live)
        self._bounds = tuple(accumulate(t.weight for t in live))
        self._only = live[0] if len(live) == 1 else None
        self._last = live[-1] if live else None

    def pick(self, u: float) -> WeightedCluster | None:
        """The target for a uniform draw ``u`` in [0, 1); None when nothing can be picked.

        Target ``i`` owns the draws in ``[bounds[i-1], bounds[i]) / total``.
        """
        if self._only is not None:
            return self._only
        index = bisect_right(self._bounds, u * self.total)
        # u * total can round up to total for u just below 1: that draw belongs to the last.
        return self.targets[index] if index < len(self.targets) else self._last

    def choose(self, rng: random.Random) -> WeightedCluster | None:
        """``pick(rng.random())``, inlined: one draw from ``rng`` (none when one target)."""
        if self._only is not None:
            return self._only
        index = bisect_right(self._bounds, rng.random() * self.total)
        return self.targets[index] if index < len(self.targets) else self._last

    def share(self, cluster: str) -> float:
        """The fraction of picks that go to ``cluster`` (0.0 when it cannot be picked)."""
        if not self.total:
            return 0.0
        return sum(t.weight for t in self.targets if t.cluster == cluster) / self.total

    def __repr__(self) -> str:
        split = ", ".join(f"{t.cluster}={t.weight}" for t in self.targets)
        return f"WeightedPicker({split})"
