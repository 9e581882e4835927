"""The data plane's signals against real processes: stats, access logs, traces, reports.

Story: a frontend's sidecar calls ``worker.<ns>`` (real HTTP servers registered in Cloud Map);
the test sends a known set of requests and reads what the proxy says about them — its
``/stats``, the access log App Mesh's logging settings ask for, and what it reported to the
control plane (``/v1/traces``, ``/v1/topology``, ``/v1/events``). Two sidecars in a row show
a trace's parent/child links across hops.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.integration.sidecar_support import (
    HTTP_8080,
    Mesh,
    Sidecar,
    Upstream,
    route,
    wait_for,
    worker_mesh,
)
from tests.support import ServerProcess

FAST_REPORTS = ("--report-interval", "0.3")
TRACE_ALL = ("--trace-sampling", "1")  # the default samples a few percent
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]
_LINE = re.compile(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"')


def scrape(sidecar: Sidecar) -> Series:
    """``/stats`` as {(name, labels): value}."""
    series: Series = {}
    for line in httpx.get(sidecar.admin_url("/stats")).text.splitlines():
        match = _LINE.match(line)
        if match is not None:
            name, labels, value = match.groups()
            series[(name, frozenset(_LABEL.findall(labels or "")))] = float(value)
    return series


def value(series: Series, name: str, **labels: str) -> float:
    return series.get((name, frozenset(labels.items())), 0.0)


def logging_spec(mesh: Mesh, logging: dict[str, Any]) -> dict[str, Any]:
    return {
        "backends": [{"virtualService": {"virtualServiceName": mesh.service}}],
        "logging": {"accessLog": {"file": logging}},
    }


def log_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_stats_count_the_requests_sent(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path
) -> None:
    """20 calls to worker-v1 and one to an undeclared host: the listener's histogram and
    status classes, the cluster's histogram and the NR flag count exactly those."""
    with worker_mesh(server.url, sd, unique, tmp_path, weights=(100, 0)) as mesh:
        cluster = f"{unique}/worker-v1:8080"
        with mesh.client() as client:
            wait_for(lambda: client.get(f"http://{mesh.service}/").status_code == 200)
            before = scrape(mesh.proxy)
            for number in range(20):
                assert client.get(f"http://{mesh.service}/count/{number}").status_code == 200
            assert client.get("http://not-a-backend.example/").status_code == 404
        after = scrape(mesh.proxy)
        text = httpx.get(mesh.proxy.admin_url("/stats")).text

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("mapmesh_downstream_rq_time_count", listener="outbound") == 21
    assert delta("mapmesh_downstream_rq_xx", listener="outbound", code_class="2xx") == 20
    assert delta("mapmesh_downstream_rq_xx", listener="outbound", code_class="4xx") == 1
    assert delta("mapmesh_downstream_rq_flags", listener="outbound", flag="NR") == 1
    assert delta("mapmesh_upstream_rq_time_count", cluster=cluster) == 20
    assert delta("mapmesh_upstream_rq_xx", cluster=cluster, code_class="2xx") == 20
    assert value(after, "mapmesh_upstream_rq_5xx", cluster=cluster) == 0
    # Buckets are cumulative and end with +Inf = _count; loopback calls take well under 1 s.
    buckets = sorted(
        (float(dict(labels)["le"]), count)
        for (name, labels), count in after.items()
        if name == "mapmesh_upstream_rq_time_bucket" and ("cluster", cluster) in labels
    )
    counts = [count for _, count in buckets]
    assert counts == sorted(counts) and buckets[-1] == (float("inf"), counts[-1])
    assert counts[-1] == value(after, "mapmesh_upstream_rq_time_count", cluster=cluster)
    assert dict(buckets)[1000.0] == counts[-1]
    assert value(after, "mapmesh_upstream_rq_time_sum", cluster=cluster) > 0
    assert "# TYPE mapmesh_downstream_rq_time histogram" in text
    assert "# TYPE mapmesh_upstream_rq_time histogram" in text


