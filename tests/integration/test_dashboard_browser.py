"""The dashboard in a real browser, against a real control plane.

The story: a mesh where a gateway sends to ``frontend``, which calls ``worker``. Three proxies
report one window each (``POST /v1/telemetry``): 5% of the gateway's requests to frontend
fail, frontend's calls to worker all succeed, and one request's spans crossed all three.
Headless Chromium opens ``/ui``: the map shows the three nodes with their instance badges and
the two calls, coloured by error rate; Enter on the frontend node opens its detail page
(instances, routes, policies); the trace list leads to the waterfall, where a span opens its
attributes; the events view lists the ejection frontend reported and filters by type. An
empty mesh and an unknown mesh show their hints and the error banner. Screenshots of each view
are saved under the test's tmp dir, and copied to ``$MAPMESH_ARTIFACTS`` when it is set.

Needs Debian's ``chromium`` and the ``playwright`` Python package (the ``dev`` extra); it is
skipped, naming what is missing, without them.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.sidecar_support import appmesh_client
from tests.integration.telemetry_support import (
    register_instance,
    report_body,
    wire_histogram,
    wire_span,
)
from tests.integration.test_cloudmap_api import http_namespace
from tests.support import ServerProcess

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is missing: pip install -e '.[dev]'"
)

CHROMIUM = os.environ.get("MAPMESH_CHROMIUM") or shutil.which("chromium")
NO_CHROMIUM = "no chromium binary: apt-get install chromium, or set MAPMESH_CHROMIUM"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)]

WAIT_MS = 10_000
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
_span = partial(wire_span, TRACE)  # a span of this test's trace
GW_SERVER, GW_CLIENT = "a000000000000001", "a000000000000002"
FE_SERVER, FE_CLIENT = "b000000000000001", "b000000000000002"
WK_SERVER = "c000000000000001"


@dataclass
class Demo:
    url: str
    mesh: str
    namespace: str


def _build_mesh(url: str, sd: Any, mesh: str, namespace: str) -> None:
    """gateway ``gw`` → frontend.<ns> (node frontend, 2 instances) → worker.<ns> (node worker)."""
    ns_id = http_namespace(sd, namespace)
    listener = [{"portMapping": {"port": 8080, "protocol": "http"}}]
    appmesh = appmesh_client(url)
    appmesh.create_mesh(meshName=mesh)
    for node, instances, backends in (("frontend", 2, [f"worker.{namespace}"]), ("worker", 1, [])):
        service_id = sd.create_service(Name=node, NamespaceId=ns_id)["Service"]["Id"]
        for index in range(instances):
            register_instance(sd, service_id, f"{node}-{index + 1}", 9000 + index)
        appmesh.create_virtual_node(
            meshName=mesh, virtualNodeName=node,
            spec={"listeners": listener,
                  "serviceDiscovery": {"awsCloudMap": {"namespaceName": namespace,
                                                       "serviceName": node}},
                  "backends": [{"virtualService": {"virtualServiceName": b}} for b in backends]},
        )  # fmt: skip
        appmesh.create_virtual_service(
            meshName=mesh, virtualServiceName=f"{node}.{namespace}",
            spec={"provider": {"virtualNode": {"virtualNodeName": node}}},
        )  # fmt: skip
    appmesh.create_virtual_gateway(
        meshName=mesh, virtualGatewayName="gw", spec={"listeners": listener}
    )
    appmesh.create_gateway_route(
        meshName=mesh, virtualGatewayName="gw", gatewayRouteName="to-frontend",
        spec={"httpRoute": {"match": {"prefix": "/"}, "action": {"target": {"virtualService": {
            "virtualServiceName": f"frontend.{namespace}"}}}}},
    )  # fmt: skip


def _report(demo: Demo, kind: str, name: str, instance: str, **parts: Any) -> None:
    body = report_body(demo.mesh, kind, name, instance, 3, **parts)
    answer = httpx.post(f"{demo.url}/v1/telemetry", json=body, timeout=5)
    assert answer.status_code == 204, answer.text


def _send_traffic(demo: Demo) -> None:
    """One report window from each proxy, as docs/telemetry.md describes them."""
    mesh, ns = demo.mesh, demo.namespace
    start = time.time() - 1
    _report(
        demo, "virtualGateway", "gw", "gw-1",
        edges=[{"direction": "gateway", "destination": f"frontend.{ns}",
                "cluster": f"{mesh}/frontend:8080", "requests": 120,
                "status": {"2xx": 114, "5xx": 6}, "flags": {"URX": 2},
                "latencyMs": wire_histogram({2: 90, 3: 10, 4: 20})}],
        spans=[_span(GW_SERVER, None, "gateway gw", "server", start, 9, "gw"),
               _span(GW_CLIENT, GW_SERVER, f"outbound frontend.{ns}", "client", start + 0.0005,
                     8, "gw")],
    )  # fmt: skip
    _report(
        demo, "virtualNode", "frontend", "frontend-1",
        edges=[{"direction": "outbound", "destination": f"worker.{ns}",
                "cluster": f"{mesh}/worker:8080", "requests": 60, "status": {"2xx": 60},
                "latencyMs": wire_histogram({1: 60})}],
        events=[{"time": time.time(), "type": "ejection",
                 "detail": {"cluster": f"{mesh}/worker:8080", "endpoint": "127.0.0.1:9000",
                            "durationMs": 30000}}],
        spans=[_span(FE_SERVER, GW_CLIENT, "inbound frontend", "server", start + 0.001, 7,
                     "frontend"),
               _span(FE_CLIENT, FE_SERVER, f"outbound worker.{ns}", "client", start + 0.002, 5,
                     "frontend")],
    )  # fmt: skip
    _report(
        demo, "virtualNode", "worker", "worker-1",
        spans=[_span(WK_SERVER, FE_CLIENT, "inbound worker", "server", start + 0.003, 3,
                     "worker", status=503)],
    )  # fmt: skip


@pytest.fixture(scope="module")
def demo(server: ServerProcess, sd: Any) -> Demo:
    mesh = f"ui{int(time.time() * 1000) % 10**8}"
    demo = Demo(server.url, mesh, f"{mesh}.local")
    _build_mesh(server.url, sd, demo.mesh, demo.namespace)
    _send_traffic(demo)
    return demo


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser
        finally:
            browser.close()


class Shots:
    """Screenshots under the test's tmp dir, copied to $MAPMESH_ARTIFACTS when it is set."""

    def __init__(self, page: Any, directory: Path) -> None:
        self.page = page
        self.directory = directory
        self.copy_to = os.environ.get("MAPMESH_ARTIFACTS")

    def take(self, name: str) -> Path:
        path = self.directory / f"dashboard-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        if self.copy_to:
            Path(self.copy_to).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(self.copy_to) / path.name)
        return path


