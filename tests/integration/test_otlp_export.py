"""Spans to an OpenTelemetry collector: OTLP/HTTP with the JSON encoding.

Story: a stand-in collector on loopback (the stdlib's HTTP server) records what it is sent on
``/v1/traces``. A sidecar started with ``--otlp-endpoint`` pointing at it carries a few calls;
the collector receives ``ExportTraceServiceRequest`` JSON whose spans are the calls' server
and client spans, linked, with the ids, kinds, times and attributes OTLP's JSON form uses.
The collector first refuses a batch with 503: the proxy sends it again.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.sidecar_support import wait_for, worker_mesh
from tests.support import ServerProcess


@dataclass
class Collector:
    port: int = 0
    posts: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    refuse: int = 0  # answer 503 to this many requests first

    @property
    def spans(self) -> list[dict[str, Any]]:
        return [
            span
            for _, _, body in self.posts
            for resource in body["resourceSpans"]
            for scope in resource["scopeSpans"]
            for span in scope["spans"]
        ]


@contextmanager
def collector() -> Iterator[Collector]:
    """An OTLP/HTTP stand-in: records (path, content type, parsed JSON) of each POST."""
    state = Collector()
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            with lock:
                refused = state.refuse > 0
                state.refuse -= refused
                if not refused:
                    state.posts.append(
                        (self.path, self.headers.get("content-type", ""), json.loads(body))
                    )
            self.send_response(503 if refused else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = int(server.server_address[1])
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def attributes(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["key"]: next(iter(item["value"].values())) for item in items}


def test_spans_reach_an_otlp_collector_as_json(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path
) -> None:
    with (
        collector() as otlp,
        worker_mesh(server.url, sd, unique, tmp_path, weights=(100, 0), start_proxy=False) as mesh,
    ):
        otlp.refuse = 1
        mesh.proxy.extra = (
            "--otlp-endpoint", f"http://127.0.0.1:{otlp.port}", "--trace-sampling", "1"
        )  # fmt: skip
        mesh.proxy.launch()
        with mesh.client() as client:
            wait_for(lambda: client.get(f"http://{mesh.service}/").status_code == 200)
            sent = [client.get(f"http://{mesh.service}/otlp/{n}").json() for n in range(3)]
        wanted = {answer["traceparent"].split("-")[1] for answer in sent}
        wait_for(lambda: wanted <= {span["traceId"] for span in otlp.spans}, 15)

    path, content_type, body = otlp.posts[0]
    assert (path, content_type) == ("/v1/traces", "application/json")
    (resource,) = body["resourceSpans"]
    labels = attributes(resource["resource"]["attributes"])
    assert (labels["service.name"], labels["service.namespace"]) == ("frontend", unique)
    assert labels["mapmesh.kind"] == "virtualNode"
    assert resource["scopeSpans"][0]["scope"]["name"] == "mapmesh.proxy"

    for answer in sent:
        _, trace_id, parent, _ = answer["traceparent"].split("-")
        spans = [span for span in otlp.spans if span["traceId"] == trace_id]
        (server_span,) = [span for span in spans if span["kind"] == 2]
        (client_span,) = [span for span in spans if span["kind"] == 3]
        assert "parentSpanId" not in server_span
        assert client_span["parentSpanId"] == server_span["spanId"]
        assert client_span["spanId"] == parent  # what the upstream saw as its parent
        for span in spans:
            assert re.fullmatch(r"[0-9a-f]{32}", span["traceId"])
            assert re.fullmatch(r"[0-9a-f]{16}", span["spanId"])
            start, end = span["startTimeUnixNano"], span["endTimeUnixNano"]
            assert isinstance(start, str) and start.isdigit() and int(end) >= int(start)
            assert span["status"] == {}
        fields = attributes(server_span["attributes"])
        assert fields["http.status_code"] == "200"  # intValue, a decimal string
        assert fields["http.method"] == "GET" and fields["http.target"].startswith("/otlp/")
        assert fields["mapmesh.request_id"] == answer["x-request-id"]
        assert attributes(client_span["attributes"])["mapmesh.cluster"] == (
            f"{unique}/worker-v1:8080"
        )
