"""The demo mesh (examples/demo) run for real by ``mapmesh up``, seen from a client.

One runner serves the whole module, as in ``test_runner.py``: ``mapmesh up -f app.yaml`` in
the foreground on a copy of the demo directory (so its state stays out of the repository),
on free ports, starting a control plane, the gateway, and nine replicas of the six demo
services, each with its sidecar. The stories run in file order and each leaves every
replica running, except the last, which stops the mesh and checks nothing is left behind.
Every loop is bounded in count and in time.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from mapmesh.runner.state import pid_alive
from tests.support import free_port

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"
# The replicas app.yaml asks for, per virtual node.
NODES = {
    "frontend": 2,
    "auth": 1,
    "user": 1,
    "feed": 1,
    "timeline": 1,
    "worker-v1": 2,
    "worker-v2": 1,
}


def _import_load_script() -> ModuleType:
    """examples/demo/load.py, the load generator the demo's README tells people to run."""
    spec = importlib.util.spec_from_file_location("demo_load", DEMO / "load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


load = _import_load_script()


def wait_until(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"{what}: not within {within}s")


@dataclass
class Mesh:
    workdir: Path
    process: subprocess.Popen[bytes]
    output: Path
    gateway: str

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mapmesh", *args, "-f", "app.yaml"],
            cwd=self.workdir, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def status(self) -> dict[str, Any]:
        done = self.cli("ps", "-o", "json")
        assert done.returncode == 0, done.stderr
        status: dict[str, Any] = json.loads(done.stdout)
        return status

    def replicas(self, node: str) -> list[dict[str, Any]]:
        return [r for r in self.status()["replicas"] if r["node"] == node]

    def wait_settled(self, within: float = 30.0) -> dict[str, Any]:
        """Until every replica of the file's counts runs and is healthy."""
        deadline = time.monotonic() + within
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status()
            replicas = status["replicas"]
            counts = Counter(
                r["node"] for r in replicas if (r["state"], r["health"]) == ("running", "healthy")
            )
            if counts == NODES and len(replicas) == sum(NODES.values()):
                return status
            time.sleep(0.2)
        pytest.fail(f"the demo did not settle: {json.dumps(status.get('replicas'), indent=1)}")

    def log(self) -> str:
        return self.output.read_text(errors="replace")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    workdir = tmp_path_factory.mktemp("demo") / "demo"
    shutil.copytree(DEMO, workdir, ignore=shutil.ignore_patterns(".mapmesh", "__pycache__"))
    output = workdir.parent / "up.out"
    gateway_port = free_port()  # the file's 8080 may be taken; 0 would mean "the file's"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mapmesh", "up", "-f", "app.yaml", "--api-port", "0",
             "--dns-port", "0", "--gateway-port", str(gateway_port)],
            cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    mesh = Mesh(workdir, process, output, f"http://127.0.0.1:{gateway_port}")
    try:
        wait_until(lambda: "ready:" in mesh.log() or process.poll() is not None, 60,
                   "the demo became ready")  # fmt: skip
        assert process.poll() is None, mesh.log()
        yield mesh
    finally:
        if process.poll() is None:  # a story failed before the last one stopped the mesh
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                raise


def client() -> httpx.Client:
    """Straight to the gateway, whatever HTTP_PROXY the test runs with."""
    return httpx.Client(timeout=10.0, trust_env=False)


# -- the stories --------------------------------------------------------------------------


