"""Rate limits (a mapmesh extension) on real processes: a gateway route limited from a mesh
file, a virtual node's inbound listener limited through the native API.

The story: the file's rateLimit survives ``apply`` / ``get -o yaml`` / ``apply`` unchanged
and never shows in App Mesh answers; a client bursting through the gateway gets the burst,
then the rate, and 429s with Retry-After, flag RL and a counter for the rest; an unrelated
config change leaves an empty bucket empty; a sidecar's inbound listener limits what reaches
its app.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.integration.sidecar_support import (
    Mesh,
    Sidecar,
    appmesh_client,
    route,
    wait_for,
    worker_mesh,
)
from tests.integration.test_mesh_yaml import mapmesh
from tests.support import ServerProcess, free_port


def gateway_file(mesh: Mesh) -> str:
    target = {"target": {"virtualService": {"virtualServiceName": mesh.service}}}
    documents = [
        {"kind": "VirtualGateway", "mesh": mesh.name, "name": "ingress",
         "spec": {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]}},
        {"kind": "GatewayRoute", "mesh": mesh.name, "virtualGateway": "ingress", "name": "api",
         "spec": {"httpRoute": {"match": {"prefix": "/api/"}, "action": target},
                  "rateLimit": {"requestsPerUnit": 20, "unit": "second", "burst": 20}}},
        {"kind": "GatewayRoute", "mesh": mesh.name, "virtualGateway": "ingress", "name": "slow",
         "spec": {"httpRoute": {"match": {"prefix": "/slow/"}, "action": target},
                  "rateLimit": {"requestsPerUnit": 3, "unit": "minute"}}},
    ]  # fmt: skip
    return yaml.safe_dump_all(documents, sort_keys=False)


@contextmanager
def gateway(server: ServerProcess, mesh: Mesh, tmp_path: Path) -> Iterator[tuple[int, int]]:
    port, admin = free_port(), free_port()
    with (tmp_path / "gateway.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mapmesh", "gateway", "--control-plane", server.url,
             "--mesh", mesh.name, "--virtual-gateway", "ingress", "--port", str(port),
             "--admin-port", str(admin), "--access-log", str(tmp_path / "access.log")],
            stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "MAPMESH_PROXY_SEED": "9"},
        )  # fmt: skip
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{admin}/ready").status_code == 200)
        yield port, admin
    finally:
        process.terminate()
        process.wait(timeout=15)


def config_version(admin: int) -> int:
    version: int = httpx.get(f"http://127.0.0.1:{admin}/config_dump").json()["version"]
    return version


def over_limit(admin: int, scope: str, name: str) -> int:
    wanted = f'mapmesh_ratelimit_over_limit{{scope="{scope}",name="{name}"}} '
    for line in httpx.get(f"http://127.0.0.1:{admin}/stats").text.splitlines():
        if line.startswith(wanted):
            return int(line.split()[-1])
    return 0


def test_a_gateway_route_limit_from_a_mesh_file(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path
) -> None:
    with worker_mesh(server.url, sd, unique, tmp_path, weights=(100, 0), start_proxy=False) as mesh:
        # The file applies, reads back with its rateLimit where it was written, and applies
        # back unchanged.
        applied = mapmesh(server, "apply", "-f", "-", stdin=gateway_file(mesh))
        assert applied.code == 0, applied.err
        got = mapmesh(server, "get", "gateway-route", "api", "--mesh", unique,
                      "--virtual-gateway", "ingress", "-o", "yaml")  # fmt: skip
        assert got.code == 0, got.err
        document = yaml.safe_load(got.out)
        assert document["spec"]["rateLimit"] == {
            "requestsPerUnit": 20, "unit": "second", "burst": 20,
        }  # fmt: skip
        again = mapmesh(server, "apply", "-f", "-", "-o", "json", stdin=got.out)
        assert [r["result"] for r in json.loads(again.out)["results"]] == ["unchanged"]

        # App Mesh answers stay exactly botocore's shape: no trace of the extension.
        appmesh = appmesh_client(server.url)
        described = appmesh.describe_gateway_route(
            meshName=unique, virtualGatewayName="ingress", gatewayRouteName="api"
        )["gatewayRoute"]
        members = appmesh.meta.service_model.shape_for("GatewayRouteSpec").members
        assert set(described["spec"]) <= set(members)
        assert "rateLimit" not in json.dumps(described, default=str)

        with (
            gateway(server, mesh, tmp_path) as (port, admin),
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client,
        ):
            # A burst of 40, then asking as fast as possible for one second: the burst of
            # 20 is admitted, then 20 per second.
            statuses: list[int] = []
            rejected: list[httpx.Response] = []
            started = time.monotonic()
            while len(statuses) < 2000 and (len(statuses) < 40 or time.monotonic() - started < 1.0):
                answer = client.get("/api/x")
                statuses.append(answer.status_code)
                if answer.status_code == 429:
                    rejected.append(answer)
            elapsed = time.monotonic() - started
            admitted = statuses.count(200)
            assert set(statuses) == {200, 429}
            assert statuses[:20] == [200] * 20
            expected = 20 + 20 * elapsed
            assert expected - 3 <= admitted <= expected + 1, (admitted, elapsed)

            sample = rejected[0]
            assert sample.text.startswith("rate limited: gateway route api allows 20 requests")
            assert int(sample.headers["retry-after"]) >= 1
            assert over_limit(admin, "gateway_route", "api") == len(rejected)
            access_log = tmp_path / "access.log"
            wait_for(lambda: '"response_code":429' in access_log.read_text())
            entries = [json.loads(line) for line in access_log.read_text().splitlines()]
            assert {e["response_flags"] for e in entries if e["response_code"] == 429} == {"RL"}

            # A per-minute limit: 3 at once, then 429 for about 20 s.
            assert [client.get("/slow/x").status_code for _ in range(4)] == [200, 200, 200, 429]

            # An unrelated change (the router's weights) brings a new snapshot; the slow
            # route's bucket is the same one, still empty.
            before = config_version(admin)
            mesh.set_route(route(50, 50))
            wait_for(lambda: config_version(admin) > before)
            late = client.get("/slow/x")
            assert late.status_code == 429
            assert 10 <= int(late.headers["retry-after"]) <= 20


def test_a_virtual_node_listener_limit_set_through_the_native_api(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path
) -> None:
    with worker_mesh(server.url, sd, unique, tmp_path, start_proxy=False) as mesh:
        url = f"{server.url}/v1/extensions"
        node = {"mesh": unique, "virtualNode": "worker-v1"}
        wrong = httpx.put(url, params=node, json={"extensions": {"listeners": [
            {"port": 9999, "rateLimit": {"requestsPerUnit": 2, "unit": "minute"}}]}})  # fmt: skip
        assert wrong.status_code == 400
        assert "no listener on port 9999" in wrong.json()["message"]

        limit = {"requestsPerUnit": 6, "unit": "minute", "burst": 2}
        stored = httpx.put(
            url,
            params=node,
            json={"extensions": {"listeners": [{"port": 8080, "rateLimit": limit}]}},
        )
        assert stored.status_code == 200, stored.text
        assert httpx.get(url, params=node).json()["extensions"] == {
            "listeners": [{"port": 8080, "rateLimit": limit}]
        }
        # An App Mesh update of the node keeps the extension (it is not part of the spec).
        mesh.update_worker_listener("v1", {"portMapping": {"port": 8080, "protocol": "http"}})
        assert httpx.get(url, params=node).json()["extensions"]["listeners"][0]["port"] == 8080

        sidecar = Sidecar(server.url, unique, "worker-v1", tmp_path, app_port=mesh.v1.port)
        try:
            sidecar.launch()
            inbound = f"http://127.0.0.1:{sidecar.inbound}/work"
            with httpx.Client(timeout=5) as client:
                statuses = [client.get(inbound).status_code for _ in range(3)]
                assert statuses == [200, 200, 429]
                limited = client.get(inbound)
                assert limited.status_code == 429
                assert limited.text.startswith("rate limited: listener 8080 allows 6 requests")
                assert 1 <= int(limited.headers["retry-after"]) <= 10
            assert over_limit(sidecar.admin, "listener", "8080") == 2
            explained = mapmesh(server, "explain", "--mesh", unique, "--virtual-node", "worker-v1")
            assert "rate limit: requests 6, per 1 min, burst 2 (all configured)" in explained.out
        finally:
            sidecar.stop()
