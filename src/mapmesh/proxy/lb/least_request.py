"""Least request: of two random available endpoints, the one with fewer requests in flight.

Algorithm and cost
------------------
Power of two choices (Mitzenmacher; Envoy's ``LEAST_REQUEST`` with ``choice_count`` 2): draw
two endpoints at random (with replacement, as Envoy does) and take the one with the lower load;
on a tie the first draw wins. Load is ``active_requests / weight`` (compared as
``active_a * weight_b <= active_b * weight_a``, no division). With equal weights the draws are
uniform; with unequal weights each draw is proportional to weight (a binary search over the
cumulative weights of the available endpoints), so an idle cluster still receives traffic in
proportion to weight and a busy one converges to in-flight counts proportional to weight.

O(1) per pick with equal weights, O(log n) with unequal ones; nothing allocated. The active
counts live in a list indexed by endpoint slot; :meth:`LeastRequest.on_request_start` and
:meth:`LeastRequest.on_request_end` are one dict lookup and one add.

Availability changes rebuild the available tuple and the cumulative weights in O(n), only when
the value changes. Exclusion (a retry avoiding what it tried): an excluded draw is redrawn a few
times, then the available endpoints are scanned from a random start; when every available
endpoint is excluded the exclusion is ignored. Randomness comes from the ``rng`` passed in, so
a seed reproduces every pick.

Example::

    lb = LeastRequest(["a", "b", "c"], rng=random.Random(7))
    key = lb.pick()
    lb.on_request_start(key)
    ...
    lb.on_request_end(key)
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Hashable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Final, TypeVar

from mapmesh.proxy.lb.base import LoadBalancer
from mapmesh.proxy.lb.weights import weight_table

__all__ = ["LeastRequest", "LeastRequestStatistics"]

K = TypeVar("K", bound=Hashable)

_REDRAWS: Final = 3  # draws of an excluded endpoint tolerated before scanning


@dataclass(frozen=True, slots=True)
class LeastRequestStatistics:
    """``active``: requests in flight per endpoint. ``fallbacks`` and ``empty`` as for round
    robin."""

    policy: str
    endpoints: int
    available: int
    weighted: bool
    picks: int
    fallbacks: int
    empty: int
    active: Mapping[object, int]


class LeastRequest(LoadBalancer[K]):
    """Power-of-two-choices least request over the available endpoints."""

    name: Final = "least_request"

    __slots__ = (
        "_active",
        "_available",
        "_cumulative",
        "_down",
        "_empty",
        "_fallbacks",
        "_keys",
        "_picks",
        "_random",
        "_slot",
        "_total",
        "_weights",
    )

    def __init__(
        self,
        keys: Sequence[K],
        weights: Sequence[int] | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._random = (rng if rng is not None else random.Random()).random
        self._keys: list[K] = []
        self._weights: list[int] = []
        self._active: list[int] = []
        self._slot: dict[K, int] = {}
        self._down: set[K] = set()
        self._available: tuple[int, ...] = ()
        self._cumulative: list[int] | None = None
        self._total = 0
        self._picks = 0
        self._fallbacks = 0
        self._empty = 0
        self.set_endpoints(keys, weights)

    # -- the hot path ----------------------------------------------------------------------

    def pick(self, excluded: Set[K] = frozenset()) -> K | None:
        """The less loaded of two random available endpoints, avoiding ``excluded`` when
        another endpoint is available."""
        self._picks += 1
        n = len(self._available)
        if n == 0:
            self._empty += 1
            return None
        if excluded:
            return self._pick_excluding(excluded)
        if self._cumulative is None:  # equal weights: inlined, this is the common case
            available = self._available
            a = available[int(self._random() * n)]
            b = available[int(self._random() * n)]
            active = self._active
            return self._keys[a if active[a] <= active[b] else b]
        return self._keys[self._lesser(self._draw(), self._draw())]

    def on_request_start(self, key: K) -> None:
        slot = self._slot.get(key)
        if slot is not None:
            self._active[slot] += 1

    def on_request_end(self, key: K) -> None:
        slot = self._slot.get(key)
        if slot is not None and self._active[slot] > 0:
            self._active[slot] -= 1

    # -- changes (O(n), only when something changed) ---------------------------------------

    def set_available(self, key: K, available: bool) -> None:
        """Let ``key`` take picks or not. Unknown keys are ignored (a removed endpoint)."""
        if key not in self._slot or (key not in self._down) is available:
            return
        if available:
            self._down.discard(key)
        else:
            self._down.add(key)
        self._rebuild()

    def set_endpoints(self, keys: Sequence[K], weights: Sequence[int] | None = None) -> None:
        """Replace the endpoint set. Endpoints kept keep their availability and their count of
        requests in flight; new ones start available and idle."""
        table = weight_table(keys, weights)
        active = {key: self._active[slot] for key, slot in self._slot.items()}
        self._keys = list(table)
        self._weights = list(table.values())
        self._active = [active.get(key, 0) for key in self._keys]
        self._slot = {key: slot for slot, key in enumerate(self._keys)}
        self._down &= table.keys()
        self._rebuild()

    def statistics(self) -> LeastRequestStatistics:
        return LeastRequestStatistics(
            policy=self.name,
            endpoints=len(self._keys),
            available=len(self._available),
            weighted=self._cumulative is not None,
            picks=self._picks,
            fallbacks=self._fallbacks,
            empty=self._empty,
            active=dict(zip(self._keys, self._active, strict=True)),
        )

    def __repr__(self) -> str:
        return f"<LeastRequest available={len(self._available)}/{len(self._keys)}>"

    # -- internals ---------------------------------------------------------------------------

    def _draw(self) -> int:
        available = self._available
        cumulative = self._cumulative
        if cumulative is None:
            return available[int(self._random() * len(available))]
        return available[bisect_right(cumulative, self._random() * self._total)]

    def _lesser(self, a: int, b: int) -> int:
        active = self._active
        if self._cumulative is None:
            return a if active[a] <= active[b] else b
        weights = self._weights
        return a if active[a] * weights[b] <= active[b] * weights[a] else b

    def _pick_excluding(self, excluded: Set[K]) -> K:
        a = self._draw_allowed(excluded)
        if a is None:
            self._fallbacks += 1
            return self._keys[self._lesser(self._draw(), self._draw())]
        b = self._draw_allowed(excluded)
        return self._keys[a if b is None else self._lesser(a, b)]

    def _draw_allowed(self, excluded: Set[K]) -> int | None:
        keys = self._keys
        for _ in range(_REDRAWS):
            slot = self._draw()
            if keys[slot] not in excluded:
                return slot
        available = self._available
        n = len(available)
        start = int(self._random() * n)
        for step in range(n):
            slot = available[(start + step) % n]
            if keys[slot] not in excluded:
                return slot
        return None

    def _rebuild(self) -> None:
        keys = self._keys
        available = tuple(s for s in range(len(keys)) if keys[s] not in self._down)
        self._available = available
        weights = [self._weights[s] for s in available]
        if len(set(weights)) <= 1:
            self._cumulative = None
            self._total = len(available)
            return
        cumulative: list[int] = []
        total = 0
        for weight in weights:
            total += weight
            cumulative.append(total)
        self._cumulative = cumulative
        self._total = total
