"""The sidecar's request path in Python, without sockets: µs per request vs a minimal forwarder.

Question: how much Python does one proxied request cost, and how far is that from the
least a forwarder can do with the same tools? The socket benchmark (``bench.proxy``) gives
the real ratio to HAProxy but needs quiet cores; this one is deterministic enough to run on
a busy machine and to compare before/after a change to the request path.

Setup: a real ``mapmesh server`` provides the snapshot the socket benchmark uses (route
``/`` of ``worker.bench.local`` to one endpoint). In this process the sidecar's own
:class:`DownstreamConnection` and :class:`UpstreamConnection` objects are wired to fake
transports: each round feeds wrk's request into the downstream protocol, takes the bytes
the proxy wrote upstream, feeds nginx's response into the upstream protocol and checks what
reached the client. The anchor does the same with a minimal forwarder — httptools parsers
on both sides, one pooled upstream connection, the request line rebuilt and the header
bytes forwarded — the design the DESIGN notes measured at 0.71x HAProxy.

Reported: µs per request for each (best of ``--rounds`` runs of ``--requests``), and the
ratio anchor / mapmesh (1.0 = as cheap as the minimal forwarder).

``--signals`` measures what the data plane's optional signals cost instead, each variant
interleaved in every round so they share the machine's state: tracing off (sampling 0, as the
plain run), tracing at 100% (every request records its server and client span into a buffer
that is emptied every 500 requests, as the reporter empties it), the access log on (Envoy's
default line, written to a file), and both. It also reports the off-path cost of exporting a
traced request (its spans made and encoded as the control plane's JSON), which the reporter
pays every interval, not the request.

Run: ``.venv/bin/python -m bench.proxy_path`` (≈20 s); ``--signals`` (≈40 s).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httptools

from bench import Processes, median, start_mapmesh, temp_dir, write_result
from bench.proxy import BODY, HOST, MESH, seed
from mapmesh.model import snapshot
from mapmesh.proxy import upstream as upstream_module
from mapmesh.proxy.accesslog import AccessLogger
from mapmesh.proxy.config import ClusterSet, ConfigSource, build_config
from mapmesh.proxy.deadlines import Deadlines
from mapmesh.proxy.downstream import DownstreamConnection
from mapmesh.proxy.router import Router
from mapmesh.proxy.stats import Stats
from mapmesh.proxy.telemetry.edges import EdgeSet
from mapmesh.proxy.telemetry.otlp import otlp_body
from mapmesh.proxy.telemetry.recorder import ListenerTelemetry
from mapmesh.proxy.telemetry.runtime import REPORT_BUFFER
from mapmesh.proxy.telemetry.spans import (
    Identity,
    SpanBuffer,
    all_spans,
    span_document,
    spans_of,
)
from mapmesh.proxy.telemetry.tracing import Sampler
from mapmesh.proxy.upstream import UpstreamConnection

REQUEST = f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 24 Nov 2026 07:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n%s"
    % (len(BODY), BODY)
)


class FakeTransport:
    """Collects what a protocol writes; enough of asyncio.Transport for the proxy."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def take(self) -> bytes:
        data = b"".join(self.written)
        self.written.clear()
        return data

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def fetch_snapshot(api_url: str) -> tuple[int, dict[str, Any]]:
    url = f"{api_url}/v1/stream?mesh={MESH}&virtualNode=frontend"
    with urllib.request.urlopen(url, timeout=10) as response:
        for line in response:
            message = json.loads(line)
            if message.get("type") == "snapshot":
                return int(message["version"]), message["snapshot"]
    raise RuntimeError("the stream ended without a snapshot")


