"""Request deadlines checked by one periodic timer instead of a timer per request.

A timer per request (``call_later`` + ``cancel``) costs about as much as the rest of a
small request's bookkeeping; most requests finish long before their deadline, so the timer
would nearly always be cancelled. Here a request in a waiting phase is put in a set with its
``deadline``; one timer, running only while the set is not empty, ticks every
:data:`TICK` seconds and expires whatever is due. A deadline therefore fires up to one tick
late, never early.
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

    def track(self, item: Expirable) -> None:
        self._items.add(item)
        if self._timer is None:
            self._schedule()

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
                self._schedule()

    def _schedule(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_later(TICK, self._tick)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._items.clear()
