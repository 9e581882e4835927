"""The base class of every load-balancing policy (the package docstring says how they are used).

A base class rather than a ``Protocol``: a cluster calls ``pick``, ``on_request_start`` and
``on_request_end`` on every request, and compiled code calls a compiled base class's methods
through its method table, where a protocol's are looked up by name on every call.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence, Set
from typing import Generic, Protocol, TypeVar

__all__ = ["LbStatistics", "LoadBalancer"]

K = TypeVar("K", bound=Hashable)


class LbStatistics(Protocol):
    """What every policy's ``statistics()`` reports (policies may add fields)."""

    @property
    def policy(self) -> str: ...
    @property
    def endpoints(self) -> int: ...
    @property
    def available(self) -> int: ...
    @property
    def picks(self) -> int: ...
    @property
    def fallbacks(self) -> int: ...
    @property
    def empty(self) -> int: ...


class LoadBalancer(Generic[K]):
    """The shape every load-balancing policy has; each policy overrides every method but the
    two request hooks, which do nothing unless the policy counts load, and names itself in a
    ``name`` class attribute (its key in ``POLICIES``)."""

    __slots__ = ()

    def pick(self, excluded: Set[K] = frozenset()) -> K | None:
        """An available endpoint not in ``excluded`` — or, when every available endpoint is
        excluded, any available one; ``None`` when none is available. O(1) or O(log n)."""
        raise NotImplementedError

    def set_available(self, key: K, available: bool) -> None:
        """Mark ``key`` as taking picks or not; O(n) when it changes, free when it does not."""
        raise NotImplementedError

    def set_endpoints(self, keys: Sequence[K], weights: Sequence[int] | None = None) -> None:
        """Replace the endpoint set (a new snapshot); kept endpoints keep their state."""
        raise NotImplementedError

    def on_request_start(self, key: K) -> None:
        """An attempt on ``key`` starts."""

    def on_request_end(self, key: K) -> None:
        """An attempt on ``key`` is over."""

    def statistics(self) -> LbStatistics:
        raise NotImplementedError
