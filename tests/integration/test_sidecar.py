"""The sidecar proxy against real upstreams: the seed behaviours users verify first.

Story: a frontend's sidecar carries its calls to ``worker.<ns>``, whose router splits 90/10
between worker-v1 and worker-v2 (each a real HTTP server registered in Cloud Map). The
upstreams can be told to fail, stall or answer; the test watches what the client sees.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx
import pytest

from tests.integration.test_cloudmap_api import http_namespace
from tests.support import ServerProcess, free_port


@dataclass
class Behaviour:
    status: int = 200
    delay: float = 0.0
    fail_first: int = 0  # answer 503 to this many requests first
    served: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Upstream:
    """A real HTTP server whose answers the test controls."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.behaviour = Behaviour()
        behaviour = self.behaviour

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with behaviour.lock:
                    behaviour.served += 1
                    failing = behaviour.fail_first > 0
                    if failing:
                        behaviour.fail_first -= 1
                if behaviour.delay:
                    time.sleep(behaviour.delay)
                status = 503 if failing else behaviour.status
                body = json.dumps({"from": name, "path": self.path,
                                   "host": self.headers.get("host")}).encode()  # fmt: skip
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Mesh:
    name: str
    namespace: str
    v1: Upstream
    v2: Upstream
    outbound: int
    admin: int
    appmesh: Any

    @property
    def service(self) -> str:
        return f"worker.{self.namespace}"

    def client(self, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(proxy=f"http://127.0.0.1:{self.outbound}", timeout=timeout)

    def set_route(self, spec: dict[str, Any]) -> None:
        self.appmesh.update_route(
            meshName=self.name, virtualRouterName="worker", routeName="split", spec=spec
        )


def route(v1: int, v2: int, **extra: Any) -> dict[str, Any]:
    return {
        "httpRoute": {
            "match": {"prefix": "/"},
            "action": {
                "weightedTargets": [
                    {"virtualNode": "worker-v1", "weight": v1},
                    {"virtualNode": "worker-v2", "weight": v2},
                ]
            },
            **extra,
        }
    }


def wait_for(check: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    pytest.fail("condition not met in time")


@pytest.fixture
def mesh(server: ServerProcess, sd: Any, unique: str, tmp_path: Any) -> Iterator[Mesh]:
    appmesh = boto3.client(
        "appmesh", endpoint_url=server.url, region_name="us-east-1",
        aws_access_key_id="x", aws_secret_access_key="x",
    )  # fmt: skip
    namespace = f"{unique}.local"
    ns_id = http_namespace(sd, namespace)
    worker_service = sd.create_service(Name="worker", NamespaceId=ns_id)["Service"]["Id"]
    v1, v2 = Upstream("v1"), Upstream("v2")
    for upstream, version in ((v1, "v1"), (v2, "v2")):
        sd.register_instance(
            ServiceId=worker_service,
            InstanceId=f"worker-{version}",
            Attributes={"AWS_INSTANCE_IPV4": "127.0.0.1",
                        "AWS_INSTANCE_PORT": str(upstream.port), "version": version},
        )  # fmt: skip
    appmesh.create_mesh(meshName=unique)
    pool = {"http": {"maxConnections": 1, "maxPendingRequests": 1}}
    listener = [{"portMapping": {"port": 8080, "protocol": "http"}, "connectionPool": pool}]
    for version in ("v1", "v2"):
        appmesh.create_virtual_node(
            meshName=unique, virtualNodeName=f"worker-{version}",
            spec={"listeners": listener, "serviceDiscovery": {"awsCloudMap": {
                "namespaceName": namespace, "serviceName": "worker",
                "attributes": [{"key": "version", "value": version}]}}},
        )  # fmt: skip
    appmesh.create_virtual_node(
        meshName=unique, virtualNodeName="frontend",
        spec={"backends": [{"virtualService": {"virtualServiceName": f"worker.{namespace}"}}]},
    )  # fmt: skip
    appmesh.create_virtual_router(
        meshName=unique, virtualRouterName="worker",
        spec={"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]},
    )  # fmt: skip
    appmesh.create_route(
        meshName=unique, virtualRouterName="worker", routeName="split", spec=route(90, 10)
    )
    appmesh.create_virtual_service(
        meshName=unique, virtualServiceName=f"worker.{namespace}",
        spec={"provider": {"virtualRouter": {"virtualRouterName": "worker"}}},
    )  # fmt: skip
    outbound, admin, inbound, app = free_port(), free_port(), free_port(), free_port()
    proxy_log = (tmp_path / "proxy.log").open("wb")
    proxy = subprocess.Popen(
        [sys.executable, "-m", "mapmesh", "proxy", "--control-plane", server.url,
         "--mesh", unique, "--virtual-node", "frontend", "--app-port", str(app),
         "--inbound-port", str(inbound), "--outbound-port", str(outbound),
         "--admin-port", str(admin), "--no-register",
         "--access-log", str(tmp_path / "access.log"), "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.DEVNULL, stderr=proxy_log,
        env={**__import__("os").environ, "MAPMESH_PROXY_SEED": "7"},
    )  # fmt: skip
    result = Mesh(unique, namespace, v1, v2, outbound, admin, appmesh)
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{admin}/ready", timeout=1).status_code == 200)
        yield result
    finally:
        proxy.terminate()
        proxy.wait(timeout=15)
        proxy_log.close()
        v1.close()
        v2.close()


def test_split_retries_timeouts_and_breaker(mesh: Mesh) -> None:
    with mesh.client() as client:
        # The 90/10 split, within tolerance over 200 requests.
        counts = {"v1": 0, "v2": 0}
        for _ in range(200):
            response = client.get(f"http://{mesh.service}/hello")
            assert response.status_code == 200
            counts[response.json()["from"]] += 1
        assert 160 <= counts["v1"] <= 195, counts

        # A 503 is retried (App Mesh's default policy retries gateway errors twice).
        mesh.set_route(route(100, 0))
        wait_for(lambda: client.get(f"http://{mesh.service}/").json()["from"] == "v1")
        mesh.v1.behaviour.fail_first = 2
        before = mesh.v1.behaviour.served
        response = client.get(f"http://{mesh.service}/retry-me")
        assert response.status_code == 200
        assert mesh.v1.behaviour.served - before == 3

        # Three 503s exhaust the two retries: the client sees the upstream's 503.
        mesh.v1.behaviour.fail_first = 3
        assert client.get(f"http://{mesh.service}/").status_code == 503

        # A route timeout cuts a stalled upstream off: 504.
        mesh.set_route(route(100, 0, timeout={"perRequest": {"value": 300, "unit": "ms"}}))
        time.sleep(0.5)
        mesh.v1.behaviour.delay = 1.0
        started = time.monotonic()
        response = client.get(f"http://{mesh.service}/slow")
        assert response.status_code == 504
        assert time.monotonic() - started < 0.9
        assert "timeout" in response.text
        mesh.v1.behaviour.delay = 0.0

        # An undeclared host is refused with the reason.
        response = client.get("http://not-a-backend.example/")
        assert response.status_code == 404
        assert "not a declared backend" in response.text


def test_circuit_breaker_answers_503_at_once(mesh: Mesh) -> None:
    mesh.set_route(route(100, 0))
    mesh.v1.behaviour.delay = 1.0
    with mesh.client() as warm:
        wait_for(lambda: warm.get(f"http://{mesh.service}/").status_code == 200)
    results: list[httpx.Response] = []

    def call() -> None:
        with mesh.client() as client:
            results.append(client.get(f"http://{mesh.service}/busy"))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 200, 503], statuses  # 1 connection + 1 pending, the third overflows
    overflow = next(r for r in results if r.status_code == 503)
    assert overflow.headers["x-mapmesh-overloaded"] == "true"

    stats = httpx.get(f"http://127.0.0.1:{mesh.admin}/stats").text
    assert "mapmesh_upstream_cx_overflow" in stats
    assert "mapmesh_upstream_rq_total" in stats
    clusters = httpx.get(f"http://127.0.0.1:{mesh.admin}/clusters").json()["clusters"]
    assert any(c["virtual_node"] == "worker-v1" for c in clusters)
    dump = httpx.get(f"http://127.0.0.1:{mesh.admin}/config_dump").json()
    assert dump["snapshot"]["name"] == "frontend"
