"""Sampled spans, grouped into traces by trace id, in a bounded store.

Spans of one request arrive from every proxy it crossed, each in its own report, in any order;
the store files them under their trace id and assembles the tree only when read (a span whose
parent is not (yet) in the trace counts as a root). Bounds: at most ``max_traces`` traces —
the trace seen first is evicted first (insertion order of an ``OrderedDict``, so O(1)) — and
at most ``max_spans`` spans per trace, the rest counted as dropped. Spans repeating a span id
already in the trace are dropped as duplicates (a report sent twice).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mapmesh.telemetry.report import SpanReport

__all__ = ["MAX_SPANS_PER_TRACE", "MAX_TRACES", "StoredSpan", "Trace", "TraceStore"]

MAX_TRACES = 2000
MAX_SPANS_PER_TRACE = 200


@dataclass(frozen=True, slots=True)
class StoredSpan:
    """A span as reported, with who reported it."""

    span: SpanReport
    mesh: str
    kind: str
    node: str
    instance: str

    def wire(self) -> dict[str, Any]:
        s = self.span
        return {
            "traceId": s.trace_id,
            "spanId": s.span_id,
            "parentSpanId": s.parent_span_id,
            "name": s.name,
            "kind": s.kind,
            "start": s.start,
            "end": s.end,
            "durationMs": round((s.end - s.start) * 1000, 3),
            "attributes": dict(s.attributes),
            "status": s.status,
            "mesh": self.mesh,
            "node": self.node,
            "nodeKind": self.kind,
            "instance": self.instance,
        }

    @property
    def failed(self) -> bool:
        code = self.span.attributes.get("http.status_code")
        return self.span.status == "error" or (isinstance(code, int) and code >= 500)


@dataclass(slots=True)
class Trace:
    trace_id: str
    spans: list[StoredSpan] = field(default_factory=list)
    span_ids: set[str] = field(default_factory=set)
    meshes: set[str] = field(default_factory=set)

    @property
    def start(self) -> float:
        return min(s.span.start for s in self.spans)

    @property
    def end(self) -> float:
        return max(s.span.end for s in self.spans)

    def roots(self) -> list[StoredSpan]:
        """Spans without a parent in this trace, earliest first."""
        return sorted(
            (s for s in self.spans if s.span.parent_span_id not in self.span_ids),
            key=lambda s: (s.span.start, s.span.span_id),
        )

    def summary(self) -> dict[str, Any]:
        roots = self.roots()
        start = self.start
        return {
            "traceId": self.trace_id,
            "root": roots[0].span.name if roots else "",
            "start": start,
            "durationMs": round((self.end - start) * 1000, 3),
            "spans": len(self.spans),
            "error": any(s.failed for s in self.spans),
            "services": sorted({s.node for s in self.spans}),
            "meshes": sorted(self.meshes),
        }

    def wire(self) -> dict[str, Any]:
        """The trace with its spans parent-before-child (depth first, siblings by start)."""
        children: dict[str | None, list[StoredSpan]] = {}
        for stored in self.spans:
            parent = stored.span.parent_span_id
            key = parent if parent in self.span_ids else None
            children.setdefault(key, []).append(stored)
        ordered: list[dict[str, Any]] = []
        stack: list[tuple[StoredSpan, int]] = [
            (s, 0) for s in sorted(children.get(None, []), key=_order, reverse=True)
        ]
        while stack:
            stored, depth = stack.pop()
            ordered.append({**stored.wire(), "depth": depth})
            kids = sorted(children.get(stored.span.span_id, []), key=_order, reverse=True)
            stack.extend((kid, depth + 1) for kid in kids)
        return {**self.summary(), "spans": ordered}


def _order(stored: StoredSpan) -> tuple[float, str]:
    return (stored.span.start, stored.span.span_id)


class TraceStore:
    def __init__(self, max_traces: int = MAX_TRACES, max_spans: int = MAX_SPANS_PER_TRACE) -> None:
        self._traces: OrderedDict[str, Trace] = OrderedDict()
        self.max_traces = max_traces
        self.max_spans = max_spans
        self.evicted = 0
        self.dropped_spans = 0
        self.duplicate_spans = 0

    def add(self, stored: StoredSpan) -> None:
        trace_id = stored.span.trace_id
        trace = self._traces.get(trace_id)
        if trace is None:
            while len(self._traces) >= self.max_traces:
                self._traces.popitem(last=False)
                self.evicted += 1
            trace = self._traces[trace_id] = Trace(trace_id)
        if stored.span.span_id in trace.span_ids:
            self.duplicate_spans += 1
            return
        if len(trace.spans) >= self.max_spans:
            self.dropped_spans += 1
            return
        trace.spans.append(stored)
        trace.span_ids.add(stored.span.span_id)
        trace.meshes.add(stored.mesh)

    def get(self, trace_id: str) -> Trace | None:
        return self._traces.get(trace_id.lower())

    def __iter__(self) -> Iterator[Trace]:
        return iter(self._traces.values())

    def __len__(self) -> int:
        return len(self._traces)

    def recent(self, mesh: str | None, limit: int) -> list[Trace]:
        """Traces touching ``mesh`` (any when None), newest start first."""
        found = [t for t in self._traces.values() if mesh is None or mesh in t.meshes]
        found.sort(key=lambda t: t.start, reverse=True)
        return found[:limit]
