"""``POST /v1/telemetry`` bodies → typed reports: the one place untrusted telemetry is parsed.

A report comes from a proxy we do not control (an old version, a bug, anything that can reach
the port), so nothing in it is taken on trust: every field is checked for type, range and
length, and the first problem is raised as :class:`ReportError` naming the field
(``edges[2].latencyMs.counts: needs len(bounds)+1 entries``). Lists longer than the caps are
cut before their items are looked at; what was cut is returned in :class:`Dropped` so the
store can count it. The schema is docs/telemetry.md's.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mapmesh.telemetry.histogram import Bounds

__all__ = [
    "DIRECTIONS",
    "MAX_EDGES_PER_REPORT",
    "MAX_EVENTS_PER_REPORT",
    "MAX_SPANS_PER_REPORT",
    "PROXY_KINDS",
    "STATUS_CLASSES",
    "Dropped",
    "EdgeReport",
    "EventReport",
    "Report",
    "ReportError",
    "SpanReport",
    "parse_report",
]

MAX_EDGES_PER_REPORT = 500
MAX_EVENTS_PER_REPORT = 200
MAX_SPANS_PER_REPORT = 1000
MAX_NAME = 255  # mesh, node, instance, destination and cluster names
MAX_TEXT = 1024  # string attribute and detail values
MAX_KEYS = 64  # span attributes, event detail keys, response flags
MAX_BOUNDS = 64

PROXY_KINDS = ("virtualNode", "virtualGateway")
DIRECTIONS = ("outbound", "inbound", "gateway")
STATUS_CLASSES = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx")
SPAN_KINDS = ("server", "client")

_FLAG = re.compile(r"[A-Z]{1,8}")
_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")

Scalar = str | int | float | bool | None


class ReportError(ValueError):
    """The body is not a valid report; ``field`` names where (``spans[3].traceId``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class EdgeReport:
    direction: str
    destination: str
    cluster: str | None
    requests: int
    status: tuple[tuple[str, int], ...]
    flags: tuple[tuple[str, int], ...]
    bounds: Bounds
    counts: tuple[int, ...]  # empty when the edge had no latency histogram


@dataclass(frozen=True, slots=True)
class EventReport:
    time: float
    type: str
    detail: Mapping[str, Scalar]


@dataclass(frozen=True, slots=True)
class SpanReport:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start: float
    end: float
    attributes: Mapping[str, Scalar]
    status: str


@dataclass(frozen=True, slots=True)
class Report:
    mesh: str
    kind: str
    name: str
    instance: str
    config_version: int | None
    window: tuple[float, float]
    edges: tuple[EdgeReport, ...]
    events: tuple[EventReport, ...]
    spans: tuple[SpanReport, ...]


@dataclass(frozen=True, slots=True)
class Dropped:
    """Items cut from a report because it exceeded the per-report caps."""

    edges: int = 0
    events: int = 0
    spans: int = 0


# -- field checkers -------------------------------------------------------------------------


def _object(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ReportError(field, "must be a JSON object")
    return value


def _name(value: Any, field: str, *, empty: bool = False, limit: int = MAX_NAME) -> str:
    if not isinstance(value, str):
        raise ReportError(field, "must be a string")
    if not value and not empty:
        raise ReportError(field, "must not be empty")
    if len(value) > limit:
        raise ReportError(field, f"must be at most {limit} characters")
    return value


def _count(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ReportError(field, "must be an integer >= 0")
    if value > 2**53:
        raise ReportError(field, "is too large")
    return value


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ReportError(field, "must be a finite number")
    return float(value)


def _choice(value: Any, field: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ReportError(field, "must be one of " + ", ".join(choices))
    return str(value)


def _list(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ReportError(field, "must be a list")
    return value


def _scalars(value: Any, field: str) -> dict[str, Scalar]:
    items = _object(value, field)
    if len(items) > MAX_KEYS:
        raise ReportError(field, f"must have at most {MAX_KEYS} keys")
    out: dict[str, Scalar] = {}
    for key, item in items.items():
        where = f"{field}.{key}"
        _name(key, where, limit=MAX_NAME)
        if isinstance(item, str):
            out[key] = _name(item, where, empty=True, limit=MAX_TEXT)
        elif item is None or isinstance(item, bool | int):
            out[key] = item
        elif isinstance(item, float):
            out[key] = _number(item, where)
        else:
            raise ReportError(where, "must be a string, number, boolean or null")
    return out


def _counters(
    value: Any, field: str, allowed: tuple[str, ...] | re.Pattern[str]
) -> tuple[tuple[str, int], ...]:
    items = _object({} if value is None else value, field)
    if len(items) > MAX_KEYS:
        raise ReportError(field, f"must have at most {MAX_KEYS} keys")
    out = []
    for key, count in items.items():
        known = key in allowed if isinstance(allowed, tuple) else allowed.fullmatch(key)
        if not known:
            raise ReportError(f"{field}.{key}", "is not a known key")
        counted = _count(count, f"{field}.{key}")
        if counted:
            out.append((key, counted))
    return tuple(sorted(out))


# -- the parts of a report ------------------------------------------------------------------


def _histogram(value: Any, field: str) -> tuple[Bounds, tuple[int, ...]]:
    if value is None:
        return (), ()
    histogram = _object(value, field)
    raw_bounds = _list(histogram.get("bounds"), f"{field}.bounds")
    if not 0 < len(raw_bounds) <= MAX_BOUNDS:
        raise ReportError(f"{field}.bounds", f"must have 1 to {MAX_BOUNDS} entries")
    bounds = tuple(_number(b, f"{field}.bounds[{i}]") for i, b in enumerate(raw_bounds))
    if bounds[0] < 0 or any(b >= a for b, a in itertools.pairwise(bounds)):
        raise ReportError(f"{field}.bounds", "must be >= 0 and strictly increasing")
    raw_counts = _list(histogram.get("counts"), f"{field}.counts")
    if len(raw_counts) != len(bounds) + 1:
        raise ReportError(f"{field}.counts", "needs len(bounds)+1 entries")
    counts = tuple(_count(c, f"{field}.counts[{i}]") for i, c in enumerate(raw_counts))
    return bounds, counts


def _edge(value: Any, field: str) -> EdgeReport:
    edge = _object(value, field)
    cluster = edge.get("cluster")
    bounds, counts = _histogram(edge.get("latencyMs"), f"{field}.latencyMs")
    return EdgeReport(
        direction=_choice(edge.get("direction"), f"{field}.direction", DIRECTIONS),
        destination=_name(edge.get("destination"), f"{field}.destination", empty=True),
        cluster=None if cluster is None else _name(cluster, f"{field}.cluster"),
        requests=_count(edge.get("requests"), f"{field}.requests"),
        status=_counters(edge.get("status"), f"{field}.status", STATUS_CLASSES),
        flags=_counters(edge.get("flags"), f"{field}.flags", _FLAG),
        bounds=bounds,
        counts=counts,
    )


def _event(value: Any, field: str) -> EventReport:
    event = _object(value, field)
    kind = _name(event.get("type"), f"{field}.type")
    if not _EVENT_TYPE.fullmatch(kind):
        raise ReportError(f"{field}.type", "must be a short lower-case word")
    detail = event.get("detail")
    return EventReport(
        time=_number(event.get("time"), f"{field}.time"),
        type=kind,
        detail=_scalars({} if detail is None else detail, f"{field}.detail"),
    )


def _hex_id(value: Any, field: str, pattern: re.Pattern[str], digits: int) -> str:
    text = value.lower() if isinstance(value, str) else None
    if text is None or not pattern.fullmatch(text) or text.strip("0") == "":
        raise ReportError(field, f"must be {digits} hex digits, not all zero")
    return text


def _span(value: Any, field: str) -> SpanReport:
    span = _object(value, field)
    trace_id = _hex_id(span.get("traceId"), f"{field}.traceId", _TRACE_ID, 32)
    span_id = _hex_id(span.get("spanId"), f"{field}.spanId", _SPAN_ID, 16)
    parent = span.get("parentSpanId")
    if parent not in (None, ""):
        parent = _hex_id(parent, f"{field}.parentSpanId", _SPAN_ID, 16)
    start = _number(span.get("start"), f"{field}.start")
    end = _number(span.get("end"), f"{field}.end")
    if end < start:
        raise ReportError(f"{field}.end", "must not be before start")
    attributes = span.get("attributes")
    status = span.get("status")
    return SpanReport(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent or None,
        name=_name(span.get("name"), f"{field}.name", empty=True),
        kind=_choice(span.get("kind"), f"{field}.kind", SPAN_KINDS),
        start=start,
        end=end,
        attributes=_scalars({} if attributes is None else attributes, f"{field}.attributes"),
        status="ok" if status is None else _name(status, f"{field}.status", limit=16),
    )


def _capped(value: Any, field: str, cap: int) -> tuple[list[Any], int]:
    items = _list(value, field)
    return items[:cap], max(len(items) - cap, 0)


def parse_report(body: Any) -> tuple[Report, Dropped]:
    """The report in a decoded JSON body, and what was cut; raises :class:`ReportError`."""
    report = _object(body, "body")
    window = _object(report.get("window"), "window")
    start = _number(window.get("start"), "window.start")
    end = _number(window.get("end"), "window.end")
    if end < start:
        raise ReportError("window.end", "must not be before window.start")
    version = report.get("configVersion")
    edges, dropped_edges = _capped(report.get("edges"), "edges", MAX_EDGES_PER_REPORT)
    events, dropped_events = _capped(report.get("events"), "events", MAX_EVENTS_PER_REPORT)
    spans, dropped_spans = _capped(report.get("spans"), "spans", MAX_SPANS_PER_REPORT)
    parsed = Report(
        mesh=_name(report.get("mesh"), "mesh"),
        kind=_choice(report.get("kind"), "kind", PROXY_KINDS),
        name=_name(report.get("name"), "name"),
        instance=_name(report.get("instance"), "instance"),
        config_version=None if version is None else _count(version, "configVersion"),
        window=(start, end),
        edges=tuple(_edge(e, f"edges[{i}]") for i, e in enumerate(edges)),
        events=tuple(_event(e, f"events[{i}]") for i, e in enumerate(events)),
        spans=tuple(_span(s, f"spans[{i}]") for i, s in enumerate(spans)),
    )
    return parsed, Dropped(dropped_edges, dropped_events, dropped_spans)