def test_requests_through_the_gateway_reach_every_service(mesh: Mesh) -> None:
    mesh.wait_settled()
    with client() as http:
        # gateway → frontend → auth, user, timeline → worker: the page names who answered.
        page = http.get(f"{mesh.gateway}/", headers={"Authorization": "Bearer demo-bob"})
        assert page.status_code == 200, page.text
        home = page.json()
        assert home["service"] == "frontend"
        assert home["user"]["id"] == "bob"
        assert [post["id"] for post in home["timeline"]] == ["p4"]
        served = home["servedBy"]
        assert set(served) == {"auth", "user", "timeline", "worker"}
        assert served["auth"] == "auth-1" and served["user"] == "user-1"
        assert served["timeline"] == "timeline-1"
        assert served["worker"].startswith(("worker-v1-", "worker-v2-"))
        # One request id from the gateway to the worker, three hops down.
        assert home["worker"]["trace"]["x-request-id"] == home["requestId"]

        # A post goes frontend → feed → worker (the fan-out).
        posted = http.post(f"{mesh.gateway}/posts", json={"text": "hello, mesh"})
        assert posted.status_code == 201, posted.text
        post = posted.json()
        assert post["post"]["author"] == "alice"  # the frontend's default demo user
        assert post["post"]["text"] == "hello, mesh"
        assert post["servedBy"]["feed"] == "feed-1"
        assert post["servedBy"]["worker"] == post["worker"]["instance"]
        assert post["worker"]["service"] == "worker"

        # auth's refusal comes back through frontend and gateway as it was said.
        refused = http.get(f"{mesh.gateway}/", params={"token": "letmein"})
        assert refused.status_code == 401
        assert refused.json()["error"].startswith("auth: invalid token")


def test_the_worker_split_is_ninety_ten(mesh: Mesh) -> None:
    mesh.wait_settled()
    # Five at a time stays under the worker v1 pool (4 connections + 2 waiting), so no
    # request is shed and every answer counts towards the split.
    plan = load.Plan(f"{mesh.gateway}/", requests=300, concurrency=5, timeout=10.0,
                     max_seconds=40.0, token="")  # fmt: skip
    outcomes = load.run(plan)
    assert len(outcomes) == 300
    assert Counter(o.status for o in outcomes) == {200: 300}, [o.error for o in outcomes][:5]
    versions = Counter(o.worker for o in outcomes)
    assert set(versions) == {"v1", "v2"}
    # Binomial(300, 0.9): the standard deviation of the v1 share is 1.7 points; 7 is 4 of them.
    assert 0.83 <= versions["v1"] / 300 <= 0.97, versions


def test_a_burst_beyond_the_worker_pool_is_shed_with_503_overloaded(mesh: Mesh) -> None:
    status = mesh.wait_settled()
    # Straight into timeline's sidecar, the worker's only caller on this path, addressed by
    # the worker's mesh name as the app does: 48 requests at once against pools of 4
    # connections + 2 waiting per version, each request held 100 ms by the worker.
    (timeline,) = [r for r in status["replicas"] if r["node"] == "timeline"]
    outbound = f"http://127.0.0.1:{timeline['outbound_port']}/work"
    burst = 48
    start = threading.Barrier(burst, timeout=10)

    def one(_: int) -> tuple[int, str, str]:
        with httpx.Client(timeout=10.0, trust_env=False) as http:
            start.wait()
            reply = http.get(outbound, headers={"Host": "worker.social.local"})
            return reply.status_code, reply.headers.get("x-mapmesh-overloaded", ""), reply.text

    with ThreadPoolExecutor(max_workers=burst) as pool:
        replies = list(pool.map(one, range(burst)))
    shed = [r for r in replies if r[0] == 503 and r[1] == "true"]
    served = [r for r in replies if r[0] == 200]
    assert shed, Counter(r[0] for r in replies)
    assert "circuit breaker" in shed[0][2]
    assert len(shed) + len(served) == burst, [r for r in replies if r not in shed + served][:3]
    assert len(served) >= 4  # the pools served what they hold


def test_a_killed_worker_replica_is_restarted_and_no_request_fails(mesh: Mesh) -> None:
    mesh.wait_settled()
    victim = mesh.replicas("worker-v1")[0]
    plan = load.Plan(f"{mesh.gateway}/", requests=1, concurrency=1, timeout=10.0,
                     max_seconds=1.0, token="")  # fmt: skip
    outcomes: list[Any] = []
    stop = threading.Event()

    def traffic() -> None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 40
        while not stop.is_set() and time.monotonic() < deadline and len(outcomes) < 2000:
            outcomes.append(load.fetch(opener, plan))

    clients = [threading.Thread(target=traffic, daemon=True) for _ in range(2)]
    for thread in clients:
        thread.start()
    time.sleep(0.5)  # traffic flowing, some of it on the victim, before the kill

    os.kill(victim["pid"], signal.SIGKILL)

    def restarted() -> bool:
        again = [r for r in mesh.replicas("worker-v1") if r["replica"] == victim["replica"]]
        return (
            bool(again)
            and again[0]["state"] == "running"
            and again[0]["restarts"] == victim["restarts"] + 1
        )

    wait_until(restarted, 30, "the killed replica running again")
    again = next(r for r in mesh.replicas("worker-v1") if r["replica"] == victim["replica"])
    assert again["pid"] != victim["pid"]
    time.sleep(0.5)  # and traffic meets the restarted replica too
    stop.set()
    for thread in clients:
        thread.join(15)
    assert not any(thread.is_alive() for thread in clients)

    failed = [(o.status, o.error) for o in outcomes if o.status != 200]
    assert failed == [], failed[:5]
    assert len(outcomes) >= 10
    assert f"worker.{victim['replica']} (worker-v1) down: app killed by SIGKILL" in mesh.log()
    mesh.wait_settled()


