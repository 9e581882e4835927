"""The sidecar when upstreams misbehave, configs move and clients send rubbish.

Each test is a story told against real processes: the session's control plane, a real
``mapmesh proxy`` for the ``frontend`` node, and real HTTP servers as the worker endpoints
(see ``sidecar_support``). Load loops are bounded in count and time.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.sidecar_support import HTTP_8080, Load, Mesh, route, wait_for, worker_mesh
from tests.support import ServerProcess


def _ejected(mesh: Mesh, port: int) -> bool:
    for cluster in mesh.proxy.clusters():
        for endpoint in cluster["endpoints"]:
            if endpoint["port"] == port:
                return bool(endpoint["ejected"])
    raise AssertionError(f"no endpoint on port {port} in /clusters")


def test_outlier_detection_ejects_a_failing_endpoint_then_returns_it(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path
) -> None:
    outlier = {
        "maxServerErrors": 3,
        "interval": {"value": 10, "unit": "s"},
        "baseEjectionDuration": {"value": 1, "unit": "s"},
        "maxEjectionPercent": 50,
    }
    listener = {"portMapping": HTTP_8080, "outlierDetection": outlier}
    with worker_mesh(
        server.url, sd, unique, tmp_path,
        instances={"v1": 2}, listeners={"v1": listener}, weights=(100, 0),
    ) as mesh, mesh.client() as client:  # fmt: skip
        good, bad = mesh.upstreams["v1"]
        url = f"http://{mesh.service}/"

        # Both v1 endpoints take their turn while they are healthy.
        seen = {client.get(url).json()["from"] for _ in range(6)}
        assert seen == {good.name, bad.name}

        # One starts answering 500. A 500 is not a gateway error, so the default retry
        # policy passes it through: the client sees each of the three failures.
        bad.behaviour.status = 500
        before = bad.behaviour.served
        statuses = []
        for _ in range(20):
            statuses.append(client.get(url).status_code)
            if bad.behaviour.served - before == 3:
                break
        assert statuses.count(500) == 3, statuses

        # The third consecutive error ejected it: /clusters says so and every request
        # goes to the healthy endpoint.
        assert _ejected(mesh, bad.port)
        assert not _ejected(mesh, good.port)
        answers = [client.get(url) for _ in range(10)]
        assert [(r.status_code, r.json()["from"]) for r in answers] == [(200, good.name)] * 10
        assert bad.behaviour.served - before == 3

        # Meanwhile it recovers; after the 1 s ejection it is back in rotation.
        bad.behaviour.status = 200
        wait_for(lambda: not _ejected(mesh, bad.port), within=3.0)
        seen = {client.get(url).json()["from"] for _ in range(6)}
        assert seen == {good.name, bad.name}


def test_an_endpoint_killed_under_load_costs_no_request(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path
) -> None:
    with worker_mesh(
        server.url, sd, unique, tmp_path, instances={"v1": 2}, weights=(100, 0)
    ) as mesh:
        victim, survivor = mesh.upstreams["v1"]

        # Four clients send 300 requests through the sidecar (the route keeps the default
        # retry policy: gateway errors and connection errors, twice).
        load = Load(mesh, total=300, threads=4, within=20.0).start()

        # A third of the way in, one endpoint crashes: its socket and connections close.
        load.wait_until(100)
        victim.kill()
        served_before_kill = victim.behaviour.served
        result = load.join()

        # Requests that hit the dead endpoint (refused connects, resets on pooled
        # connections) were retried on the survivor: no client saw a failure.
        assert result.failures == []
        assert result.completed == 300
        assert result.statuses == {200: 300}
        # At most the requests already inside the victim when it died were counted after.
        assert victim.behaviour.served <= served_before_kill + 4
        assert result.served_by[survivor.name] > 150


def test_config_changes_mid_load_fail_no_request(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path
) -> None:
    with worker_mesh(server.url, sd, unique, tmp_path, weights=(100, 0)) as mesh:
        load = Load(mesh, total=300, threads=4, within=20.0).start()

        # While requests flow, the operator swings the weights back and forth, and once
        # changes a worker's connection pool (which rebuilds that cluster in the proxy).
        load.wait_until(30)
        for v1, v2 in ((0, 100), (50, 50), (100, 0), (0, 100)):
            mesh.set_route(route(v1, v2))
            time.sleep(0.15)
        pool = {"http": {"maxConnections": 8, "maxPendingRequests": 64}}
        mesh.update_worker_listener("v1", {"portMapping": HTTP_8080, "connectionPool": pool})
        mesh.set_route(route(50, 50))
        time.sleep(0.15)
        mesh.set_route(route(100, 0))
        result = load.join()

        # Every request was answered by one version or the other; none failed.
        assert result.failures == []
        assert result.statuses == {200: 300}
        assert result.served_by["v1"] > 0 and result.served_by["v2"] > 0

        # The last change is the one in force.
        with mesh.client() as client:
            wait_for(lambda: client.get(f"http://{mesh.service}/").json()["from"] == "v1")
            assert {client.get(f"http://{mesh.service}/").json()["from"] for _ in range(10)} == {
                "v1"
            }


def _raw(port: int, data: bytes, timeout: float = 3.0) -> tuple[bytes, bool]:
    """Send ``data`` on a new connection; what came back, and whether the proxy closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return received, False
            except ConnectionResetError:
                return received, True
            if not chunk:
                return received, True
            received += chunk


def _status(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response[9:12])


@pytest.mark.parametrize(
    ("case", "request_bytes", "expected"),
    [
        (
            "Content-Length and Transfer-Encoding together (request smuggling)",
            b"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n"
            b"Host: {host}\r\n\r\n",
            400,
        ),
        (
            "a header block over 64 KiB",
            b"GET / HTTP/1.1\r\nHost: {host}\r\nX-Filler: " + b"a" * (66 * 1024) + b"\r\n\r\n",
            431,
        ),
        ("garbage", b"\x16\x03\x01\x02\x00 this is not HTTP\r\n\r\n", 400),
    ],
    ids=["cl-te", "huge-head", "garbage"],
)
def test_malformed_requests_are_refused_and_the_proxy_stays_up(
    server: ServerProcess,
    sd: Any,
    unique: str,
    tmp_path: Path,
    case: str,
    request_bytes: bytes,
    expected: int,
) -> None:
    with worker_mesh(server.url, sd, unique, tmp_path, weights=(100, 0)) as mesh:
        host = mesh.service.encode()
        before = mesh.v1.behaviour.served

        # The hostile request gets its status, with a reason, and the connection closes.
        response, closed = _raw(mesh.outbound, request_bytes.replace(b"{host}", host))
        assert _status(response) == expected, (case, response[:300])
        assert closed, f"{case}: the proxy kept the connection open"

        # Nothing reached the upstream, and the next client is served normally.
        assert mesh.v1.behaviour.served == before
        with mesh.client() as client:
            assert client.get(f"http://{mesh.service}/after").status_code == 200
