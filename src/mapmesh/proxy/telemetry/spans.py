"""Finished spans: what a sampled request leaves behind, buffered for the exporters.

The request path does the least it can: when a sampled request ends it appends one
:data:`TracedRequest` tuple (its :class:`~.tracing.Trace`, times, outcome) to each exporter's
:class:`SpanBuffer`. Turning that into spans — a server span, and a client span per attempt —
happens when an exporter sends, off the request path (:func:`spans_of`). A buffer holds at
most ``limit`` requests; past that, requests are dropped whole (a trace never loses half a
hop) and counted.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from mapmesh.proxy.telemetry.tracing import Trace

__all__ = [
    "CLIENT",
    "SERVER",
    "Identity",
    "Span",
    "SpanBuffer",
    "TracedRequest",
    "all_spans",
    "span_document",
    "spans_of",
]

SERVER: Final = "server"
CLIENT: Final = "client"

# Wall-clock time of monotonic 0: the request path reads one clock, exporters convert.
WALL_OFFSET: Final = time.time() - time.monotonic()
# The control plane refuses a report with longer names or values (docs/telemetry.md): what
# a client sent (path, request id, Host) is cut to these when spans are made.
MAX_NAME: Final = 255
MAX_TEXT: Final = 1024

TracedRequest = tuple[
    Trace,
    float,  # start (monotonic seconds)
    float,  # end
    int,  # status sent downstream (0: the connection was cut)
    list[str],  # response flags
    str | None,  # upstream endpoint of the last attempt
    str | None,  # cluster
    str,  # listener
    str,  # destination (virtual service, or the node itself for inbound)
    bytes,  # method
    bytes,  # path
    bytes,  # request id
    float | None,  # start of the attempt that answered (None: no upstream response)
]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the spans and reports come from."""

    mesh: str
    kind: str  # "virtualNode" | "virtualGateway"
    name: str
    instance: str


class Span(NamedTuple):
    """One span, ready for an exporter. Ids are lower-case hex; times unix seconds."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str  # SERVER | CLIENT
    start: float
    end: float
    attributes: dict[str, str | int]
    error: bool


class SpanBuffer:
    """Traced requests waiting for one exporter; at most ``limit``, the rest dropped."""

    __slots__ = ("_items", "dropped", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: list[TracedRequest] = []
        self.dropped = 0

    def add(self, request: TracedRequest) -> None:
        items = self._items
        if len(items) < self.limit:
            items.append(request)
        else:
            self.dropped += 1

    def take(self, count: int | None = None) -> list[TracedRequest]:
        """The oldest ``count`` requests (all by default), removed from the buffer."""
        items = self._items
        if count is None or count >= len(items):
            self._items = []
            return items
        taken, self._items = items[:count], items[count:]
        return taken

    def put_back(self, requests: list[TracedRequest]) -> None:
        """Requests an exporter failed to send go back ahead of newer ones, within the limit."""
        merged = requests + self._items
        if len(merged) > self.limit:
            self.dropped += len(merged) - self.limit
            merged = merged[: self.limit]
        self._items = merged

    def __len__(self) -> int:
        return len(self._items)


def _text(value: bytes) -> str:
    return value.decode("latin-1")


def spans_of(request: TracedRequest, identity: Identity) -> list[Span]:
    """The server span of ``request`` and the client span of each of its attempts."""
    (trace, start, end, status, flags, upstream, cluster, listener, destination,
     method, path, request_id, answered_at) = request  # fmt: skip
    trace_id = _text(trace.trace_id)
    server_id = _text(trace.span_id)
    common: dict[str, str | int] = {  # what the client sent is cut to the report's limits
        "http.method": _text(method[:MAX_NAME]),
        "http.target": _text(path[:MAX_TEXT]),
        "mapmesh.node": identity.name,
        "mapmesh.kind": identity.kind,
        "mapmesh.listener": listener,
        "mapmesh.request_id": _text(request_id[:MAX_TEXT]),
    }
    flag_text = ",".join(flags) or "-"
    server_attributes = {**common, "http.status_code": status, "mapmesh.response_flags": flag_text}
    if upstream is not None:
        server_attributes["mapmesh.upstream"] = upstream
    if cluster is not None:
        server_attributes["mapmesh.cluster"] = cluster
    attempts = [(*attempt, False) for attempt in trace.attempts or ()]
    if answered_at is not None and upstream is not None:
        attempts.append((trace.client_id, answered_at, end, upstream, status, flag_text, True))
    spans = [
        Span(
            trace_id, server_id,
            _text(trace.parent_id) if trace.parent_id is not None else None,
            f"{listener} {destination}"[:MAX_NAME], SERVER,
            WALL_OFFSET + start, WALL_OFFSET + end, server_attributes,
            status == 0 or status >= 500,
        )
    ]  # fmt: skip
    for number, (span_id, began, ended, endpoint, code, flag, final) in enumerate(attempts, 1):
        attributes = {
            **common,
            "http.status_code": code,
            "mapmesh.upstream": endpoint,
            "mapmesh.attempt": number,
            "mapmesh.response_flags": (flag or "-") if not final else flag_text,
        }
        if cluster is not None:
            attributes["mapmesh.cluster"] = cluster
        spans.append(
            Span(
                trace_id, _text(span_id), server_id, (cluster or destination)[:MAX_NAME], CLIENT,
                WALL_OFFSET + began, WALL_OFFSET + ended, attributes,
                code == 0 or code >= 500,
            )
        )  # fmt: skip
    return spans


def span_document(span: Span) -> dict[str, Any]:
    """A span as the control plane's ``/v1/telemetry`` takes it (docs/telemetry.md)."""
    document: dict[str, Any] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "name": span.name,
        "kind": span.kind,
        "start": round(span.start, 6),
        "end": round(max(span.end, span.start), 6),
        "attributes": span.attributes,
        "status": "error" if span.error else "ok",
    }
    if span.parent_id is not None:
        document["parentSpanId"] = span.parent_id
    return document


def all_spans(requests: Iterable[TracedRequest], identity: Identity) -> list[Span]:
    """The spans of every request, in order."""
    return [span for request in requests for span in spans_of(request, identity)]
