"""Request deadlines: one timer, set for the earliest deadline, never early, at most a tick
late, and not woken while every deadline is far off."""

from __future__ import annotations

import asyncio
import time

from mapmesh.proxy.deadlines import TICK, Deadlines
from mapmesh.proxy.timer_loop import new_event_loop


class Item:
    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired_at: float | None = None

    def expire(self, now: float) -> None:
        self.expired_at = time.monotonic()


class CountingLoop:
    """The proxy's loop, counting the timers set on it."""

    def __init__(self) -> None:
        self.loop = new_event_loop()
        self.timers = 0
        call_later = self.loop.call_later

        def counted(delay, callback, *args, context=None):  # type: ignore[no-untyped-def]
            self.timers += 1
            return call_later(delay, callback, *args, context=context)

        self.loop.call_later = counted  # type: ignore[method-assign]


def test_an_item_expires_at_its_deadline_never_before_and_at_most_a_tick_after() -> None:
    async def main() -> list[Item]:
        deadlines = Deadlines(time.monotonic)
        now = time.monotonic()
        items = [Item(now + delay) for delay in (0.05, 0.02, 0.03, 0.0201)]
        for item in items:
            deadlines.track(item)
        await asyncio.sleep(0.12)
        deadlines.close()
        return items

    for item in asyncio.run(main()):
        assert item.expired_at is not None
        late = item.expired_at - item.deadline
        assert 0 <= late < TICK + 0.02  # (+ scheduling slack on a busy machine)


def test_untracked_items_do_not_expire() -> None:
    async def main() -> Item:
        deadlines = Deadlines(time.monotonic)
        item = Item(time.monotonic() + 0.02)
        deadlines.track(item)
        deadlines.untrack(item)
        await asyncio.sleep(0.05)
        deadlines.close()
        return item

    assert asyncio.run(main()).expired_at is None


def test_far_deadlines_set_one_timer_however_many_items_come_and_go() -> None:
    counting = CountingLoop()

    async def main() -> None:
        deadlines = Deadlines(time.monotonic)
        for _ in range(60):  # a request a millisecond, each done long before its deadline
            item = Item(time.monotonic() + 15.0)
            deadlines.track(item)
            await asyncio.sleep(0.001)
            deadlines.untrack(item)
        deadlines.close()

    try:
        counting.loop.run_until_complete(main())
    finally:
        counting.loop.close()
    # a periodic ticker would have set one per tick (60 ms / 5 ms); sleep() sets the rest
    assert counting.timers - 60 <= 1


def test_an_earlier_deadline_brings_the_timer_forward() -> None:
    async def main() -> tuple[Item, Item]:
        deadlines = Deadlines(time.monotonic)
        far = Item(time.monotonic() + 1.0)
        deadlines.track(far)
        near = Item(time.monotonic() + 0.02)
        deadlines.track(near)
        await asyncio.sleep(0.06)
        deadlines.close()
        return far, near

    far, near = asyncio.run(main())
    assert near.expired_at is not None
    assert far.expired_at is None
