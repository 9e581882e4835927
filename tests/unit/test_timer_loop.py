"""The proxy's event loop keeps asyncio's timer semantics on its one timer descriptor."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from mapmesh.proxy import speedups
from mapmesh.proxy.timer_loop import TimerFdLoop, new_event_loop

pytestmark = pytest.mark.skipif(
    speedups.C is None, reason="the C speedups are not built: scripts/build_native.py"
)


def run(main: object) -> object:
    loop = new_event_loop()
    assert isinstance(loop, TimerFdLoop)
    try:
        return loop.run_until_complete(main)  # type: ignore[arg-type]
    finally:
        loop.close()


def test_timers_fire_in_deadline_order_and_never_early() -> None:
    async def main() -> list[tuple[str, float, float]]:
        loop = asyncio.get_running_loop()
        fired: list[tuple[str, float, float]] = []
        done = loop.create_future()
        start = loop.time()
        for name, delay in (("c", 0.06), ("a", 0.02), ("b", 0.04), ("a2", 0.02)):
            loop.call_later(delay, lambda n=name, d=delay: fired.append((n, d, loop.time())))
        loop.call_later(0.08, done.set_result, None)
        await done
        return [(name, delay, at - start) for name, delay, at in fired]

    fired = run(main())
    assert [name for name, _, _ in fired] in (["a", "a2", "b", "c"], ["a2", "a", "b", "c"])
    for _, delay, elapsed in fired:  # type: ignore[attr-defined]
        assert elapsed >= delay - 0.001  # the loop clock's resolution, as asyncio allows
        assert elapsed < delay + 0.5


def test_a_cancelled_timer_never_runs() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        ran: list[str] = []
        doomed = loop.call_later(0.02, ran.append, "doomed")
        loop.call_later(0.01, doomed.cancel)  # cancelled by an earlier timer
        early = loop.call_later(0.005, ran.append, "early")
        early.cancel()
        await asyncio.sleep(0.05)
        ran.append("slept")
        return ran

    assert run(main()) == ["slept"]


def test_sleep_wait_for_and_timeouts_work_on_it() -> None:
    async def main() -> tuple[bool, float]:
        started = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.sleep(10), 0.05)
        except TimeoutError:
            timed_out = True
        else:
            timed_out = False
        return timed_out, time.monotonic() - started

    timed_out, took = run(main())  # type: ignore[misc]
    assert timed_out
    assert 0.045 <= took < 1.0


def test_a_timer_set_by_a_timer_callback_runs_after_the_callbacks_already_ready() -> None:
    """As in asyncio: what a timer callback schedules for now runs on a later iteration,
    after what it asked to run soon — so timers that keep rescheduling themselves cannot
    starve the rest of the loop."""

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        order: list[str] = []

        def first() -> None:
            order.append("timer")
            loop.call_later(0, order.append, "timer it set")
            loop.call_soon(order.append, "soon")

        loop.call_later(0.01, first)
        await asyncio.sleep(0.05)
        return order

    assert run(main()) == ["timer", "soon", "timer it set"]


def test_cancelled_timers_do_not_pile_up() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        for _ in range(1000):
            loop.call_later(3600, print).cancel()
        assert isinstance(loop, TimerFdLoop)
        return len(loop._timers)

    assert run(main()) < 128  # type: ignore[operator]


def test_closing_the_loop_closes_its_timer_descriptor() -> None:
    loop = new_event_loop()
    assert isinstance(loop, TimerFdLoop)
    fd = loop._timer_fd
    os.fstat(fd)
    loop.close()
    with pytest.raises(OSError):
        os.fstat(fd)
    loop.close()  # twice is fine