async def mapmesh_round(
    data: dict[str, Any],
    version: int,
    requests: int,
    *,
    sampling: float = 0.0,
    access_log: Path | None = None,
    spans: SpanBuffer | None = None,
) -> float:
    """Seconds of CPU per request through the sidecar's own protocol objects; ``sampling``
    (into ``spans``) and ``access_log`` (Envoy's default line) turn those signals on."""
    stats = Stats()
    clock = time.monotonic
    rng = random.Random(1)
    clusters = ClusterSet(stats, clock, rng)
    config = build_config(snapshot.decode(data), version, clusters)
    deadlines = Deadlines(clock)
    router = Router("outbound", 15001, stats, clock, rng, deadlines)
    sinks = (spans,) if spans is not None else ()
    edges = EdgeSet(stats)
    telemetry = ListenerTelemetry(
        "outbound", "outbound", edges, stats, sampler=Sampler(sampling, None), sinks=sinks
    )
    logger = AccessLogger(None)
    if access_log is not None:
        logger.commit(logger.prepare(snapshot.AccessLog(path=str(access_log), format="default")))
    downstream = DownstreamConnection(
        router, ConfigSource(config), stats, logger, "outbound", lambda _: None,
        telemetry=telemetry,
    )  # fmt: skip
    client = FakeTransport()
    downstream.connection_made(client)  # type: ignore[arg-type]
    (runtime,) = config.clusters.values()
    pool = runtime.pool
    key = next(iter(runtime.endpoints))
    upstream_transport = FakeTransport()
    # One pooled keep-alive connection, parked the way Pool._open parks a new one.
    upstream = UpstreamConnection(pool._exchange_ended, pool._connection_closed)
    upstream.connection_made(upstream_transport)  # type: ignore[arg-type]
    runtime.breaker.on_connection_opening()
    pool._endpoint_of[upstream] = key
    pool._idle[key] = [upstream]

    bursts = upstream_module._BURSTS

    def one() -> None:
        bursts.last_send = -1.0  # requests that arrive apart, as at a moderate rate: no burst
        downstream.data_received(REQUEST)
        upstream_transport.written.clear()
        upstream.data_received(RESPONSE)

    for _ in range(200):  # warm up: caches, pooled connection, lazily made cells
        one()
    client.written.clear()
    bursts.last_send = -1.0
    downstream.data_received(REQUEST)
    writes_upstream = len(upstream_transport.written)
    upstream_transport.written.clear()
    upstream.data_received(RESPONSE)
    # One write each way per request (DESIGN: one write per response) — a regression here
    # costs a system call per request that this benchmark would not otherwise show.
    assert (writes_upstream, len(client.written)) == (1, 1), (writes_upstream, client.written)
    reply = client.take()
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(BODY), reply[:200]
    gc.collect()
    kept: list[Any] = []
    start = time.process_time()
    for number in range(1, requests + 1):
        one()
        client.written.clear()
        if spans is not None and number % REPORT_BUFFER == 0:
            kept = spans.take()  # as the reporter empties the buffer every interval
    if spans is not None:  # the last batch, for export_costs
        for request in kept:
            spans.add(request)
    elapsed = time.process_time() - start
    deadlines.close()
    clusters.close()
    logger.close()
    return elapsed / requests


class _MinimalUpstream:
    """Upstream side of the minimal forwarder: httptools response parser."""

    def __init__(self, transport: FakeTransport) -> None:
        self.transport = transport
        self.parser = httptools.HttpResponseParser(self)
        self.client: _MinimalDownstream | None = None
        self.chunks: list[bytes] = []
        self.head = b""

    def on_headers_complete(self) -> None:
        pass

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        assert client is not None
        client.respond(self)

    def data_received(self, data: bytes) -> None:
        self.raw = data
        self.parser.feed_data(data)


class _MinimalDownstream:
    """Downstream side: parse with httptools, forward header bytes, one write each way."""

    def __init__(self, transport: FakeTransport, upstream: _MinimalUpstream) -> None:
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.upstream = upstream
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        head = b"".join(
            [method, b" ", self.url, b" HTTP/1.1\r\n"]
            + [b"%s: %s\r\n" % field for field in self.headers]
            + [b"\r\n"]
        )
        self.headers = []
        self.upstream.client = self
        self.upstream.transport.write(head)

    def respond(self, upstream: _MinimalUpstream) -> None:
        self.transport.write(upstream.raw)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)


def minimal_round(requests: int) -> float:
    client, upstream_transport = FakeTransport(), FakeTransport()
    upstream = _MinimalUpstream(upstream_transport)
    downstream = _MinimalDownstream(client, upstream)

    def one() -> None:
        downstream.data_received(REQUEST)
        upstream_transport.written.clear()
        upstream.data_received(RESPONSE)

    for _ in range(200):
        one()
    assert client.take().endswith(BODY)
    gc.collect()
    start = time.process_time()
    for _ in range(requests):
        one()
        client.written.clear()
    return (time.process_time() - start) / requests


