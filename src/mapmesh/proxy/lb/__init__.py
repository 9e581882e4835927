"""Load balancers: which available endpoint of a cluster takes the next attempt.

Every policy has one shape (:class:`LoadBalancer`): it is built from the cluster's endpoint
keys and optional integer weights (default 1), the caller tells it which endpoints are
available (healthy and not ejected — the LB never decides that), and :meth:`~LoadBalancer.pick`
returns a key or ``None`` when nothing is available (the caller answers 503, flag UH). A retry
passes the endpoints already tried as ``excluded``; they are avoided when another endpoint is
available. Policies are declared once, in :data:`POLICIES`; each lives in its own module that
names its algorithm and cost:

* ``round_robin`` (:mod:`.round_robin`) — the snapshot's ``lb_policy`` and the default; a
  cursor, or EDF for unequal weights. Deterministic.
* ``least_request`` (:mod:`.least_request`) — power of two choices on requests in flight,
  seeded by the ``rng`` passed in.

Every policy passes ``tests/conformance/lb_suite.py``.

Example::

    lb = build("round_robin", ["10.0.0.1:8080", "10.0.0.2:8080"], rng=random.Random(1))
    key = lb.pick()
    lb.on_request_start(key)
    ...                                   # the attempt
    lb.on_request_end(key)
    retry_key = lb.pick(excluded={key})   # another endpoint when there is one
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence
from typing import Protocol, TypeVar

from mapmesh.proxy.lb.base import LbStatistics, LoadBalancer
from mapmesh.proxy.lb.least_request import LeastRequest, LeastRequestStatistics
from mapmesh.proxy.lb.round_robin import RoundRobin, RoundRobinStatistics

__all__ = [
    "POLICIES",
    "LbFactory",
    "LbStatistics",
    "LeastRequest",
    "LeastRequestStatistics",
    "LoadBalancer",
    "RoundRobin",
    "RoundRobinStatistics",
    "build",
]

K = TypeVar("K", bound=Hashable)


class LbFactory(Protocol):
    """A policy's constructor: endpoint keys, optional weights, optional seeded ``rng``."""

    def __call__(
        self,
        keys: Sequence[K],
        weights: Sequence[int] | None = None,
        *,
        rng: random.Random | None = None,
    ) -> LoadBalancer[K]: ...


POLICIES: dict[str, LbFactory] = {
    RoundRobin.name: RoundRobin,
    LeastRequest.name: LeastRequest,
}
"""Every policy by name, in the order documentation lists them."""


def build(
    policy: str,
    keys: Sequence[K],
    weights: Sequence[int] | None = None,
    *,
    rng: random.Random | None = None,
) -> LoadBalancer[K]:
    """The load balancer called ``policy`` over ``keys``."""
    try:
        factory = POLICIES[policy]
    except KeyError:
        known = ", ".join(POLICIES)
        raise ValueError(f"lb_policy: unknown policy {policy!r} (known: {known})") from None
    return factory(keys, weights, rng=rng)
