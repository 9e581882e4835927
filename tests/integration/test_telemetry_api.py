"""Telemetry on a real control plane: proxies report, the map, traces and events read back.

The story: a mesh where a gateway sends to ``frontend``, which calls ``worker`` (both found in
Cloud Map). Three proxies report one window each, as ``POST /v1/telemetry`` bodies: the
gateway's edge to frontend, frontend's edges out to worker and in to its app, and the spans of
one request that crossed all three. The map shows the three nodes (the mesh was there before
any traffic), the edges with their rates and percentiles, and the trace assembled across the
proxies. A worker task registering through boto3 and a proxy's snapshot ack appear in the
event log; ``/v1/services`` ties instances, ejections, routes and policies together; and
``mapmesh top --once`` prints the same numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import pytest

from tests.integration.sidecar_support import appmesh_client, wait_for
from tests.integration.telemetry_support import (
    register_instance,
    report_body,
    wire_histogram,
    wire_span,
)
from tests.integration.test_cloudmap_api import http_namespace
from tests.support import ServerProcess, free_port

# Unique per run: the control plane is shared by the session, and real sidecars in other
# tests report their traces to it too.
TRACE = uuid.uuid4().hex
_span = partial(wire_span, TRACE)  # a span of this test's trace
GW_SERVER, GW_CLIENT = "1000000000000001", "1000000000000002"
FE_SERVER, FE_CLIENT = "2000000000000001", "2000000000000002"
WK_SERVER = "3000000000000001"


@dataclass
class Telemetry:
    url: str
    mesh: str
    namespace: str
    sd: Any
    worker_service: str

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(self.url + path, params=params, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    def report(self, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.url + "/v1/telemetry", json=body, timeout=5)


def _listener() -> list[dict[str, Any]]:
    return [{"portMapping": {"port": 8080, "protocol": "http"}}]


@pytest.fixture
def telemetry(server: ServerProcess, sd: Any, unique: str) -> Iterator[Telemetry]:
    """gateway → frontend.<ns> (node frontend) → worker.<ns> (node worker), two frontend
    instances and one worker instance registered."""
    namespace = f"{unique}.local"
    ns_id = http_namespace(sd, namespace)
    services = {
        name: sd.create_service(Name=name, NamespaceId=ns_id)["Service"]["Id"]
        for name in ("frontend", "worker")
    }
    register_instance(sd, services["frontend"], "frontend-1", 9001)
    register_instance(sd, services["frontend"], "frontend-2", 9002)
    register_instance(sd, services["worker"], "worker-1", 9101)
    appmesh = appmesh_client(server.url)
    mesh = unique
    appmesh.create_mesh(meshName=mesh)
    for node, backends in (("frontend", [f"worker.{namespace}"]), ("worker", [])):
        appmesh.create_virtual_node(
            meshName=mesh,
            virtualNodeName=node,
            spec={
                "listeners": _listener(),
                "serviceDiscovery": {
                    "awsCloudMap": {"namespaceName": namespace, "serviceName": node}
                },
                "backends": [{"virtualService": {"virtualServiceName": b}} for b in backends],
            },
        )
        appmesh.create_virtual_service(
            meshName=mesh,
            virtualServiceName=f"{node}.{namespace}",
            spec={"provider": {"virtualNode": {"virtualNodeName": node}}},
        )
    appmesh.create_virtual_gateway(
        meshName=mesh, virtualGatewayName="gw", spec={"listeners": _listener()}
    )
    appmesh.create_gateway_route(
        meshName=mesh,
        virtualGatewayName="gw",
        gatewayRouteName="to-frontend",
        spec={
            "httpRoute": {
                "match": {"prefix": "/"},
                "action": {
                    "target": {"virtualService": {"virtualServiceName": f"frontend.{namespace}"}}
                },
            }
        },
    )
    yield Telemetry(server.url, mesh, namespace, sd, services["worker"])


def _report(t: Telemetry, kind: str, name: str, instance: str, **parts: Any) -> dict[str, Any]:
    return report_body(t.mesh, kind, name, instance, 7, **parts)


def _send_one_request_worth(t: Telemetry) -> None:
    mesh, ns = t.mesh, t.namespace
    start = time.time() - 1
    gateway = _report(
        t, "virtualGateway", "gw", "gw-1",
        edges=[{"direction": "gateway", "destination": f"frontend.{ns}",
                "cluster": f"{mesh}/frontend:8080", "requests": 120,
                "status": {"2xx": 114, "5xx": 6}, "flags": {"URX": 2},
                "latencyMs": wire_histogram({2: 90, 3: 10, 4: 20})}],
        spans=[_span(GW_SERVER, None, "gateway gw", "server", start, 9, "gw"),
               _span(GW_CLIENT, GW_SERVER, f"outbound frontend.{ns}", "client", start + 0.0005,
                     8, "gw")],
    )  # fmt: skip
    frontend = _report(
        t, "virtualNode", "frontend", "frontend-1",
        edges=[{"direction": "outbound", "destination": f"worker.{ns}",
                "cluster": f"{mesh}/worker:8080", "requests": 60, "status": {"2xx": 60},
                "latencyMs": wire_histogram({1: 60})},
               {"direction": "inbound", "destination": "frontend", "cluster": None,
                "requests": 120, "status": {"2xx": 120}, "latencyMs": wire_histogram({3: 120})}],
        events=[{"time": time.time(), "type": "ejection",
                 "detail": {"cluster": f"{mesh}/worker:8080", "endpoint": "127.0.0.1:9101",
                            "durationMs": 30000}}],
        spans=[_span(FE_SERVER, GW_CLIENT, "inbound frontend", "server", start + 0.001, 7,
                     "frontend"),
               _span(FE_CLIENT, FE_SERVER, f"outbound worker.{ns}", "client", start + 0.002, 5,
                     "frontend")],
    )  # fmt: skip
    worker = _report(
        t, "virtualNode", "worker", "worker-1",
        spans=[_span(WK_SERVER, FE_CLIENT, "inbound worker", "server", start + 0.003, 3,
                     "worker")],
    )  # fmt: skip
    for body in (worker, frontend, gateway):  # any order: traces assemble when read
        response = t.report(body)
        assert response.status_code == 204, response.text


def test_the_map_traces_events_and_services_of_a_reporting_mesh(telemetry: Telemetry) -> None:
    t = telemetry
    # Before any traffic the map already shows the mesh, with instances from Cloud Map.
    quiet = t.get("/v1/topology", mesh=t.mesh)
    nodes = {n["id"]: n for n in quiet["nodes"]}
    assert set(nodes) == {"virtualNode/frontend", "virtualNode/worker", "virtualGateway/gw"}
    assert (
        nodes["virtualNode/frontend"]["instances"],
        nodes["virtualNode/frontend"]["healthy"],
    ) == (2, 2)
    assert quiet["edges"] == []

    _send_one_request_worth(t)

    # The map: two edges with their rates, error rates and percentiles over 60 s.
    topology = t.get("/v1/topology", mesh=t.mesh, window=60)
    edges = {(e["source"], e["target"]): e for e in topology["edges"]}
    assert set(edges) == {
        ("virtualGateway/gw", "virtualNode/frontend"),
        ("virtualNode/frontend", "virtualNode/worker"),
    }
    ingress = edges[("virtualGateway/gw", "virtualNode/frontend")]
    assert ingress["requests"] == 120 and ingress["rps"] == 2.0
    assert ingress["errorRate"] == pytest.approx(0.05)
    assert ingress["p50Ms"] == pytest.approx(2 + 3 * 60 / 90, abs=0.01)  # inside (2, 5]
    assert ingress["p99Ms"] == pytest.approx(10 + 15 * 18.8 / 20, abs=0.01)  # inside (10, 25]
    assert ingress["flags"] == {"URX": 2}
    assert edges[("virtualNode/frontend", "virtualNode/worker")]["rps"] == 1.0
    frontend = next(n for n in topology["nodes"] if n["id"] == "virtualNode/frontend")
    assert frontend["inbound"]["requests"] == 120 and frontend["version"] == 7

    # The trace, assembled from three reports: gateway → frontend → worker.
    summaries = t.get("/v1/traces", mesh=t.mesh)["traces"]
    assert [s["traceId"] for s in summaries] == [TRACE]
    assert summaries[0]["root"] == "gateway gw"
    assert summaries[0]["spans"] == 5
    assert summaries[0]["services"] == ["frontend", "gw", "worker"]
    trace = t.get(f"/v1/traces/{TRACE}")
    chain = [(s["spanId"], s["parentSpanId"], s["depth"], s["node"]) for s in trace["spans"]]
    assert chain == [
        (GW_SERVER, None, 0, "gw"),
        (GW_CLIENT, GW_SERVER, 1, "gw"),
        (FE_SERVER, GW_CLIENT, 2, "frontend"),
        (FE_CLIENT, FE_SERVER, 3, "frontend"),
        (WK_SERVER, FE_CLIENT, 4, "worker"),
    ]
    missing = httpx.get(f"{t.url}/v1/traces/{'f' * 32}", timeout=5)
    assert missing.status_code == 404 and "not found" in missing.json()["message"]

    # A worker task registers through boto3: the control plane records it for this mesh.
    register_instance(t.sd, t.worker_service, "worker-2", 9102)

    def registered() -> list[dict[str, Any]]:
        events = t.get("/v1/events", mesh=t.mesh, type="registration")["events"]
        return [e for e in events if e["detail"]["instanceId"] == "worker-2"]

    wait_for(registered, within=5)
    event = registered()[0]
    assert event["source"] == "control-plane"
    assert event["detail"]["nodes"] == ["worker"] and event["detail"]["port"] == 9102

    # A proxy acknowledges its snapshot: the ack is an event too.
    query = {"mesh": t.mesh, "virtualNode": "worker", "instance": "worker-proxy-1"}
    with httpx.stream("GET", f"{t.url}/v1/stream", params=query, timeout=5) as stream:
        lines = stream.iter_lines()  # kept: a dropped iterator closes the stream
        first = json.loads(next(lines))
        ack = httpx.post(f"{t.url}/v1/ack", timeout=5, json={
            "mesh": t.mesh, "virtualNode": "worker", "instance": "worker-proxy-1",
            "version": first["version"], "accepted": True,
        })  # fmt: skip
        assert ack.status_code == 204, ack.text
    config = t.get("/v1/events", mesh=t.mesh, type="config")["events"]
    assert [(e["source"], e["detail"]["instance"], e["detail"]["accepted"]) for e in config] == [
        ("control-plane", "worker-proxy-1", True)
    ]
    assert config[0]["detail"]["version"] == first["version"]

    # Newest first, across proxies and the control plane; since= filters by time.
    events = t.get("/v1/events", mesh=t.mesh)["events"]
    times = [e["time"] for e in events]
    assert times == sorted(times, reverse=True)
    assert {"registration", "config", "ejection"} <= {e["type"] for e in events}
    assert t.get("/v1/events", mesh=t.mesh, since=time.time() + 60)["events"] == []

    # Services: instances with health, who ejects which, routes in, and effective policies.
    services = {s["id"]: s for s in t.get("/v1/services", mesh=t.mesh)["services"]}
    worker = services["virtualNode/worker"]
    by_instance = {i["id"]: i for i in worker["instances"]}
    assert set(by_instance) == {"worker-1", "worker-2"}
    assert by_instance["worker-1"]["ejectedBy"] == [
        {"kind": "virtualNode", "name": "frontend", "instance": "frontend-1"}
    ]
    assert by_instance["worker-2"]["ejectedBy"] == []
    assert worker["routes"] == [{"kind": "provider", "virtualServices": [f"worker.{t.namespace}"]}]
    assert worker["policies"]["proxy"] == {"mesh": t.mesh, "kind": "virtualNode", "name": "worker"}
    gateway = services["virtualGateway/gw"]
    assert gateway["routes"][0]["gatewayRoute"] == "to-frontend"
    assert gateway["policies"]["gateway_routes"][0]["virtual_service"]["value"] == (
        f"frontend.{t.namespace}"
    )

    # mapmesh top prints the same edges and node rows.
    top = subprocess.run(
        [sys.executable, "-m", "mapmesh", "top", "--mesh", t.mesh, "--control-plane", t.url,
         "--once"], capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert top.returncode == 0, top.stderr
    lines = top.stdout.splitlines()
    row = next(line for line in lines if "gw (gateway) → frontend" in line)
    assert "2.0" in row and "5.0" in row and "URX:2" in row  # rps, error %, flags
    assert any("frontend → worker" in line for line in lines)
    node_row = next(line for line in lines if line.strip("│ ").startswith("worker "))
    assert "2/2" in node_row


def test_bad_reports_and_queries_are_refused_with_the_field(telemetry: Telemetry) -> None:
    t = telemetry
    good = _report(t, "virtualNode", "frontend", "frontend-1")
    for body, field in (
        ({**good, "kind": "sidecar"}, "kind"),
        ({**good, "edges": [{"direction": "outbound", "destination": "x", "cluster": None,
                             "requests": "many"}]}, "edges[0].requests"),
        ({**good, "spans": [{"traceId": "xyz"}]}, "spans[0].traceId"),
        ([1, 2], "body"),
    ):  # fmt: skip
        response = t.report(body)  # type: ignore[arg-type]
        assert response.status_code == 400, response.text
        assert response.json()["message"].startswith(field + ":"), response.text
    not_json = httpx.post(t.url + "/v1/telemetry", content=b"{", timeout=5)
    assert not_json.status_code == 400 and "JSON" in not_json.json()["message"]
    huge = httpx.post(t.url + "/v1/telemetry", content=b" " * (5 * 1024 * 1024), timeout=10)
    assert huge.status_code == 413

    # Past the per-report caps the excess is dropped and counted, the rest kept.
    one_trace = {"traceId": "ab" * 16}
    spans = [
        _span(f"{i + 1:016x}", None, "s", "server", time.time(), 1, "frontend") | one_trace
        for i in range(1005)
    ]
    assert t.report({**good, "spans": spans}).status_code == 204
    statistics = t.get("/v1/telemetry")["statistics"]
    assert statistics["dropped_spans"] >= 5  # past 1,000 per report
    assert statistics["spans_over_limit"] >= 800  # past 200 per trace

    for path, params, status in (
        ("/v1/topology", {}, 400),
        ("/v1/topology", {"mesh": t.mesh, "window": "0"}, 400),
        ("/v1/topology", {"mesh": "no-such-mesh"}, 404),
        ("/v1/services", {"mesh": "no-such-mesh"}, 404),
        ("/v1/traces", {"limit": "zero"}, 400),
        ("/v1/events", {"since": "yesterday"}, 400),
    ):
        response = httpx.get(t.url + path, params=params, timeout=5)
        assert response.status_code == status, (path, params, response.text)
        assert response.json()["message"]


def test_top_says_how_to_fix_an_unknown_mesh_or_a_missing_control_plane(
    server: ServerProcess,
) -> None:
    def top(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mapmesh", "top", "--once", *args],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip

    unknown = top("--mesh", "no-such-mesh", "--control-plane", server.url)
    assert unknown.returncode == 1
    assert "mesh 'no-such-mesh' not found" in unknown.stderr
    assert "mapmesh get mesh" in unknown.stderr
    nobody = top("--mesh", "m", "--control-plane", f"http://127.0.0.1:{free_port()}")
    assert nobody.returncode == 1
    assert "cannot reach the control plane" in nobody.stderr
    assert "mapmesh server" in nobody.stderr
