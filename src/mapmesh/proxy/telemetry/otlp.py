"""Spans to any OpenTelemetry collector: OTLP/HTTP with the JSON encoding, stdlib only.

``--otlp-endpoint http://collector:4318`` makes the proxy ``POST {endpoint}/v1/traces`` with
``Content-Type: application/json`` every second while spans are waiting, in batches of at most
:data:`BATCH` traced requests. The body is OTLP's ``ExportTraceServiceRequest`` in its JSON
form: one ``resourceSpans`` entry (resource attributes ``service.name`` = the node or gateway,
``service.namespace`` = the mesh, ``service.instance.id``, ``mapmesh.kind``), one
``scopeSpans`` (scope ``mapmesh.proxy``), spans with lower-case hex ``traceId`` / ``spanId`` /
``parentSpanId``, ``kind`` 2 (server) or 3 (client), ``startTimeUnixNano`` /
``endTimeUnixNano`` as decimal strings, attributes as ``{"key", "value": {"stringValue" |
"intValue" (a decimal string, as proto3's JSON mapping writes 64-bit integers)}}`` and
``status.code`` 2 for errors (5xx, a cut connection), else 0 (unset).

Only ``http://`` endpoints and the JSON encoding are offered: the protobuf encoding would need
a protobuf dependency, and the proxy has none. A failed batch (refused, timeout, 429, 5xx) is
logged at debug level and put back for the next second, within the buffer's limit; the
buffer drops (and counts, ``telemetry_spans_dropped{sink="otlp"}``) what does not fit. Any
other 4xx is final (OTLP's rule): that batch is dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import urlsplit

from mapmesh import __version__
from mapmesh.proxy.control_http import request
from mapmesh.proxy.stats import Stats
from mapmesh.proxy.telemetry.spans import CLIENT, Identity, Span, SpanBuffer, all_spans

__all__ = ["BATCH", "OtlpExporter", "otlp_body", "traces_path"]

log = logging.getLogger("mapmesh.proxy.telemetry")

BATCH = 512
EXPORT_INTERVAL = 1.0
_SERVER_KIND = 2
_CLIENT_KIND = 3
_STATUS_ERROR = 2


def traces_path(endpoint: str) -> str:
    """The request path for ``endpoint``: its own path (if any) + ``/v1/traces``."""
    parts = urlsplit(endpoint)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"OTLP endpoint: must be an http:// URL, got {endpoint!r}")
    path = parts.path.rstrip("/")
    return path if path.endswith("/v1/traces") else f"{path}/v1/traces"


# The body is written as text: OTLP's JSON nests several small objects per attribute, and
# json.dumps of those objects costs more than the request the span describes. Values that
# come from outside (paths, hosts) go through the json module's string escaper.
_escape = json.encoder.encode_basestring_ascii


def _attribute(key: str, value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        kind, text = "boolValue", "true" if value else "false"
    elif isinstance(value, int):
        kind, text = "intValue", f'"{value}"'  # proto3 JSON writes 64-bit integers as strings
    elif isinstance(value, float):
        kind, text = "doubleValue", json.dumps(value)
    else:
        kind, text = "stringValue", _escape(value)
    return f'{{"key":{_escape(key)},"value":{{"{kind}":{text}}}}}'


def _attributes(items: dict[str, Any]) -> str:
    return "[" + ",".join([_attribute(key, value) for key, value in items.items()]) + "]"


def _span(span: Span) -> str:
    parent = f'"parentSpanId":"{span.parent_id}",' if span.parent_id is not None else ""
    status = f'{{"code":{_STATUS_ERROR}}}' if span.error else "{}"
    kind = _CLIENT_KIND if span.kind == CLIENT else _SERVER_KIND
    return (
        f'{{"traceId":"{span.trace_id}","spanId":"{span.span_id}",{parent}'
        f'"name":{_escape(span.name)},"kind":{kind},'
        f'"startTimeUnixNano":"{round(span.start * 1e9)}",'
        f'"endTimeUnixNano":"{round(max(span.end, span.start) * 1e9)}",'
        f'"attributes":{_attributes(span.attributes)},"status":{status}}}'
    )


def otlp_body(spans: list[Span], identity: Identity) -> bytes:
    """An ``ExportTraceServiceRequest`` holding ``spans``, in OTLP's JSON encoding."""
    resource = _attributes(
        {
            "service.name": identity.name,
            "service.namespace": identity.mesh,
            "service.instance.id": identity.instance,
            "mapmesh.kind": identity.kind,
        }
    )
    scope = f'{{"name":"mapmesh.proxy","version":{_escape(__version__)}}}'
    return (
        f'{{"resourceSpans":[{{"resource":{{"attributes":{resource}}},'
        f'"scopeSpans":[{{"scope":{scope},"spans":[{",".join([_span(s) for s in spans])}]}}]}}]}}'
    ).encode("ascii")


class OtlpExporter:
    """Sends the spans buffered in ``spans`` to ``endpoint`` (see the module docstring)."""

    def __init__(
        self,
        endpoint: str,
        identity: Identity,
        spans: SpanBuffer,
        stats: Stats,
        *,
        interval: float = EXPORT_INTERVAL,
    ) -> None:
        self.endpoint = endpoint
        self.path = traces_path(endpoint)
        self.identity = identity
        self.interval = interval
        self._spans = spans
        self._success = stats.cell("otlp_export_success")
        self._failure = stats.cell("otlp_export_failure")
        self._dropped = stats.cell("telemetry_spans_dropped", (("sink", "otlp"),))

    async def run(self) -> None:
        """Export every interval, forever (cancelled at shutdown)."""
        while True:
            await asyncio.sleep(self.interval)
            await self.export()

    async def export(self, timeout: float = 5.0, batches: int = 8) -> None:
        """Send what is buffered, up to ``batches`` batches; stop at the first failure."""
        for _ in range(batches):
            requests = self._spans.take(BATCH)
            if not requests:
                break
            data = otlp_body(all_spans(requests, self.identity), self.identity)
            retry = True
            try:
                status, answer = await request(
                    self.endpoint, "POST", self.path, data,
                    {"Content-Type": "application/json"}, timeout=timeout,
                )  # fmt: skip
                problem = None if 200 <= status < 300 else f"HTTP {status}: {answer[:200]!r}"
                retry = not 400 <= status < 500 or status == 429  # OTLP: other 4xx are final
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
                problem = repr(exc)
            if problem is not None:
                self._failure.value += 1
                log.debug("OTLP export failed", extra={"endpoint": self.endpoint, "error": problem})
                if retry:
                    self._spans.put_back(requests)
                    break
                continue  # refused for good: dropped
            self._success.value += 1
        self._dropped.value = self._spans.dropped
