"""``mapmesh up`` running a small app for real: a frontend that calls a versioned worker.

One runner serves the whole module (starting a mesh costs seconds on two cores): a real
``mapmesh up`` in the foreground, which starts a real control plane, a sidecar per replica,
the gateway, and tiny stdlib HTTP apps written below. Each story leaves the app as it found
it (every replica running, the counts of the file), so the stories run in any order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import free_port, servicediscovery_client

APP = """\
import json, os, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ME = {"service": os.environ["MAPMESH_SERVICE"], "version": os.environ["MAPMESH_VERSION"],
      "replica": os.environ["MAPMESH_REPLICA"], "greeting": os.environ.get("GREETING", "")}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/health":  # the test makes a replica sick with a file
            sick = os.path.exists(f"sick-{ME['service']}-{ME['replica']}")
            return self.answer({"ok": not sick}, 500 if sick else 200)
        print("GET", self.path, flush=True)
        body = dict(ME, path=self.path)
        if self.path.startswith("/call/"):
            backend = self.path.split("/")[2]
            url = os.environ[backend.upper() + "_URL"] + "/from-" + ME["service"]
            with urllib.request.urlopen(url, timeout=10) as answer:  # through HTTP_PROXY
                body["backend"] = json.loads(answer.read())
        self.answer(body)

    def answer(self, body, status=200):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


print(ME["service"], ME["version"], "listening on", os.environ["PORT"], flush=True)
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""

APP_FILE = """\
app: {app}
gateway:
  port: {gateway_port}
  routes:
    - {{prefix: /worker, service: worker}}
    - {{prefix: /, service: frontend}}
services:
  frontend:
    command: python app.py
    replicas: 2
    env: {{GREETING: {greeting}}}
    calls: [worker]
    health: {{path: /health, interval: 300ms, timeout: 250ms}}
    retries: {{maxRetries: 3, perRetryTimeout: 2s, events: [gateway-error]}}
  worker:
    versions:
      v1: {{command: python app.py, replicas: 1, weight: 50}}
      v2: {{command: {v2_command}, replicas: 1, weight: 50}}
    health: {{interval: 300ms, timeout: 250ms}}
    retries: {{maxRetries: 3, perRetryTimeout: 2s}}
"""


