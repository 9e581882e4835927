"""A bounded log of what happened: proxies' events and the control plane's own.

Proxies report ejections, returns, health flips and config changes; the control plane adds
registrations, deregistrations, health-check transitions and config acknowledgements. The log
keeps the newest :data:`MAX_EVENTS` (a ring: appending past the end drops the oldest, O(1)).
Reads filter and sort newest first by event time, then by arrival (a sequence number) so events
with equal times keep a stable order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CONTROL_PLANE", "MAX_EVENTS", "Event", "EventLog", "ProxySource"]

MAX_EVENTS = 10_000
CONTROL_PLANE = "control-plane"


@dataclass(frozen=True, slots=True)
class ProxySource:
    kind: str
    name: str
    instance: str

    def wire(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "instance": self.instance}


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    time: float
    type: str
    mesh: str | None
    source: ProxySource | None  # None: the control plane itself
    detail: Mapping[str, Any]

    def wire(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "type": self.type,
            "mesh": self.mesh,
            "source": self.source.wire() if self.source is not None else CONTROL_PLANE,
            "detail": dict(self.detail),
        }


class EventLog:
    def __init__(self, max_events: int = MAX_EVENTS) -> None:
        self._events: deque[Event] = deque(maxlen=max_events)
        self._seq = 0
        self.recorded = 0

    def add(
        self,
        time: float,
        type: str,
        mesh: str | None,
        source: ProxySource | None,
        detail: Mapping[str, Any],
    ) -> Event:
        self._seq += 1
        self.recorded += 1
        event = Event(self._seq, time, type, mesh, source, detail)
        self._events.append(event)
        return event

    @property
    def evicted(self) -> int:
        return self.recorded - len(self._events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self._events)

    def __len__(self) -> int:
        return len(self._events)

    def query(
        self,
        *,
        mesh: str | None = None,
        since: float | None = None,
        types: frozenset[str] | None = None,
        limit: int = 100,
    ) -> list[Event]:
        """Matching events, newest first. Events without a mesh (registry changes no mesh
        discovers) match only when no mesh is asked for."""
        found = [
            e
            for e in self._events
            if (mesh is None or e.mesh == mesh)
            and (since is None or e.time >= since)
            and (types is None or e.type in types)
        ]
        found.sort(key=lambda e: (e.time, e.seq), reverse=True)
        return found[:limit]