def export_costs(spans: SpanBuffer) -> tuple[float, float]:
    """Seconds of CPU per traced request to make its spans and encode them as the control
    plane's report does, and as an OTLP/HTTP JSON batch does (both off the request path: the
    reporter and the exporter pay them every interval)."""
    identity = Identity(MESH, "virtualNode", "frontend", "frontend-bench")
    requests = spans.take()
    count = max(len(requests), 1)
    start = time.process_time()
    documents = [
        span_document(span) for request in requests for span in spans_of(request, identity)
    ]
    json.dumps({"spans": documents}, separators=(",", ":"))
    report = (time.process_time() - start) / count
    start = time.process_time()
    otlp_body(all_spans(requests, identity), identity)
    return report, (time.process_time() - start) / count


SIGNALS = ("off", "tracing 100%", "access log", "tracing + log")


def signals(data: dict[str, Any], version: int, args: argparse.Namespace, log: Path) -> int:
    """The ``--signals`` run: the variants side by side, as ratios to tracing off."""
    results: dict[str, list[float]] = {name: [] for name in SIGNALS}
    export_us: list[float] = []
    otlp_us: list[float] = []
    for _ in range(args.rounds):
        for name in SIGNALS:
            traced = "tracing" in name
            buffer = SpanBuffer(REPORT_BUFFER) if traced else None
            seconds = asyncio.run(
                mapmesh_round(
                    data, version, args.requests, sampling=1.0 if traced else 0.0,
                    access_log=log if "log" in name else None, spans=buffer,
                )
            )  # fmt: skip
            results[name].append(seconds * 1e6)
            log.unlink(missing_ok=True)
            if buffer is not None and name == "tracing 100%":
                report, otlp = export_costs(buffer)
                export_us.append(report * 1e6)
                otlp_us.append(otlp * 1e6)
    base = min(results["off"])
    print(f"{'signals':<14} {'µs/request':>10} {'median':>8} {'÷ off':>7}")
    for name in SIGNALS:
        best = min(results[name])
        print(f"{name:<14} {best:>10.2f} {median(results[name]):>8.2f} {best / base:>7.3f}")
    print(
        f"export of a traced request, off the request path: {min(export_us):.2f} µs as a "
        f"control-plane report, {min(otlp_us):.2f} µs as OTLP JSON"
    )
    write_result(
        "proxy-path-signals",
        {
            "requests_per_round": args.requests,
            "us_per_request": results,
            "ratio_to_off": {name: min(results[name]) / base for name in SIGNALS},
            "export_us_per_traced_request": export_us,
            "otlp_us_per_traced_request": otlp_us,
        },
    )
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.proxy_path", description=__doc__)
    p.add_argument("--requests", type=int, default=50_000, help="requests per round")
    p.add_argument("--rounds", type=int, default=5, help="rounds of each (best is kept)")
    p.add_argument(
        "--signals", action="store_true",
        help="measure tracing (100%% vs off) and the access log (on vs off) instead",
    )  # fmt: skip
    p.add_argument("--keep-temp", action="store_true")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with temp_dir("proxy-path", args.keep_temp) as workdir, Processes() as processes:
        _, port, _ = start_mapmesh(processes, workdir / "data", cpu=None)
        api = f"http://127.0.0.1:{port}"
        seed(api, 9)  # the endpoint's port is never dialled: transports are fake
        version, data = fetch_snapshot(api)
    if args.signals:
        with temp_dir("proxy-path-log", args.keep_temp) as logs:
            return signals(data, version, args, logs / "access.log")
    mapmesh_us: list[float] = []
    minimal_us: list[float] = []
    for _ in range(args.rounds):
        mapmesh_us.append(asyncio.run(mapmesh_round(data, version, args.requests)) * 1e6)
        minimal_us.append(minimal_round(args.requests) * 1e6)
    best_mapmesh, best_minimal = min(mapmesh_us), min(minimal_us)
    ratio = best_minimal / best_mapmesh
    print(f"mapmesh request path: {best_mapmesh:.2f} µs/request (median {median(mapmesh_us):.2f})")
    print(f"minimal forwarder:    {best_minimal:.2f} µs/request (median {median(minimal_us):.2f})")
    print(f"ratio minimal / mapmesh: {ratio:.3f}")
    write_result(
        "proxy-path",
        {
            "requests_per_round": args.requests,
            "mapmesh_us": mapmesh_us,
            "minimal_us": minimal_us,
            "ratio_minimal_over_mapmesh": ratio,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
