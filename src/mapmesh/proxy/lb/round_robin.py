"""Round robin: available endpoints take turns, in proportion to their weights.

Algorithm and cost
------------------
* **Equal weights** (the usual case — Cloud Map endpoints carry no weight): a cursor walks the
  tuple of available endpoints. O(1) per pick, nothing allocated.
* **Unequal weights**: earliest deadline first, as Envoy's ``edf_scheduler.h``. Each available
  endpoint holds a deadline; a pick takes the earliest and moves it ``1 / weight`` later, ties
  going to the entry queued first, so equal deadlines alternate. O(log n) per pick, one tuple
  allocated. Over any window every endpoint gets ``weight / total`` of the picks, give or take
  one.

Availability is set by the caller (healthy and not ejected, see ``docs/resilience.md``);
:meth:`RoundRobin.set_available` rebuilds the available tuple — and the EDF heap — in O(n),
only when the value actually changes. A pick never looks at an unavailable endpoint.

Exclusion: a retry passes the endpoints it already tried. The cursor steps over them; EDF sets
aside excluded entries at the top of the heap and pushes them back unchanged, so skipping an
endpoint does not cost it its turn. When every available endpoint is excluded the pick
ignores the exclusion: a retry may go back to the only endpoint there is.

Deterministic: the same calls give the same picks. An optional ``rng`` only chooses where the
rotation starts, so proxies restarted together do not all send their first request to the
same endpoint (Envoy starts its round robin at a random index for the same reason).

Example::

    lb = RoundRobin(["10.0.0.1:80", "10.0.0.2:80"], weights=[1, 3])
    lb.pick()                                # "10.0.0.2:80" three times out of four
    lb.set_available("10.0.0.2:80", False)   # ejected: every pick now goes to the first
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Hashable, Sequence, Set
from dataclasses import dataclass
from typing import Final, TypeVar

from mapmesh.proxy.lb.base import LoadBalancer
from mapmesh.proxy.lb.weights import weight_table

__all__ = ["RoundRobin", "RoundRobinStatistics"]

K = TypeVar("K", bound=Hashable)

_REBASE_AT: Final = float(1 << 20)  # keep EDF deadlines small enough for exact-enough float steps


@dataclass(frozen=True, slots=True)
class RoundRobinStatistics:
    """``fallbacks``: picks where every available endpoint was excluded. ``empty``: picks
    that found no available endpoint (the caller answers 503, flag UH)."""

    policy: str
    endpoints: int
    available: int
    weighted: bool
    picks: int
    fallbacks: int
    empty: int


class RoundRobin(LoadBalancer[K]):
    """Weighted round robin over the available endpoints (see the module docstring)."""

    name: Final = "round_robin"

    __slots__ = (
        "_available",
        "_cursor",
        "_down",
        "_empty",
        "_fallbacks",
        "_heap",
        "_offset",
        "_order",
        "_picks",
        "_seq",
        "_weight",
    )

    def __init__(
        self,
        keys: Sequence[K],
        weights: Sequence[int] | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._offset = rng.randrange(1 << 16) if rng is not None else 0
        self._cursor = self._offset
        self._down: set[K] = set()
        self._picks = 0
        self._fallbacks = 0
        self._empty = 0
        self._order: tuple[K, ...] = ()
        self._weight: dict[K, int] = {}
        self._available: tuple[K, ...] = ()
        self._heap: list[tuple[float, int, K, float]] | None = None
        self._seq = 0
        self.set_endpoints(keys, weights)

    # -- the hot path ----------------------------------------------------------------------

    def pick(self, excluded: Set[K] = frozenset()) -> K | None:
        """The next endpoint, avoiding ``excluded`` when another one is available."""
        self._picks += 1
        if self._heap is not None:
            return self._pick_edf(self._heap, excluded)
        available = self._available
        n = len(available)
        if n == 0:
            self._empty += 1
            return None
        i = self._cursor % n
        key = available[i]
        if excluded and key in excluded:
            for step in range(1, n):
                j = (i + step) % n
                if available[j] not in excluded:
                    i = j
                    key = available[j]
                    break
            else:
                self._fallbacks += 1
        self._cursor = i + 1
        return key

    def on_request_start(self, key: K) -> None:
        """Round robin ignores load."""

    def on_request_end(self, key: K) -> None:
        """Round robin ignores load."""

    # -- changes (O(n), only when something changed) ---------------------------------------

    def set_available(self, key: K, available: bool) -> None:
        """Let ``key`` take picks or not. Unknown keys are ignored (a removed endpoint)."""
        if key not in self._weight or (key not in self._down) is available:
            return
        if available:
            self._down.discard(key)
        else:
            self._down.add(key)
        self._rebuild()

    def set_endpoints(self, keys: Sequence[K], weights: Sequence[int] | None = None) -> None:
        """Replace the endpoint set; endpoints kept keep their availability, new ones start
        available."""
        self._weight = weight_table(keys, weights)
        self._order = tuple(keys)
        self._down &= self._weight.keys()
        self._rebuild()

    def statistics(self) -> RoundRobinStatistics:
        return RoundRobinStatistics(
            policy=self.name,
            endpoints=len(self._order),
            available=len(self._available),
            weighted=self._heap is not None,
            picks=self._picks,
            fallbacks=self._fallbacks,
            empty=self._empty,
        )

    def __repr__(self) -> str:
        mode = "edf" if self._heap is not None else "cursor"
        return f"<RoundRobin {mode} available={len(self._available)}/{len(self._order)}>"

    # -- internals ---------------------------------------------------------------------------

    def _rebuild(self) -> None:
        available = tuple(k for k in self._order if k not in self._down)
        self._available = available
        if len({self._weight[k] for k in available}) <= 1:
            self._heap = None
            return
        n = len(available)
        heap = []
        for i, key in enumerate(available):
            step = 1.0 / self._weight[key]
            heap.append((step, (i - self._offset) % n, key, step))
        heapq.heapify(heap)
        self._heap = heap
        self._seq = n

    def _pick_edf(self, heap: list[tuple[float, int, K, float]], excluded: Set[K]) -> K | None:
        if not heap:
            self._empty += 1
            return None
        held: list[tuple[float, int, K, float]] = []
        if excluded:
            while heap and heap[0][2] in excluded:
                held.append(heapq.heappop(heap))
            if not heap:
                self._fallbacks += 1
                heap.append(held.pop(0))
        deadline, _, key, step = heap[0]
        heapq.heapreplace(heap, (deadline + step, self._seq, key, step))
        self._seq += 1
        for entry in held:
            heapq.heappush(heap, entry)
        if deadline > _REBASE_AT:
            self._rebase(heap, deadline)
        return key

    @staticmethod
    def _rebase(heap: list[tuple[float, int, K, float]], by: float) -> None:
        # Subtracting the same amount from every deadline keeps the heap order.
        heap[:] = [(d - by, seq, key, step) for d, seq, key, step in heap]
