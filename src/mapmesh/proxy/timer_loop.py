"""The proxy's event loop: uvloop, with its timers kept on one timer file descriptor.

A loop with any timer pending (the deadline ticker, a report interval, a connect timeout)
makes every ``epoll_wait`` sleep with a timeout, and the kernel then arms and cancels a
high-resolution timer around each sleep. On a virtual machine each of those reprograms the
virtual CPU's timer, which traps to the hypervisor: at 10,000 req/s, with two sleeps per
request, this loop saved the sidecar about 6.5 µs of its 36 µs of CPU per request
(docs/benchmarks.md, "The eighth round").

Here ``call_at`` / ``call_later`` (and so ``asyncio.sleep``, ``wait_for`` and everything
built on them) keep their handles in a heap, and one timerfd, armed for the earliest, is
watched like any socket: the loop sleeps without a timeout, and the timer is reprogrammed
only when the earliest deadline changes — a few hundred times a second instead of twice
per request.

Semantics are asyncio's: handles fire in deadline order, no earlier than their time (within
the loop clock's millisecond resolution, as asyncio allows), in their own context, and a
cancelled handle never runs; cancelled handles are dropped lazily, and the heap is rebuilt
when they are most of it. Where the C speedups are not built, :func:`new_event_loop` is
uvloop's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import os
from collections.abc import Callable
from typing import Final, TypeVarTuple, Unpack

import uvloop

from mapmesh.proxy import speedups

__all__ = ["TimerFdLoop", "new_event_loop"]

_RESOLUTION: Final = 0.001  # uvloop's clock ticks in milliseconds
_COMPACT_AT: Final = 64  # cancelled handles before the heap is considered for a rebuild
_Ts = TypeVarTuple("_Ts")


class TimerFdLoop(uvloop.Loop):
    def __init__(self) -> None:
        super().__init__()
        assert speedups.C is not None
        self._timer_fd: int = speedups.C.timer_fd()
        self._arm: Callable[[int, float], None] = speedups.C.timer_fd_arm
        self._timers: list[asyncio.TimerHandle] = []
        self._armed_for: float | None = None  # the deadline the timerfd is set to
        self._cancelled = 0
        self.add_reader(self._timer_fd, self._expired)

    def call_at(
        self,
        when: float,
        callback: Callable[[Unpack[_Ts]], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        handle = asyncio.TimerHandle(when, callback, args, self, context)
        handle._scheduled = True  # type: ignore[attr-defined]  # so cancel() tells this loop
        heapq.heappush(self._timers, handle)
        if self._armed_for is None or when < self._armed_for:
            self._set(when)
        return handle

    def call_later(
        self,
        delay: float,
        callback: Callable[[Unpack[_Ts]], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_at(self.time() + delay, callback, *args, context=context)

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        self._cancelled += 1
        timers = self._timers
        if self._cancelled >= _COMPACT_AT and self._cancelled * 2 > len(timers):
            self._timers = [timer for timer in timers if not timer.cancelled()]
            heapq.heapify(self._timers)
            self._cancelled = 0

    def _set(self, when: float) -> None:
        self._armed_for = when
        self._arm(self._timer_fd, when - self.time())

    def _expired(self) -> None:
        with contextlib.suppress(BlockingIOError):  # (already read: a spurious wake-up)
            os.read(self._timer_fd, 8)
        self._armed_for = None
        timers = self._timers
        due: list[asyncio.TimerHandle] = []
        end = self.time() + _RESOLUTION
        while timers and (timers[0].cancelled() or timers[0].when() <= end):
            handle = heapq.heappop(timers)
            handle._scheduled = False  # type: ignore[attr-defined]
            if handle.cancelled():
                self._cancelled = max(self._cancelled - 1, 0)
            else:
                due.append(handle)
        if timers:
            self._set(timers[0].when())
        for handle in due:  # (a handle a callback schedules runs on a later expiry)
            if not handle.cancelled():
                handle._run()

    def close(self) -> None:
        if not self.is_closed():
            self.remove_reader(self._timer_fd)
            os.close(self._timer_fd)
        super().close()


def new_event_loop() -> uvloop.Loop:
    """A :class:`TimerFdLoop`, or uvloop's loop where the C speedups are not built."""
    if speedups.C is None:
        return uvloop.new_event_loop()
    return TimerFdLoop()
