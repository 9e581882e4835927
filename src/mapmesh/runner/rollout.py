"""The next thing to do to bring one virtual node's replicas to what the app file wants (pure).

Theory of operation
-------------------
The supervisor calls :func:`next_step` with a view of the node's replicas (their spec, whether
they are ready — healthy and registered in Cloud Map — and how often they failed in a row),
the wanted spec and the wanted count, carries out the step, and asks again whenever a replica
changes. Rules, first match wins (*current* replicas run the wanted spec, *outdated* ones an
older one; replicas being stopped are not counted):

1. a current replica is not ready while outdated ones still serve: if it failed
   :data:`MAX_ROLLOUT_FAILURES` times in a row → :class:`Abort` (the old replicas keep
   serving); else → :class:`Wait` (never stop an old replica before its replacement answers);
2. more replicas than wanted → :class:`Stop` one: outdated first, then one that is not ready,
   then the newest;
3. no outdated replicas and fewer current than wanted → :class:`Start` all the missing ones
   at once (first start, scale up);
4. a current replica is not ready → :class:`Wait`;
5. outdated replicas remain → :class:`Start` one (a surge of one: the replacement runs
   beside the replica it replaces, then rule 2 stops an outdated one);
6. otherwise the node has converged → None.

So a rollout keeps at least ``count`` ready replicas at every moment and at most ``count + 1``
running (ECS's minimumHealthyPercent 100, maximumPercent "one more").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = [
    "MAX_ROLLOUT_FAILURES",
    "Abort",
    "ReplicaView",
    "Start",
    "Step",
    "Stop",
    "Wait",
    "next_step",
]

MAX_ROLLOUT_FAILURES = 3
"""Failed starts in a row after which a replacement is given up and the old replicas kept."""

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class ReplicaView(Generic[S]):
    number: int
    spec: S
    ready: bool
    failures: int = 0
    stopping: bool = False


@dataclass(frozen=True, slots=True)
class Start:
    count: int


@dataclass(frozen=True, slots=True)
class Stop:
    number: int


@dataclass(frozen=True, slots=True)
class Wait:
    pass


@dataclass(frozen=True, slots=True)
class Abort:
    number: int  # the replacement that kept failing


Step = Start | Stop | Wait | Abort


def next_step(replicas: Sequence[ReplicaView[S]], spec: S, count: int) -> Step | None:
    live = [r for r in replicas if not r.stopping]
    current = [r for r in live if r.spec == spec]
    outdated = [r for r in live if r.spec != spec]
    unready = [r for r in current if not r.ready]
    if unready and outdated:
        for replica in unready:
            if replica.failures >= MAX_ROLLOUT_FAILURES:
                return Abort(replica.number)
        return Wait()
    if len(live) > count:
        return Stop(_victim(outdated, current).number)
    if not outdated and len(current) < count:
        return Start(count - len(current))
    if unready:
        return Wait()
    if outdated:
        return Start(1)
    return None


def _victim(outdated: list[ReplicaView[S]], current: list[ReplicaView[S]]) -> ReplicaView[S]:
    """Which replica to stop: outdated first (oldest first), then unready, then the newest."""
    if outdated:
        return min(outdated, key=lambda r: r.number)
    unready = [r for r in current if not r.ready]
    if unready:
        return max(unready, key=lambda r: r.number)
    return max(current, key=lambda r: r.number)