@pytest.fixture
def page(browser: Any, tmp_path: Path) -> Iterator[tuple[Any, Shots, list[str]]]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []  # uncaught exceptions in the page's scripts
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page, Shots(page, tmp_path), errors
    finally:
        context.close()


def test_map_service_traces_and_events_of_a_mesh_with_traffic(
    demo: Demo, page: tuple[Any, Shots, list[str]]
) -> None:
    browser_page, shots, errors = page
    expect = sync_api.expect

    # The map: three nodes with instance badges, two calls labelled with rate and errors.
    browser_page.goto(f"{demo.url}/ui#/map?mesh={demo.mesh}")
    graph = browser_page.locator("svg.graph")
    for name in ("gw", "frontend", "worker"):
        expect(graph.locator(f'.node[data-name="{name}"]')).to_be_visible()
    expect(graph.locator('.node[data-name="frontend"] .badge-text')).to_have_text("2/2")
    expect(graph.locator('.node[data-name="worker"] .badge-text')).to_have_text("1/1")
    into_frontend = graph.locator(
        '.edge[data-source="virtualGateway/gw"][data-target="virtualNode/frontend"]'
    )
    into_worker = graph.locator(
        '.edge[data-source="virtualNode/frontend"][data-target="virtualNode/worker"]'
    )
    expect(into_frontend).to_have_class("edge edge-bad")  # 6 of 120 failed: 5%
    expect(into_frontend.locator(".label-text")).to_contain_text("rps · 5.0%")
    expect(into_worker).to_have_class("edge edge-ok")
    expect(into_worker.locator(".label-text")).to_contain_text("rps · 0%")
    calls = browser_page.locator(".calls tbody tr")
    expect(calls).to_have_count(2)
    expect(calls.first).to_contain_text(f"frontend.{demo.namespace}")
    expect(browser_page.locator("#mesh-select")).to_have_value(demo.mesh)
    # A refresh later nothing has moved (the layout depends on the graph's shape only).
    before = graph.locator('.node[data-name="worker"]').get_attribute("transform")
    browser_page.wait_for_timeout(2300)
    assert graph.locator('.node[data-name="worker"]').get_attribute("transform") == before
    assert browser_page.locator("#status").inner_text().startswith("live")
    shots.take("map")

    # Keyboard: focus the frontend node and press Enter to open its detail page.
    graph.locator('a.node[data-name="frontend"]').focus()
    browser_page.keyboard.press("Enter")
    expect(browser_page.locator("#service-title")).to_contain_text("frontend")
    instances = browser_page.locator('section[aria-labelledby="instances-title"] tbody tr')
    expect(instances).to_have_count(2)
    expect(instances.first).to_contain_text("frontend-1")
    expect(instances.first).to_contain_text("UNKNOWN")  # no health check configured
    policies = browser_page.locator('section[aria-labelledby="policies-title"]')
    expect(policies).to_contain_text("Inbound listener 8080")
    expect(policies).to_contain_text(f"Calls to worker.{demo.namespace}")
    expect(policies).to_contain_text("max retries")
    routes = browser_page.locator('section[aria-labelledby="routes-title"]')
    expect(routes).to_contain_text(f"frontend.{demo.namespace}")
    traffic = browser_page.locator('section[aria-labelledby="traffic-title"]')
    expect(traffic).to_contain_text("Calls in")
    expect(traffic).to_contain_text("Calls out")
    shots.take("service")

    # The worker's detail page shows the ejection frontend reported.
    browser_page.goto(f"{demo.url}/ui#/service/virtualNode/worker?mesh={demo.mesh}")
    expect(browser_page.locator('section[aria-labelledby="instances-title"]')).to_contain_text(
        "ejected by frontend (frontend-1)"
    )

    # Traces: the list, then the waterfall of the one trace.
    browser_page.get_by_role("link", name="Traces", exact=True).click()
    row = browser_page.locator("table.traces tbody tr").first
    expect(row).to_contain_text("gateway gw")
    expect(row).to_contain_text("error")  # the worker answered 503
    shots.take("traces")
    row.locator("a.trace-link").click()
    expect(browser_page.locator("#trace-title")).to_have_text("Trace: gateway gw")
    spans = browser_page.locator("tr.span-row")
    expect(spans).to_have_count(5)
    # Parent before child, alternating server and client kinds down the call chain.
    kinds = [spans.nth(i).get_attribute("data-kind") for i in range(5)]
    assert kinds == ["server", "client", "server", "client", "server"]
    names = [spans.nth(i).locator(".span-name").inner_text() for i in range(5)]
    assert names[0] == "gateway gw" and names[-1] == "inbound worker"
    expect(spans.nth(4)).to_have_class("span-row failed")
    toggle = spans.nth(2).locator("button.span-toggle")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    details = browser_page.locator(f"#span-{FE_SERVER}")
    expect(details).to_be_visible()
    expect(details).to_contain_text("http.status_code")
    expect(details).to_contain_text("mapmesh.node")
    shots.take("waterfall")

    # Events: the ejection, then the filter.
    browser_page.get_by_role("link", name="Events", exact=True).click()
    events = browser_page.locator("table.events tbody tr")
    expect(events.filter(has_text="ejection")).to_have_count(1)
    expect(events.filter(has_text="ejection")).to_contain_text("127.0.0.1:9000 ejected")
    expect(events.filter(has_text="registration").first).to_be_visible()
    browser_page.select_option("#event-type", "ejection")
    expect(events).to_have_count(1)
    assert "type=ejection" in browser_page.url
    shots.take("events")
    assert errors == []


