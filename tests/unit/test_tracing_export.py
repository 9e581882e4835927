"""Telemetry leaving the proxy: reports to the control plane, OTLP batches, traffic edges.

The receiving ends are stand-ins written here on the stdlib's asyncio (no HTTP library): they
record each POST and answer what the test tells them to, so a failed delivery and its retry
can be watched. Every report body is also checked with the control plane's own parser.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from mapmesh.proxy.stats import Stats
from mapmesh.proxy.telemetry.edges import OVERFLOW, EdgeSet
from mapmesh.proxy.telemetry.otlp import OtlpExporter, traces_path
from mapmesh.proxy.telemetry.reporter import Reporter
from mapmesh.proxy.telemetry.spans import Identity, SpanBuffer, TracedRequest
from mapmesh.proxy.telemetry.tracing import Trace
from mapmesh.telemetry.report import parse_report

IDENTITY = Identity("demo", "virtualNode", "frontend", "frontend-1")


@dataclass
class Receiver:
    """Answers ``statuses`` in turn (then 204), recording (path, headers, body) of each POST."""

    statuses: list[int] = field(default_factory=list)
    posts: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    url: str = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        status = self.statuses.pop(0) if self.statuses else 204
        if status < 300:
            self.posts.append((path, headers, json.loads(body)))
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()


@asynccontextmanager
async def receiver(*statuses: int) -> AsyncIterator[Receiver]:
    state = Receiver(list(statuses))
    server = await asyncio.start_server(state.serve, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


def traced(status: int = 200) -> TracedRequest:
    trace = Trace(b"a" * 32, b"1" * 16, None, b"2" * 16)
    return (trace, 10.0, 10.01, status, [], "10.0.0.2:8080", "demo/worker-v1:8080",
            "outbound", "worker.demo.local", b"GET", b"/x", b"r-1", 10.001)  # fmt: skip


def add_traffic(edges: EdgeSet, requests: int, status: int = 200) -> None:
    edge = edges.edge("outbound", "outbound", "worker.demo.local", "demo/worker-v1:8080")
    for _ in range(requests):
        edge.status[status // 100] += 1
        edge.latency.observe(0.003)
    if status >= 500:
        edge.flags["URX"] = edge.flags.get("URX", 0) + requests


async def test_a_failed_report_is_carried_by_the_next_one() -> None:
    """The first POST gets 503: the second report carries its edge counts (as one window),
    its events and its spans again, and the control plane's parser takes the body."""
    stats = Stats()
    edges = EdgeSet(stats)
    spans = SpanBuffer(10)
    async with receiver(503) as control_plane:
        reporter = Reporter(
            control_plane.url, IDENTITY, edges, stats.events, spans, stats, lambda: 7
        )
        add_traffic(edges, 3)
        add_traffic(edges, 1, 503)
        stats.events.add("ejection", cluster="demo/worker-v1:8080", endpoint="10.0.0.2:8080")
        spans.add(traced())
        assert await reporter.report() is False
        add_traffic(edges, 2)
        stats.events.add("config", version=7, accepted=True)
        assert await reporter.report() is True
        assert await reporter.report() is True  # nothing new: an empty report
    (path, headers, body), (_, _, empty) = control_plane.posts
    assert (path, headers["content-type"]) == ("/v1/telemetry", "application/json")
    report, _ = parse_report(body)
    assert (report.mesh, report.name, report.instance, report.config_version) == (
        "demo", "frontend", "frontend-1", 7)  # fmt: skip
    (edge,) = report.edges
    assert (edge.direction, edge.destination, edge.cluster) == (
        "outbound", "worker.demo.local", "demo/worker-v1:8080")  # fmt: skip
    assert (edge.requests, dict(edge.status), dict(edge.flags)) == (
        6, {"2xx": 5, "5xx": 1}, {"URX": 1})  # fmt: skip
    assert sum(edge.counts) == 6 and edge.counts[edge.bounds.index(5)] == 6  # 3 ms ≤ 5 ms
    assert [e.type for e in report.events] == ["ejection", "config"]
    assert [s.kind for s in report.spans] == ["server", "client"]
    assert empty["edges"] == [] and empty["events"] == [] and empty["spans"] == []
    assert empty["window"]["start"] == body["window"]["end"]
    assert (stats.get("telemetry_report_success"), stats.get("telemetry_report_failure")) == (2, 1)


async def test_an_unreachable_control_plane_costs_nothing_but_a_count() -> None:
    stats = Stats()
    async with receiver() as gone:
        url = gone.url  # closed when the block ends: nothing listens there after
    reporter = Reporter(
        url, IDENTITY, EdgeSet(stats), stats.events, SpanBuffer(1), stats, lambda: None
    )
    assert await reporter.report(timeout=1.0) is False
    assert stats.get("telemetry_report_failure") == 1


async def test_a_refused_body_is_not_sent_again() -> None:
    stats = Stats()
    edges = EdgeSet(stats)
    async with receiver(400) as control_plane:
        reporter = Reporter(
            control_plane.url, IDENTITY, edges, stats.events, SpanBuffer(5), stats, lambda: 1
        )
        add_traffic(edges, 2)
        assert await reporter.report() is False
        assert await reporter.report() is True
    ((_, _, body),) = control_plane.posts
    assert body["edges"] == []


async def test_otlp_batches_are_resent_after_a_503_and_dropped_after_a_400() -> None:
    stats = Stats()
    spans = SpanBuffer(100)
    async with receiver(503, 200, 400) as collector:
        exporter = OtlpExporter(collector.url + "/otlp", IDENTITY, spans, stats)
        spans.add(traced())
        await exporter.export()  # 503: kept
        assert len(spans) == 1 and collector.posts == []
        await exporter.export()  # 200
        spans.add(traced(503))
        await exporter.export()  # 400: final
        assert len(spans) == 0
    ((path, headers, body),) = collector.posts
    assert (path, headers["content-type"]) == ("/otlp/v1/traces", "application/json")
    span = body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert (span["traceId"], span["kind"]) == ("a" * 32, 2)
    assert (stats.get("otlp_export_success"), stats.get("otlp_export_failure")) == (1, 2)


def test_otlp_paths() -> None:
    assert traces_path("http://c:4318") == "/v1/traces"
    assert traces_path("http://c:4318/") == "/v1/traces"
    assert traces_path("http://c:4318/otlp/v1/traces") == "/otlp/v1/traces"


def test_edges_past_the_limit_count_under_one_overflow_edge() -> None:
    stats = Stats()
    edges = EdgeSet(stats, limit=2)
    first = edges.edge("outbound", "outbound", "a", None)
    edges.edge("outbound", "outbound", "b", None)
    overflow = edges.edge("outbound", "outbound", "c", None)
    assert overflow.destination == OVERFLOW
    assert edges.edge("outbound", "outbound", "d", None) is overflow
    assert edges.edge("outbound", "outbound", "a", None) is first
    assert stats.get("telemetry_edges_overflow") == 2
