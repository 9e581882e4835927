"""``POST /v1/telemetry``: what this proxy saw since its last report, sent to the control plane.

Theory of operation
-------------------
Every ``interval`` seconds (2 by default) and once more at shutdown, after requests drained,
the reporter builds one report (docs/telemetry.md): per traffic edge the change since the
last *accepted* report (:meth:`~.edges.EdgeSet.window`), the events logged meanwhile, and the
spans of the sampled requests that ended meanwhile. It never touches the request path: the
request path only appends to bounded buffers, and the reporter empties them.

A report that fails (connection refused, timeout, a 5xx) is logged at debug level and its
contents are kept: edges are differences from the last accepted report, so the next window
simply covers both; events and spans go back into their buffers ahead of newer ones, within
their limits (the excess is dropped and counted). A 4xx answer means the control plane will
never take that body (an older control plane without the endpoint, or a body it finds
malformed): it is dropped rather than retried forever.

Each report stays under the control plane's caps (:data:`MAX_EDGES_PER_REPORT` edges,
:data:`MAX_EVENTS_PER_REPORT` events, :data:`MAX_SPANS_PER_REPORT` spans); edges and events
past them wait for the next report, spans past them are dropped (the control plane keeps a
bounded number of traces anyway).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from mapmesh.proxy.control_http import request
from mapmesh.proxy.stats import Counter, Stats
from mapmesh.proxy.telemetry.edges import Edge, EdgeSet, Mark
from mapmesh.proxy.telemetry.events import Event, EventLog
from mapmesh.proxy.telemetry.spans import (
    Identity,
    SpanBuffer,
    TracedRequest,
    span_document,
    spans_of,
)

__all__ = [
    "MAX_EDGES_PER_REPORT",
    "MAX_EVENTS_PER_REPORT",
    "MAX_SPANS_PER_REPORT",
    "REPORT_INTERVAL",
    "Reporter",
]

log = logging.getLogger("mapmesh.proxy.telemetry")

REPORT_INTERVAL = 2.0
MAX_EDGES_PER_REPORT = 500
MAX_EVENTS_PER_REPORT = 200
MAX_SPANS_PER_REPORT = 1000
_MAX_TEXT = 1024


class _Report:
    """One report's body and what to do with its parts once the answer is known."""

    def __init__(
        self,
        body: dict[str, Any],
        marks: list[tuple[Edge, Mark]],
        events: list[Event],
        requests: list[TracedRequest],
        end: float,
    ) -> None:
        self.body = body
        self.marks = marks
        self.events = events
        self.requests = requests
        self.end = end


class Reporter:
    """Sends this proxy's reports to ``control_plane`` (see the module docstring)."""

    def __init__(
        self,
        control_plane: str,
        identity: Identity,
        edges: EdgeSet,
        events: EventLog,
        spans: SpanBuffer,
        stats: Stats,
        config_version: Callable[[], int | None],
        *,
        interval: float = REPORT_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"report interval: must be more than 0 seconds, got {interval}")
        self.control_plane = control_plane
        self.identity = identity
        self.interval = interval
        self._edges = edges
        self._events = events
        self._spans = spans
        self._stats = stats
        self._config_version = config_version
        self._clock = clock
        self._window_start = clock()
        self._success: Counter = stats.cell("telemetry_report_success")
        self._failure: Counter = stats.cell("telemetry_report_failure")
        self._spans_dropped = stats.cell("telemetry_spans_dropped", (("sink", "control_plane"),))
        self._events_dropped = stats.cell("telemetry_events_dropped")
        self._cut_spans = 0

    async def run(self) -> None:
        """Report every interval, forever (cancelled at shutdown)."""
        while True:
            await asyncio.sleep(self.interval)
            await self.report()

    def build(self) -> _Report:
        """The next report (nothing is sent; buffers are emptied into it). Its spans are
        made and encoded by :meth:`encode`, a slice at a time."""
        end = max(self._clock(), self._window_start)
        documents, marks = self._edges.window(MAX_EDGES_PER_REPORT)
        events = self._events.take(MAX_EVENTS_PER_REPORT)
        requests = self._spans.take(MAX_SPANS_PER_REPORT // 2)
        identity = self.identity
        body = {
            "mesh": identity.mesh,
            "kind": identity.kind,
            "name": identity.name,
            "instance": identity.instance,
            "configVersion": self._config_version(),
            "window": {"start": round(self._window_start, 3), "end": round(end, 3)},
            "edges": documents,
            "events": [_event_document(event) for event in events],
            "spans": [],  # last: encode() fills it in
        }
        return _Report(body, marks, events, requests, end)

    async def encode(self, report: _Report) -> bytes:
        """The report's JSON. Spans are made and encoded one traced request at a time
        (~20 µs), yielding to the event loop in between: a report can carry hundreds of
        requests, and doing them in one go would stall every request in flight for
        milliseconds; even eight at a time showed in the p99 of a busy sidecar."""
        pieces: list[str] = []
        spans = 0
        requests = report.requests
        for index, traced in enumerate(requests):
            if index:
                await asyncio.sleep(0)
            more = spans_of(traced, self.identity)
            if spans + len(more) > MAX_SPANS_PER_REPORT:  # whole requests, up to the cap
                self._cut_spans += len(requests) - index
                report.requests = requests[:index]
                break
            spans += len(more)
            pieces.extend(_dumps(span_document(span)) for span in more)
        head = _dumps(report.body)
        return (head[: -len("[]}")] + "[" + ",".join(pieces) + "]}").encode()

    async def report(self, timeout: float = 5.0) -> bool:
        """Build and send one report; True when the control plane took it."""
        report = self.build()
        data = await self.encode(report)
        try:
            status, answer = await request(
                self.control_plane, "POST", "/v1/telemetry", data,
                {"Content-Type": "application/json"}, timeout=timeout,
            )  # fmt: skip
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            self._failed(report, repr(exc), keep=True)
            return False
        if 200 <= status < 300:
            self._delivered(report)
            self._success.value += 1
            self._count_drops()
            return True
        self._failed(report, f"HTTP {status}: {answer[:200]!r}", keep=status >= 500)
        return False

    def _delivered(self, report: _Report) -> None:
        self._edges.commit(report.marks)
        self._window_start = report.end

    def _failed(self, report: _Report, reason: str, *, keep: bool) -> None:
        self._failure.value += 1
        log.debug(
            "telemetry report failed",
            extra={"control_plane": self.control_plane, "error": reason, "retry": keep},
        )
        if keep:
            self._events.put_back(report.events)
            self._spans.put_back(report.requests)
        else:  # refused for good: do not send the same numbers again
            self._delivered(report)
        self._count_drops()

    def _count_drops(self) -> None:
        self._spans_dropped.value = self._spans.dropped + self._cut_spans
        self._events_dropped.value = self._events.dropped


def _event_document(event: Event) -> dict[str, Any]:
    moment, kind, detail = event
    return {
        "time": round(moment, 3),
        "type": kind,
        "detail": {
            key: value[:_MAX_TEXT] if isinstance(value, str) else value
            for key, value in detail.items()
        },
    }


def _dumps(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"))