def test_access_log_as_app_mesh_configures_it(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path
) -> None:
    """The node's logging settings win over --access-log: a JSON format with Envoy operators
    logs one line per request — 503 UO when the breaker overflows, 504 UT on a timeout —
    then the default format is Envoy's line, then a text pattern."""
    pool = {"http": {"maxConnections": 1, "maxPendingRequests": 1}}
    listener = {"portMapping": HTTP_8080, "connectionPool": pool}
    with worker_mesh(
        server.url, sd, unique, tmp_path, weights=(100, 0), listeners={"v1": listener}
    ) as mesh:
        flag_log = tmp_path / "access-frontend.log"
        with mesh.client() as client:
            wait_for(lambda: client.get(f"http://{mesh.service}/before").status_code == 200)
        wait_for(lambda: any('"path":"/before"' in line for line in log_lines(flag_log)))
        line = json.loads(next(x for x in log_lines(flag_log) if '"/before"' in x))
        assert re.fullmatch(r"[0-9a-f]{32}", line["trace_id"]), line
        assert line["upstream_cluster"] == f"{unique}/worker-v1:8080"

        json_log = tmp_path / "appmesh.json.log"
        fields = {
            "start": "%START_TIME%", "method": "%REQ(:METHOD)%", "authority": "%REQ(:AUTHORITY)%",
            "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", "status": "%RESPONSE_CODE%",
            "flags": "%RESPONSE_FLAGS%", "duration": "%DURATION%", "upstream": "%UPSTREAM_HOST%",
            "received": "%BYTES_RECEIVED%", "sent": "%BYTES_SENT%",
            "request_id": "%REQ(X-REQUEST-ID)%", "trace": "%TRACE_ID%",
            "summary": "%REQ(:METHOD)% %RESPONSE_CODE%",
        }  # fmt: skip
        json_format = [{"key": k, "value": v} for k, v in fields.items()]
        mesh.appmesh.update_virtual_node(
            meshName=unique, virtualNodeName="frontend",
            spec=logging_spec(mesh, {"path": str(json_log), "format": {"json": json_format}}),
        )  # fmt: skip
        with mesh.client() as client:
            wait_for(lambda: client.get(f"http://{mesh.service}/warm").status_code == 200
                     and json_log.exists())  # fmt: skip
        flagged_before = len(log_lines(flag_log))

        # The breaker: one connection and one pending request; a third caller overflows.
        mesh.v1.behaviour.delay = 1.0
        answers: list[httpx.Response] = []

        def call(number: int) -> None:
            with mesh.client() as client:
                answers.append(client.get(f"http://{mesh.service}/busy/{number}"))

        threads = [threading.Thread(target=call, args=(n,)) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(a.status_code for a in answers) == [200, 200, 503]
        overflow = next(a for a in answers if a.status_code == 503)

        # A per-request timeout: 504.
        mesh.set_route(route(100, 0, timeout={"perRequest": {"value": 300, "unit": "ms"}}))
        time.sleep(0.5)
        with mesh.client() as client:
            assert client.get(f"http://{mesh.service}/slow").status_code == 504
        mesh.v1.behaviour.delay = 0.0

        wait_for(lambda: any('"/slow"' in line for line in log_lines(json_log)))
        entries = [json.loads(line) for line in log_lines(json_log)]
        busy = [e for e in entries if e["path"].startswith("/busy/")]
        assert sorted(e["path"] for e in busy) == ["/busy/0", "/busy/1", "/busy/2"]  # one each
        (refused,) = [e for e in busy if e["status"] == 503]
        assert refused["flags"] == "UO"
        assert refused["request_id"] == overflow.headers["x-request-id"]
        assert refused["upstream"] == f"127.0.0.1:{mesh.v1.port}"
        (slow,) = [e for e in entries if e["path"] == "/slow"]
        assert (slow["status"], slow["flags"], slow["method"]) == (504, "UT", "GET")
        assert 250 <= slow["duration"] < 1000
        assert slow["authority"] == mesh.service and slow["summary"] == "GET 504"
        assert isinstance(slow["sent"], int) and slow["received"] == 0
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", slow["start"])
        assert re.fullmatch(r"[0-9a-f]{32}", slow["trace"])
        assert len(log_lines(flag_log)) == flagged_before  # the snapshot's log won

        # No format: Envoy's default line (the trace id appended).
        default_log = tmp_path / "appmesh.default.log"
        mesh.appmesh.update_virtual_node(
            meshName=unique, virtualNodeName="frontend",
            spec=logging_spec(mesh, {"path": str(default_log)}),
        )  # fmt: skip
        with mesh.client() as client:
            wait_for(lambda: client.get(f"http://{mesh.service}/plain").status_code == 200
                     and default_log.exists())  # fmt: skip
            answer = client.get(f"http://{mesh.service}/default", headers={"user-agent": "t/1"})
        wait_for(lambda: any("/default" in line for line in log_lines(default_log)))
        line = next(x for x in log_lines(default_log) if "/default" in x)
        pattern = (
            r'\[\S+Z\] "GET /default HTTP/1\.1" 200 - 0 (\d+) (\d+) - "-" "t/1" "(\w+)" '
            r'"([^"]+)" "127\.0\.0\.1:(\d+)" "([0-9a-f]{32})"'
        )
        match = re.fullmatch(pattern, line)
        assert match is not None, line
        assert match.group(3) == answer.json()["x-request-id"]
        assert match.group(4) == mesh.service

        # A text pattern.
        text_log = tmp_path / "appmesh.text.log"
        mesh.appmesh.update_virtual_node(
            meshName=unique, virtualNodeName="frontend",
            spec=logging_spec(mesh, {"path": str(text_log), "format": {
                "text": "%RESPONSE_CODE% %RESPONSE_FLAGS% %REQ(:PATH):6% %UPSTREAM_HOST%"}}),
        )  # fmt: skip
        with mesh.client() as client:
            wait_for(lambda: client.get(f"http://{mesh.service}/textual").status_code == 200
                     and text_log.exists())  # fmt: skip
        wait_for(lambda: bool(log_lines(text_log)))
        assert log_lines(text_log)[-1] == f"200 - /textu 127.0.0.1:{mesh.v1.port}"


@contextmanager
def two_hops(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path, *extra: str
) -> Iterator[tuple[Mesh, Upstream, Sidecar]]:
    """The worker mesh with worker-v1 behind its own sidecar (registered in Cloud Map), so
    a call crosses the frontend's sidecar, then the worker's, then reaches the app."""
    app = Upstream("v1")
    with worker_mesh(
        server.url, sd, unique, tmp_path, weights=(100, 0),
        instances={"v1": 0, "v2": 0}, start_proxy=False,
    ) as mesh:  # fmt: skip
        mesh.proxy.extra = (*FAST_REPORTS, *TRACE_ALL, *extra)
        worker = Sidecar(
            server.url, unique, "worker-v1", tmp_path, app_port=app.port, register=True,
            extra=(*FAST_REPORTS, *TRACE_ALL, "--instance-id", "worker-v1-a", *extra),
        )  # fmt: skip
        try:
            worker.launch()
            mesh.proxy.launch()
            with mesh.client() as client:
                wait_for(lambda: client.get(f"http://{mesh.service}/").status_code == 200, 20)
            yield mesh, app, worker
        finally:
            worker.stop()
            app.close()


def trace_of(server: ServerProcess, trace_id: str, spans: int) -> list[dict[str, Any]]:
    """The spans the control plane holds for ``trace_id``, once there are ``spans``."""
    found: list[dict[str, Any]] = []

    def complete() -> bool:
        nonlocal found
        answer = httpx.get(f"{server.url}/v1/traces/{trace_id}")
        found = answer.json()["spans"] if answer.status_code == 200 else []
        return len(found) >= spans

    wait_for(complete, 15)
    return found


def test_a_trace_crosses_two_sidecars_with_retries_visible(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path
) -> None:
    """The app answers 503 once: the frontend's sidecar retries, so its server span has two
    client spans, each the parent of one server span of the worker's sidecar, whose client
    span is the parent the app sees in ``traceparent``."""
    with two_hops(server, sd, unique, tmp_path) as (mesh, app, _):
        app.behaviour.fail_first = 1
        with mesh.client() as client:
            answer = client.get(f"http://{mesh.service}/traced")
        assert answer.status_code == 200
        _, trace_id, app_parent, flags = answer.json()["traceparent"].split("-")
        assert flags == "01"
        spans = trace_of(server, trace_id, 6)

    by_id = {span["spanId"]: span for span in spans}
    front = [s for s in spans if s["node"] == "frontend"]
    work = [s for s in spans if s["node"] == "worker-v1"]
    (root,) = [s for s in front if s["kind"] == "server"]
    assert root["parentSpanId"] is None and root["attributes"]["mapmesh.listener"] == "outbound"
    attempts = sorted((s for s in front if s["kind"] == "client"), key=lambda s: s["start"])
    assert [a["parentSpanId"] for a in attempts] == [root["spanId"]] * 2
    assert [a["attributes"]["http.status_code"] for a in attempts] == [503, 200]
    assert [a["attributes"]["mapmesh.attempt"] for a in attempts] == [1, 2]
    hops = sorted((s for s in work if s["kind"] == "server"), key=lambda s: s["start"])
    assert [h["parentSpanId"] for h in hops] == [a["spanId"] for a in attempts]
    assert all(h["attributes"]["mapmesh.listener"] == "inbound" for h in hops)
    app_calls = [s for s in work if s["kind"] == "client"]
    assert {by_id[c["parentSpanId"]]["spanId"] for c in app_calls} == {h["spanId"] for h in hops}
    last = max(app_calls, key=lambda s: s["start"])
    assert last["spanId"] == app_parent  # the app's parent is the worker sidecar's client span
    assert {s["traceId"] for s in spans} == {trace_id}


def test_x_amzn_trace_id_continues_the_trace(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path
) -> None:
    """An X-Ray header without traceparent: its Root is the trace id, its Parent the parent
    of the proxy's server span; it is forwarded as it came, next to a traceparent."""
    amzn = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    with worker_mesh(server.url, sd, unique, tmp_path, weights=(100, 0), start_proxy=False) as mesh:
        mesh.proxy.extra = (*FAST_REPORTS, *TRACE_ALL)
        mesh.proxy.launch()
        with mesh.client() as client:
            wait_for(lambda: client.get(f"http://{mesh.service}/").status_code == 200)
            seen = client.get(f"http://{mesh.service}/xray", headers={"x-amzn-trace-id": amzn})
        echoed = seen.json()
        assert echoed["x-amzn-trace-id"] == amzn
        _, trace_id, parent, flags = echoed["traceparent"].split("-")
        assert (trace_id, flags) == ("5759e988bd862e3fe1be46a994272793", "01")
        spans = trace_of(server, trace_id, 2)
        (served,) = [s for s in spans if s["kind"] == "server"]
        (called,) = [s for s in spans if s["kind"] == "client"]
        assert served["parentSpanId"] == "53995c3f42cd8ad8"
        assert (called["parentSpanId"], called["spanId"]) == (served["spanId"], parent)

        # Sampled=0 is honoured: the decision travels on, and no span is reported.
        unsampled = amzn.replace("Sampled=1", "Sampled=0").replace("bd862e", "bd862f")
        with mesh.client() as client:
            seen = client.get(f"http://{mesh.service}/", headers={"x-amzn-trace-id": unsampled})
        assert seen.json()["traceparent"].split("-")[1::2] == [
            "5759e988bd862f3fe1be46a994272793",
            "00",
        ]
        time.sleep(1.0)  # three report intervals
        missing = httpx.get(f"{server.url}/v1/traces/5759e988bd862f3fe1be46a994272793")
        assert missing.status_code == 404

        # A W3C context wins over an X-Ray one; tracestate travels unchanged.
        w3c = {"traceparent": f"00-{'e' * 32}-{'f' * 16}-01", "tracestate": "congo=t61rcWkgMzE"}
        with mesh.client() as client:
            seen = client.get(f"http://{mesh.service}/", headers={**w3c, "x-amzn-trace-id": amzn})
        assert seen.json()["tracestate"] == "congo=t61rcWkgMzE"
        assert seen.json()["traceparent"].split("-")[1] == "e" * 32


def test_the_control_plane_hears_edges_events_and_no_spans_at_zero_sampling(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path
) -> None:
    """Reports reach the real control plane: the service map has the frontend → worker-v1
    edge with the request count, the events name the config versions the proxy applied. At
    --trace-sampling 0 the proxy starts no trace (flag 00 upstream) and reports no spans."""
    with worker_mesh(server.url, sd, unique, tmp_path, weights=(100, 0), start_proxy=False) as mesh:
        mesh.proxy.extra = (*FAST_REPORTS, "--trace-sampling", "0")
        mesh.proxy.launch()
        with mesh.client() as client:
            wait_for(lambda: client.get(f"http://{mesh.service}/").status_code == 200)
            for number in range(12):
                seen = client.get(f"http://{mesh.service}/edge/{number}")
                assert seen.json()["traceparent"].endswith("-00")

        def edge() -> dict[str, Any] | None:
            document = httpx.get(f"{server.url}/v1/topology?mesh={unique}&window=120").json()
            return next(
                (e for e in document["edges"]
                 if e["source"] == "virtualNode/frontend"
                 and e["target"] == "virtualNode/worker-v1" and e["requests"] >= 13),
                None,
            )  # fmt: skip

        wait_for(lambda: edge() is not None, 15)
        found = edge()
        assert found is not None and found["status"].get("2xx", 0) >= 13
        events = httpx.get(f"{server.url}/v1/events?mesh={unique}&type=config").json()["events"]
        assert any(
            e["source"] != "control-plane" and e["source"]["name"] == "frontend"
            and e["detail"].get("accepted") is True
            for e in events
        ), events  # fmt: skip
        traces = httpx.get(f"{server.url}/v1/traces?mesh={unique}").json()["traces"]
        assert traces == []
        stats = scrape(mesh.proxy)
        assert value(stats, "mapmesh_telemetry_report_success") >= 1
        assert value(stats, "mapmesh_tracing_requests_sampled", listener="outbound") == 0


def test_the_last_report_is_sent_at_shutdown(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path
) -> None:
    """With reports a minute apart, the requests still reach the control plane: the proxy
    reports once more when it stops, after its requests drained."""
    with worker_mesh(server.url, sd, unique, tmp_path, weights=(100, 0), start_proxy=False) as mesh:
        mesh.proxy.extra = ("--report-interval", "60", *TRACE_ALL)
        mesh.proxy.launch()
        with mesh.client() as client:
            wait_for(lambda: client.get(f"http://{mesh.service}/").status_code == 200)
            seen = client.get(f"http://{mesh.service}/last").json()
        assert mesh.proxy.stop() == 0
        trace_id = seen["traceparent"].split("-")[1]
        answer = httpx.get(f"{server.url}/v1/traces/{trace_id}")
        assert answer.status_code == 200, answer.text
        assert {span["node"] for span in answer.json()["spans"]} == {"frontend"}


def test_the_rate_limit_caps_the_traces_a_busy_proxy_starts(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path
) -> None:
    """--trace-rate-limit 3 with every request sampled: a burst of 40 requests starts about
    three traces a second (one second's worth at once, then the refill), and the rest go
    upstream unsampled (flag 00)."""
    with worker_mesh(server.url, sd, unique, tmp_path, weights=(100, 0), start_proxy=False) as mesh:
        mesh.proxy.extra = (*TRACE_ALL, "--trace-rate-limit", "3")
        mesh.proxy.launch()
        with mesh.client() as client:
            wait_for(lambda: client.get(f"http://{mesh.service}/").status_code == 200)
            time.sleep(1.1)  # the bucket refills to one second's worth
            before = value(scrape(mesh.proxy), "mapmesh_tracing_requests_sampled",
                           listener="outbound")  # fmt: skip
            started = time.monotonic()
            flags = [client.get(f"http://{mesh.service}/burst/{n}").json()["traceparent"][-2:]
                     for n in range(40)]  # fmt: skip
            elapsed = time.monotonic() - started
        sampled = value(scrape(mesh.proxy), "mapmesh_tracing_requests_sampled",
                        listener="outbound") - before  # fmt: skip
        assert flags.count("01") == sampled
        assert 3 <= sampled <= 3 + 3 * elapsed + 1, (sampled, elapsed)


def test_a_negative_rate_limit_is_refused_with_the_reason() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mapmesh", "proxy", "--control-plane", "http://127.0.0.1:9",
         "--mesh", "m", "--virtual-node", "n", "--app-port", "8080",
         "--trace-rate-limit", "-1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--trace-rate-limit" in result.stderr and "must be 0" in result.stderr
