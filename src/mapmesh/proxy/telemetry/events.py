"""Events a proxy reports: outlier ejections and returns, active health transitions, config
versions applied or rejected (docs/telemetry.md).

They are rare, so an event is a small tuple made when it happens. The log is bounded: when it
is full, new events are dropped and counted (the reporter empties it every interval), so a
flapping endpoint cannot grow the proxy's memory while the control plane is unreachable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

__all__ = ["MAX_EVENTS", "Event", "EventLog"]

MAX_EVENTS = 1000

Scalar = str | int | float | bool | None
Event = tuple[float, str, Mapping[str, Scalar]]
"""(unix time, type, detail): ``("ejection", {"cluster": ..., "endpoint": ...})``."""


class EventLog:
    """Events since the last report, oldest first; at most ``limit``."""

    def __init__(self, limit: int = MAX_EVENTS, clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self._clock = clock
        self._events: list[Event] = []
        self.dropped = 0

    def add(self, kind: str, **detail: Scalar) -> None:
        if len(self._events) >= self.limit:
            self.dropped += 1
            return
        self._events.append((self._clock(), kind, detail))

    def take(self, count: int | None = None) -> list[Event]:
        """The oldest ``count`` events (all by default), removed from the log."""
        events = self._events
        if count is None or count >= len(events):
            self._events = []
            return events
        taken, self._events = events[:count], events[count:]
        return taken

    def put_back(self, events: list[Event]) -> None:
        """Return events a failed report carried, ahead of newer ones, within the limit."""
        merged = events + self._events
        self.dropped += max(len(merged) - self.limit, 0)
        self._events = merged[-self.limit :] if len(merged) > self.limit else merged

    def __len__(self) -> int:
        return len(self._events)