def test_empty_and_unknown_meshes_say_what_to_do(
    server: ServerProcess, demo: Demo, page: tuple[Any, Shots, list[str]]
) -> None:
    browser_page, shots, errors = page
    expect = sync_api.expect
    empty = f"{demo.mesh}-empty"
    appmesh_client(server.url).create_mesh(meshName=empty)

    browser_page.goto(f"{demo.url}/ui#/map?mesh={empty}")
    expect(browser_page.locator(".empty")).to_contain_text("no virtual nodes or gateways")
    shots.take("empty-mesh")
    browser_page.goto(f"{demo.url}/ui#/traces?mesh={empty}")
    expect(browser_page.locator(".empty")).to_contain_text("No traces yet")

    browser_page.goto(f"{demo.url}/ui#/traces/{'f' * 32}?mesh={empty}")
    expect(browser_page.locator("#trace-title")).to_have_text("Trace not found")

    browser_page.goto(f"{demo.url}/ui#/map?mesh=no-such-mesh")
    banner = browser_page.get_by_role("alert")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("not found")
    shots.take("error")
    # Choosing a real mesh clears the banner.
    browser_page.select_option("#mesh-select", demo.mesh)
    expect(browser_page.locator('svg.graph .node[data-name="frontend"]')).to_be_visible()
    expect(banner).to_be_hidden()
    assert errors == []