def _gateway_requests(admin_port: int) -> int:
    """The gateway's ``downstream_rq_total``, summed over its listeners."""
    text = httpx.get(f"http://127.0.0.1:{admin_port}/stats", timeout=5, trust_env=False).text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("mapmesh_downstream_rq_total")
    )


def _control(demo: Mesh, path: str, **params: Any) -> Any:
    url = demo.status()["control_plane"]
    answer = httpx.get(f"{url}{path}", params=params, timeout=5, trust_env=False)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _demo_trace(mesh: Mesh) -> dict[str, Any] | None:
    """A recent trace that went gateway → frontend → timeline → a worker, every span of it
    reported (each proxy reports on its own schedule, so a trace fills in over seconds)."""
    for summary in _control(mesh, "/v1/traces", mesh="social", limit=50)["traces"]:
        trace: dict[str, Any] = _control(mesh, f"/v1/traces/{summary['traceId']}")
        nodes = {span["attributes"].get("mapmesh.node") for span in trace["spans"]}
        ids = {span["spanId"] for span in trace["spans"]}
        roots = [span for span in trace["spans"] if span.get("parentSpanId") not in ids]
        if (
            {"gateway", "frontend", "timeline"} <= nodes
            and nodes & {"worker-v1", "worker-v2"}
            and len(roots) == 1
        ):
            return trace
    return None


def test_the_demo_is_measured_traced_and_mapped(mesh: Mesh) -> None:
    status = mesh.wait_settled()
    admin = status["gateway"]["admin_port"]
    # Metrics: the requests sent through the gateway are the ones its /stats counts.
    before = _gateway_requests(admin)
    with client() as http:
        for _ in range(20):
            assert http.get(f"{mesh.gateway}/").status_code == 200
    assert _gateway_requests(admin) - before == 20

    # The map: the proxies' reports reach the control plane as the demo's calls.
    calls = {
        ("virtualGateway/gateway", "virtualNode/frontend"),
        ("virtualNode/frontend", "virtualNode/auth"),
        ("virtualNode/frontend", "virtualNode/user"),
        ("virtualNode/frontend", "virtualNode/timeline"),
    }

    def mapped() -> set[tuple[str, str]]:
        topology = _control(mesh, "/v1/topology", mesh="social", window=60)
        return {(e["source"], e["target"]) for e in topology["edges"] if e["requests"]}

    wait_until(lambda: calls <= mapped(), 15, "the map shows the demo's calls")
    assert {target for source, target in mapped() if source == "virtualNode/timeline"} & {
        "virtualNode/worker-v1",
        "virtualNode/worker-v2",
    }

    # A trace across four proxies: every span's parent is in the trace, and the worker's
    # server span descends from the gateway's.
    trace = _demo_trace(mesh)
    deadline = time.monotonic() + 15
    while trace is None and time.monotonic() < deadline:
        time.sleep(0.5)
        trace = _demo_trace(mesh)
    assert trace is not None, "no complete trace from the gateway to a worker within 15 s"
    spans = {span["spanId"]: span for span in trace["spans"]}
    roots = [span for span in spans.values() if span.get("parentSpanId") not in spans]
    assert len(roots) == 1 and roots[0]["attributes"]["mapmesh.node"] == "gateway"
    worker = next(
        span
        for span in spans.values()
        if span["kind"] == "server"
        and span["attributes"]["mapmesh.node"] in ("worker-v1", "worker-v2")
    )
    chain = [worker]
    while chain[-1].get("parentSpanId") in spans:
        chain.append(spans[chain[-1]["parentSpanId"]])
    hops = [(s["attributes"]["mapmesh.node"], s["kind"]) for s in reversed(chain)]
    assert hops[0] == ("gateway", "server") and hops[-1][1] == "server"
    # Each sidecar shows twice on the way (its inbound listener, then its outbound one).
    visited = [
        node for index, (node, _) in enumerate(hops) if not index or hops[index - 1][0] != node
    ]
    assert visited[:3] == ["gateway", "frontend", "timeline"]
    assert visited[3] in ("worker-v1", "worker-v2") and len(visited) == 4