def mapmesh(*args: str, cwd: Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mapmesh", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@dataclass
class Runner:
    workdir: Path
    process: subprocess.Popen[bytes]
    output: Path
    gateway: str
    app: str
    greeting: str = "hi"

    @property
    def app_file(self) -> Path:
        return self.workdir / "app.yaml"

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return mapmesh(*args, "-f", str(self.app_file), cwd=self.workdir, timeout=timeout)

    def status(self) -> dict[str, Any]:
        done = self.cli("ps", "-o", "json")
        assert done.returncode == 0, done.stderr
        status: dict[str, Any] = json.loads(done.stdout)
        return status

    def replicas(self, service: str) -> list[dict[str, Any]]:
        return [r for r in self.status()["replicas"] if r["service"] == service]

    def write_app_file(self, greeting: str, v2_command: str = "[python, app.py]") -> None:
        self.greeting = greeting
        self.app_file.write_text(
            APP_FILE.format(app=self.app, gateway_port=self.gateway.rsplit(":", 1)[1],
                            greeting=greeting, v2_command=v2_command)
        )  # fmt: skip

    def cloud_map(self, service: str) -> set[str]:
        """Instance ids DiscoverInstances returns (any health)."""
        sd = servicediscovery_client(self.status()["control_plane"])
        found = sd.discover_instances(
            NamespaceName=f"{self.app}.local", ServiceName=service, HealthStatus="ALL"
        )
        return {i["InstanceId"] for i in found["Instances"]}

    def instance_operations(self, service: str, instance: str) -> list[dict[str, Any]]:
        """The registry's finished operations on one instance, oldest first.

        Unlike a look at the instances now, this history cannot miss a short-lived state:
        a replica that is restarted at once is out of Cloud Map for only a moment.
        """
        sd = servicediscovery_client(self.status()["control_plane"])
        namespace = sd.list_namespaces(
            Filters=[{"Name": "NAME", "Values": [f"{self.app}.local"], "Condition": "EQ"}]
        )["Namespaces"][0]["Id"]
        service_id = next(
            s["Id"]
            for s in sd.list_services(
                Filters=[{"Name": "NAMESPACE_ID", "Values": [namespace], "Condition": "EQ"}]
            )["Services"]
            if s["Name"] == service
        )
        listed = sd.list_operations(
            Filters=[
                {"Name": "SERVICE_ID", "Values": [service_id], "Condition": "EQ"},
                {"Name": "STATUS", "Values": ["SUCCESS"], "Condition": "EQ"},
            ],
            MaxResults=100,
        )["Operations"]
        operations = [sd.get_operation(OperationId=o["Id"])["Operation"] for o in listed]
        mine = [o for o in operations if o["Targets"].get("INSTANCE") == instance]
        return sorted(mine, key=lambda o: o["CreateDate"])

    def wait_settled(self, within: float = 20.0) -> dict[str, Any]:
        """Until every replica runs and the replica counts are the file's."""
        deadline = time.monotonic() + within
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status()
            counts = Counter(r["node"] for r in status["replicas"] if r["state"] == "running")
            if (
                counts == {"frontend": 2, "worker-v1": 1, "worker-v2": 1}
                and len(status["replicas"]) == 4
            ):
                return status
            time.sleep(0.1)
        pytest.fail(f"the app did not settle: {json.dumps(status['replicas'], indent=1)}")

    def log(self) -> str:
        return self.output.read_text(errors="replace")


def wait_until(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    pytest.fail(f"{what}: not within {within}s")


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    workdir = tmp_path_factory.mktemp("runner")
    (workdir / "app.py").write_text(APP)
    output = workdir / "up.out"
    gateway = f"http://127.0.0.1:{free_port()}"
    runner = Runner(workdir, None, output, gateway, "social")  # type: ignore[arg-type]
    runner.write_app_file("hi")
    with output.open("wb") as out:
        runner.process = subprocess.Popen(
            [sys.executable, "-m", "mapmesh", "up", "-f", "app.yaml", "--api-port", "0",
             "--dns-port", "0"],
            cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until(lambda: "ready:" in runner.log() or runner.process.poll() is not None, 40,
                   "the runner became ready")  # fmt: skip
        assert runner.process.poll() is None, runner.log()
        yield runner
    finally:
        if runner.process.poll() is None:
            runner.process.send_signal(signal.SIGINT)  # Ctrl-C stops everything cleanly
            try:
                assert runner.process.wait(timeout=30) == 0, runner.log()
            except subprocess.TimeoutExpired:
                runner.process.kill()
                raise
            assert runner.log().rstrip().endswith("stopped")
            assert not (workdir / ".mapmesh" / "runner.json").exists()


@dataclass
class Load:
    """``total`` GETs of ``path`` through the gateway from a few threads, bounded in time."""

    url: str
    total: int = 300
    threads: int = 3
    within: float = 30.0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._issued = 0
        self._deadline = time.monotonic() + self.within
        self._workers = [threading.Thread(target=self._run, daemon=True)
                         for _ in range(self.threads)]  # fmt: skip

    def start(self) -> Load:
        for worker in self._workers:
            worker.start()
        return self

    def _run(self) -> None:
        with httpx.Client(timeout=10.0) as client:
            while True:
                with self._lock:
                    if self._issued >= self.total or time.monotonic() > self._deadline:
                        return
                    self._issued += 1
                try:
                    response = client.get(self.url)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(f"client error {exc!r}")
                    continue
                with self._lock:
                    self.statuses[response.status_code] += 1
                    if response.status_code == 200:
                        self.bodies.append(response.json())
                    else:
                        self.failures.append(f"{response.status_code} {response.text}")

    def join(self) -> Load:
        for worker in self._workers:
            worker.join(max(self._deadline - time.monotonic(), 0) + 12)
        assert not any(w.is_alive() for w in self._workers)
        return self


# -- the stories --------------------------------------------------------------------------


def test_requests_reach_services_and_their_backends_through_the_gateway(runner: Runner) -> None:
    runner.wait_settled()
    # gateway → frontend's sidecar → frontend app → its HTTP_PROXY (sidecar) → worker
    body = httpx.get(f"{runner.gateway}/call/worker").json()
    assert body["service"] == "frontend"
    assert body["greeting"] == runner.greeting
    assert body["backend"]["service"] == "worker"
    assert body["backend"]["version"] in ("v1", "v2")
    assert body["backend"]["path"] == "/from-frontend"
    # The gateway's second route goes straight to the worker (prefix /worker rewritten to /).
    direct = httpx.get(f"{runner.gateway}/worker/x").json()
    assert (direct["service"], direct["path"]) == ("worker", "/x")


def test_traffic_splits_between_versions_by_weight(runner: Runner) -> None:
    runner.wait_settled()
    load = Load(f"{runner.gateway}/worker/split", total=200).start().join()
    assert load.failures == []
    versions = Counter(body["version"] for body in load.bodies)
    assert sum(versions.values()) == 200
    assert 60 <= versions["v1"] <= 140, versions  # 50/50 within a wide tolerance


def test_a_killed_app_leaves_cloud_map_and_comes_back_without_a_failed_request(
    runner: Runner,
) -> None:
    runner.wait_settled()
    victim = runner.replicas("frontend")[0]
    instance = victim["instance"]
    assert instance in runner.cloud_map("frontend")
    before = {o["Id"] for o in runner.instance_operations("frontend", instance)}
    load = Load(f"{runner.gateway}/call/worker", total=400).start()
    time.sleep(0.3)

    # The app dies hard; the runner notices, takes the replica out of Cloud Map (its
    # sidecar deregisters) while it is down, and starts it again.
    os.kill(victim["pid"], signal.SIGKILL)

    def since_the_kill() -> list[str]:
        done = runner.instance_operations("frontend", instance)
        return [o["Type"] for o in done if o["Id"] not in before]

    wait_until(lambda: since_the_kill()[:2] == ["DEREGISTER_INSTANCE", "REGISTER_INSTANCE"],
               20, "deregistered, then registered again")  # fmt: skip
    assert instance in runner.cloud_map("frontend")
    again = next(r for r in runner.replicas("frontend") if r["replica"] == victim["replica"])
    assert again["restarts"] == 1
    assert again["pid"] != victim["pid"]
    assert "app killed by SIGKILL" in runner.log()

    # Every request meanwhile succeeded: the route's retries took the other replica.
    load.join()
    assert load.failures == []
    assert sum(load.statuses.values()) == 400
    runner.wait_settled()


def test_scale_up_and_down(runner: Runner) -> None:
    runner.wait_settled()
    done = runner.cli("scale", "frontend=3")
    assert done.returncode == 0, done.stderr
    assert "scaled frontend to 3" in done.stdout
    running = [r for r in runner.replicas("frontend") if r["state"] == "running"]
    assert len(running) == 3
    assert {r["instance"] for r in running} == runner.cloud_map("frontend")

    # A service with versions is scaled by version.
    refused = runner.cli("scale", "worker=2")
    assert refused.returncode == 1
    assert "worker has versions; scale one of them: worker-v1=N, worker-v2=N" in refused.stderr

    done = runner.cli("scale", "frontend=2")
    assert done.returncode == 0, done.stderr
    left = runner.replicas("frontend")
    assert len(left) == 2
    assert {r["instance"] for r in left} == runner.cloud_map("frontend")
    runner.wait_settled()


def test_ps_and_logs(runner: Runner) -> None:
    runner.wait_settled()
    httpx.get(f"{runner.gateway}/call/worker")
    ps = runner.cli("ps")
    assert ps.returncode == 0, ps.stderr
    lines = ps.stdout.splitlines()
    assert f"gateway {runner.gateway}" in lines[0]
    assert lines[1].split() == [
        "SERVICE", "VERSION", "REPLICA", "STATE", "PID", "APP", "PORT", "SIDECAR",
        "IN/OUT/ADMIN", "RESTARTS", "HEALTH",
    ]  # fmt: skip
    rows = [line.split() for line in lines[2:]]
    assert sorted((row[0], row[1], row[3], row[-1]) for row in rows) == [
        ("frontend", "-", "running", "healthy"),
        ("frontend", "-", "running", "healthy"),
        ("worker", "v1", "running", "healthy"),
        ("worker", "v2", "running", "healthy"),
    ]

    logs = runner.cli("logs", "frontend")
    assert logs.returncode == 0, logs.stderr
    numbers = {r["replica"] for r in runner.replicas("frontend")}
    for number in numbers:
        assert f"frontend.{number} | frontend  listening on" in logs.stdout
    one = runner.cli("logs", "frontend", "--replica", str(min(numbers)))
    assert "listening on" in one.stdout and " | " not in one.stdout
    sidecar = runner.cli("logs", "frontend", "--sidecar", "--tail", "50")
    assert '"listener":"inbound"' in sidecar.stdout  # the sidecars' access log
    unknown = runner.cli("logs", "nosuch")
    assert unknown.returncode == 1
    assert "no logs for nosuch" in unknown.stderr and "frontend" in unknown.stderr

    # --follow prints what the replicas write from now on (until stopped).
    follower = subprocess.Popen(
        [sys.executable, "-m", "mapmesh", "logs", "worker", "--follow", "--tail", "0",
         "-f", str(runner.app_file)],
        cwd=runner.workdir, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(1.0)
        httpx.get(f"{runner.gateway}/worker/followed")
        time.sleep(0.8)
    finally:
        follower.terminate()
        out, _ = follower.communicate(timeout=10)
    assert "| GET /followed" in out


def test_a_changed_file_rolls_out_without_a_failed_request(runner: Runner) -> None:
    runner.wait_settled()
    before = {r["instance"] for r in runner.replicas("frontend")}
    workers = {r["instance"] for r in runner.replicas("worker")}
    greeting = "hello" if runner.greeting != "hello" else "hi"
    runner.write_app_file(greeting)
    load = Load(f"{runner.gateway}/call/worker", total=100_000, within=60).start()
    time.sleep(0.3)

    done = runner.cli("up")  # hands the file to the running supervisor, waits for the rollout
    assert done.returncode == 0, done.stderr
    assert "rolling out the change (replacing frontend)" in done.stdout

    after = runner.replicas("frontend")
    assert {r["instance"] for r in after}.isdisjoint(before)
    assert {r["state"] for r in after} == {"running"}
    time.sleep(0.3)
    load._deadline = time.monotonic()  # stop the load now
    load.join()
    assert load.failures == []
    greetings = [body["greeting"] for body in load.bodies]
    assert greetings[0] != greeting and greetings[-1] == greeting
    # The worker's spec did not change: it kept its replicas.
    assert {r["instance"] for r in runner.replicas("worker")} == workers
    runner.wait_settled()


def test_a_replica_failing_its_health_check_is_taken_out_and_restarted(runner: Runner) -> None:
    runner.wait_settled()
    victim = runner.replicas("frontend")[-1]
    sick = runner.workdir / f"sick-frontend-{victim['replica']}"
    sick.write_text("")
    try:
        # Two failed checks 300 ms apart: out of Cloud Map, processes stopped, restart pending.
        wait_until(lambda: victim["instance"] not in runner.cloud_map("frontend"), 10,
                   "the sick replica left Cloud Map")  # fmt: skip
    finally:
        sick.unlink()
    wait_until(lambda: victim["instance"] in runner.cloud_map("frontend"), 20, "back again")
    again = next(r for r in runner.replicas("frontend") if r["replica"] == victim["replica"])
    assert again["restarts"] == victim["restarts"] + 1
    assert "failed 2 health checks in a row (HTTP 500" in runner.log()
    runner.wait_settled()


def test_a_replacement_that_keeps_failing_is_given_up_and_the_old_replica_keeps_serving(
    runner: Runner,
) -> None:
    runner.wait_settled()
    (old,) = [r for r in runner.replicas("worker") if r["version"] == "v2"]
    runner.write_app_file(runner.greeting, v2_command='[python, -c, "raise SystemExit(3)"]')
    try:
        done = runner.cli("up")
        assert done.returncode == 1
        assert "gave up replacing worker-v2: replica" in done.stderr
        assert "app exited with code 3" in done.stderr
        v2 = [r for r in runner.replicas("worker") if r["version"] == "v2"]
        assert [(r["instance"], r["state"]) for r in v2] == [(old["instance"], "running")]
        load = Load(f"{runner.gateway}/worker/still", total=40).start().join()
        assert load.failures == []
        assert {b["version"] for b in load.bodies} == {"v1", "v2"}
    finally:
        runner.write_app_file(runner.greeting)
        restored = runner.cli("up")
    assert restored.returncode == 0, restored.stderr
    assert "no replica to replace" in restored.stdout
    runner.wait_settled()