# The pure modules (layout and waterfall geometry), imported by the page itself so the test
# runs exactly the code the browser runs.
_PURE_CHECKS = """
async () => {
  const base = document.querySelector('script[type="module"]').src.replace(/js\\/app\\.js$/, "");
  const L = await import(base + "js/graph/layout.js");
  const T = await import(base + "js/trace-model.js");
  const node = (id, kind = "virtualNode") => ({ id, kind, name: id.split("/")[1] || id });
  const column = (geometry, id) => geometry.positions.get(id).column;

  const nodes = [node("virtualGateway/gw", "virtualGateway"), node("virtualNode/frontend"),
                 node("virtualNode/worker"), node("virtualNode/idle")];
  const edges = [{ source: "virtualGateway/gw", target: "virtualNode/frontend", rps: 1 },
                 { source: "virtualNode/frontend", target: "virtualNode/worker", rps: 2 },
                 { source: "virtualGateway/gw", target: "virtualNode/worker", rps: 3 }];
  const chain = L.layout(nodes, edges);
  const busier = edges.map((e) => ({ ...e, rps: e.rps * 100 }));

  const cyclic = [node("virtualNode/a"), node("virtualNode/b"), node("virtualNode/c")];
  const loop = L.layout(cyclic, [
    { source: "virtualNode/a", target: "virtualNode/b" },
    { source: "virtualNode/b", target: "virtualNode/a" },
    { source: "virtualNode/c", target: "virtualNode/a" },
  ]);

  const span = (spanId, parentSpanId, start, end) =>
    ({ spanId, parentSpanId, start, end, kind: "server", name: spanId, attributes: {} });
  const { rows } = T.waterfallRows([
    span("child", "root", 1.002, 1.004), span("root", null, 1.0, 1.01),
    span("orphan", "missing", 1.003, 1.005), span("child", "root", 1.002, 1.004),
    span("x", "y", 1.001, 1.002), span("y", "x", 1.001, 1.002),
  ]);
  return {
    columns: nodes.map((n) => column(chain, n.id)),
    waypoints: (chain.routes.get("virtualGateway/gw>virtualNode/worker") || []).length,
    sameKey: L.structureKey(nodes, edges) === L.structureKey(nodes, busier),
    sameLayout: JSON.stringify([...L.layout(nodes, busier).positions]) ===
      JSON.stringify([...chain.positions]),
    loopColumns: cyclic.map((n) => column(loop, n.id)),
    rows: rows.map((r) => [r.span.spanId, r.depth]),
    bounded: rows.every((r) => r.left >= 0 && r.left + r.width <= 100.0001),
    ticks: [T.ticks(9), T.ticks(1000)],
    failed: [{ status: "error" }, { attributes: { "http.status_code": 503 } },
             { status: "ok", attributes: { "http.status_code": 404 } }].map(T.spanFailed),
  };
}
"""


def test_layout_and_waterfall_geometry(demo: Demo, page: tuple[Any, Shots, list[str]]) -> None:
    browser_page, _, errors = page
    browser_page.goto(f"{demo.url}/ui#/events?mesh={demo.mesh}")
    result = browser_page.evaluate(_PURE_CHECKS)
    # gateway, then frontend, then worker; an idle service sits right of the gateways.
    assert result["columns"] == [0, 1, 2, 1]
    # gw → worker skips frontend's column: it gets a slot there instead of crossing a box.
    assert result["waypoints"] == 1
    # Traffic numbers never move nodes.
    assert result["sameKey"] and result["sameLayout"]
    # a ⇄ b with c → a: the cycle is broken, c calls from the left.
    columns = result["loopColumns"]
    assert columns[2] == 0 and len(set(columns[:2])) == 2
    # Parent before child, orphans as roots, a duplicate span once, a parent cycle still shown.
    assert result["rows"] == [["root", 0], ["child", 1], ["orphan", 0], ["x", 0], ["y", 0]]
    assert result["bounded"]
    assert result["ticks"] == [[0, 2.5, 5, 7.5], [0, 250, 500, 750, 1000]]
    assert result["failed"] == [True, True, False]
    assert errors == []