def test_the_dashboard_shows_the_demo_live(mesh: Mesh, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
    chromium = os.environ.get("MAPMESH_CHROMIUM") or shutil.which("chromium")
    if chromium is None:
        pytest.skip("no chromium binary: apt-get install chromium, or set MAPMESH_CHROMIUM")
    url = mesh.status()["control_plane"]
    with client() as http:  # some live traffic for the window the map shows
        for _ in range(10):
            assert http.get(f"{mesh.gateway}/").status_code == 200
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            page.set_default_timeout(15_000)
            page.goto(f"{url}/ui#/map?mesh=social")
            graph = page.locator("svg.graph")
            expect = sync_api.expect
            for name in ("gateway", *NODES):
                expect(graph.locator(f'.node[data-name="{name}"]')).to_be_visible()
            expect(graph.locator('.node[data-name="frontend"] .badge-text')).to_have_text("2/2")
            into_frontend = graph.locator(
                '.edge[data-source="virtualGateway/gateway"][data-target="virtualNode/frontend"]'
            )
            expect(into_frontend.locator(".label-text")).to_contain_text("rps")
            shot = tmp_path / "dashboard-demo-map.png"
            page.screenshot(path=str(shot), full_page=True)
            # Into a trace: the list, then its waterfall.
            page.goto(f"{url}/ui#/traces?mesh=social")
            page.locator("table.traces tbody tr a.trace-link").first.click()
            expect(page.locator("tr.span-row").first).to_be_visible()
            page.screenshot(path=str(tmp_path / "dashboard-demo-trace.png"), full_page=True)
            artifacts = os.environ.get("MAPMESH_ARTIFACTS")
            if artifacts:
                Path(artifacts).mkdir(parents=True, exist_ok=True)
                for picture in tmp_path.glob("dashboard-demo-*.png"):
                    shutil.copy(picture, Path(artifacts) / picture.name)
        finally:
            browser.close()


def test_down_leaves_no_process_and_no_listening_port(mesh: Mesh) -> None:
    status = mesh.wait_settled()
    pids = {status["pid"], status["control_plane_pid"], status["gateway"]["pid"]}
    for replica in status["replicas"]:
        pids |= {replica["pid"], replica["sidecar_pid"]}
    tcp_ports = {
        urlsplit(status["control_plane"]).port,
        urlsplit(status["control_url"]).port,
        urlsplit(status["gateway"]["url"]).port,
        status["dns_port"],
    }
    for replica in status["replicas"]:
        tcp_ports |= {
            replica[k] for k in ("app_port", "inbound_port", "outbound_port", "admin_port")
        }
    assert None not in pids and None not in tcp_ports
    assert len(pids) == 3 + 2 * sum(NODES.values())
    assert all(pid_alive(pid) for pid in pids)

    done = mesh.cli("down", "--timeout", "30", timeout=45)
    assert done.returncode == 0, done.stderr
    assert mesh.process.wait(timeout=15) == 0, mesh.log()
    assert mesh.log().rstrip().endswith("stopped")

    wait_until(lambda: not any(pid_alive(pid) for pid in pids), 10, "every process gone")
    assert [port for port in sorted(tcp_ports) if _tcp_listening(port)] == []
    assert _udp_free(status["dns_port"])
    assert not (mesh.workdir / ".mapmesh" / "runner.json").exists()


def _tcp_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
