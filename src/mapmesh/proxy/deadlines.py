"""Request deadlines checked by one timer instead of a timer per request.

A timer per request (``call_later`` + ``cancel``) costs about as much as the rest of a
small request's bookkeeping; most requests finish long before their deadline, so the timer
would nearly always be cancelled. Here a request in a waiting phase is put in a set with its
``deadline``, and one timer is set for the earliest deadline in the set — no sooner than
:data:`TICK` from now, so that deadlines close together expire in one pass. When it fires
it expires whatever is due and sets itself for the earliest deadline left. A deadline
therefore fires up to one tick late, never early.

Requests on a route share a timeout, so a request tracked later has a later deadline and
costs one comparison: the timer fires about once per timeout, not every tick, and a proxy
under steady load is not woken hundreds of times a second for nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, Protocol

__all__ = ["TICK", "Deadlines", "Expirable"]

TICK: Final = 0.005


class Expirable(Protocol):
    deadline: float

    def expire(self, now: float) -> None:
        """The deadline passed (called once; the item is no longer tracked)."""
        ...


class Deadlines:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None  # the running one, on first use
        self._clock = clock
        self._items: set[Expirable] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._fires_at = 0.0  # when the timer fires, on ``clock``

    def track(self, item: Expirable) -> None:
        self._items.add(item)
        if self._timer is None or item.deadline < self._fires_at:
            self._schedule(item.deadline)

    def untrack(self, item: Expirable) -> None:
        self._items.discard(item)

    def __len__(self) -> int:
        return len(self._items)

    def _tick(self) -> None:
        self._timer = None
        now = self._clock()
        due = [item for item in self._items if item.deadline <= now]
        try:
            for item in due:
                self._items.discard(item)
            for item in due:
                item.expire(now)
        finally:
            if self._items and self._timer is None:
                self._schedule(min(item.deadline for item in self._items))

    def _schedule(self, deadline: float) -> None:
        """Have the timer fire by ``deadline`` (or one tick from now, if that is later)."""
        now = self._clock()
        fires_at = max(deadline, now + TICK)
        if self._timer is not None:
            if fires_at >= self._fires_at:
                return  # it already fires sooner
            self._timer.cancel()
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._fires_at = fires_at
        self._timer = self._loop.call_later(fires_at - now, self._tick)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._items.clear()
