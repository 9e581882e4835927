"""Active health checks, egress passthrough and the gateway, against real processes."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from mapmesh.model.snapshot import Cluster, ConnectionPool, Discovery, Endpoint, HealthCheck
from mapmesh.proxy.cluster import ClusterRuntime
from mapmesh.proxy.health_checker import ActiveHealthChecker
from mapmesh.proxy.pool import EndpointKey
from mapmesh.proxy.stats import Stats
from tests.integration.sidecar_support import (
    HTTP_8080,
    Upstream,
    appmesh_client,
    route,
    wait_for,
    worker_mesh,
)
from tests.support import ServerProcess, free_port


async def test_active_health_checks_take_a_failing_endpoint_out() -> None:
    """A cluster of two real endpoints with an HTTP health check (thresholds 2/2): when one
    fails its /health it leaves the load balancer after two failed probes, and returns after
    two good ones. Probe rounds are driven by the test instead of the 5 s interval."""
    good, bad = Upstream("good"), Upstream("bad")
    check = HealthCheck(protocol="http", path="/health", port=8080, interval_ms=5000,
                        timeout_ms=1000, healthy_threshold=2, unhealthy_threshold=2,
                        defaulted=("port",))  # fmt: skip
    cluster = ClusterRuntime(
        Cluster(
            name="m/worker:8080", virtual_node="worker", port=8080, protocol="http",
            lb_policy="round_robin",
            connection_pool=ConnectionPool(max_connections=8, max_pending_requests=8,
                                           max_requests=8),
            outlier_detection=None, health_check=check,
            discovery=Discovery(kind="none", ip_preference="IPv4_PREFERRED"),
            endpoints=tuple(Endpoint(address="127.0.0.1", port=u.port, health="HEALTHY")
                            for u in (good, bad)),
        ),
        Stats(), lambda: 0.0, random.Random(1),
    )  # fmt: skip
    checker = ActiveHealthChecker(cluster, check, Stats(), random.Random(1))
    bad_key = EndpointKey("127.0.0.1", bad.port)
    try:
        bad.behaviour.status = 500
        await checker.probe_all()
        assert cluster.health.is_healthy(bad_key)  # one failure is below the threshold
        await checker.probe_all()
        assert not cluster.health.is_healthy(bad_key)
        picks = {cluster.pick() for _ in range(6)}
        assert picks == {EndpointKey("127.0.0.1", good.port)}

        bad.behaviour.status = 200
        await checker.probe_all()
        await checker.probe_all()
        assert cluster.health.is_healthy(bad_key)
        assert {cluster.pick() for _ in range(6)} == {bad_key, EndpointKey("127.0.0.1", good.port)}
    finally:
        cluster.close()
        good.close()
        bad.close()


def test_egress_allow_all_passes_unknown_hosts_through(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path
) -> None:
    outside = Upstream("outside")
    try:
        with worker_mesh(server.url, sd, unique, tmp_path) as mesh, mesh.client() as client:
            refused = client.get(f"http://127.0.0.1:{outside.port}/")
            assert refused.status_code == 404
            assert "not a declared backend" in refused.text

            mesh.appmesh.update_mesh(meshName=unique, spec={"egressFilter": {"type": "ALLOW_ALL"}})
            wait_for(lambda: client.get(f"http://127.0.0.1:{outside.port}/").status_code == 200)
            assert client.get(f"http://127.0.0.1:{outside.port}/x").json()["from"] == "outside"
    finally:
        outside.close()


def test_gateway_routes_and_rewrites(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path
) -> None:
    """Outside traffic enters through a virtual gateway: /api/* goes to worker.<ns> with the
    prefix rewritten and the Host set to the service name; other paths get 404; the
    listener's health-check path is answered by the gateway."""
    with worker_mesh(server.url, sd, unique, tmp_path, weights=(100, 0)) as mesh:
        appmesh = appmesh_client(server.url)
        check = {"protocol": "http", "path": "/ping", "healthyThreshold": 2,
                 "unhealthyThreshold": 2, "intervalMillis": 5000, "timeoutMillis": 2000}
        appmesh.create_virtual_gateway(
            meshName=unique, virtualGatewayName="ingress",
            spec={"listeners": [{"portMapping": HTTP_8080, "healthCheck": check}]},
        )  # fmt: skip
        appmesh.create_gateway_route(
            meshName=unique, virtualGatewayName="ingress", gatewayRouteName="api",
            spec={"httpRoute": {
                "match": {"prefix": "/api/"},
                "action": {"target": {"virtualService": {"virtualServiceName": mesh.service}}},
            }},
        )  # fmt: skip
        port, admin = free_port(), free_port()
        log = (tmp_path / "gateway.log").open("wb")
        gateway = subprocess.Popen(
            [sys.executable, "-m", "mapmesh", "gateway", "--control-plane", server.url,
             "--mesh", unique, "--virtual-gateway", "ingress", "--port", str(port),
             "--admin-port", str(admin)],
            stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "MAPMESH_PROXY_SEED": "3"},
        )  # fmt: skip
        try:
            wait_for(lambda: httpx.get(f"http://127.0.0.1:{admin}/ready").status_code == 200)
            answer = httpx.get(f"http://127.0.0.1:{port}/api/orders?id=7", timeout=5)
            assert answer.status_code == 200
            body = answer.json()
            assert body["from"] == "v1"
            assert body["path"] == "/orders?id=7"
            assert body["host"] == mesh.service

            mesh.set_route(route(0, 100))
            wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/api/x").json()["from"] == "v2")

            missing = httpx.get(f"http://127.0.0.1:{port}/elsewhere", timeout=5)
            assert missing.status_code == 404

            # The listener's health check path is answered by the gateway itself.
            ping = httpx.get(f"http://127.0.0.1:{port}/ping", timeout=5)
            assert (ping.status_code, ping.text) == (200, "healthy\n")
        finally:
            gateway.terminate()
            gateway.wait(timeout=15)
            log.close()


def test_idle_upstream_is_cut_and_trace_headers_are_propagated(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path
) -> None:
    """The proxy starts a W3C trace and an x-request-id when the client sends none, and
    continues the client's (same trace id, the proxy's client span as parent; an unsampled
    one passes unchanged); a response that stalls past the route's idle timeout is cut (UT)."""
    with worker_mesh(server.url, sd, unique, tmp_path, weights=(100, 0)) as mesh:
        with mesh.client() as client:
            seen = client.get(f"http://{mesh.service}/").json()
            assert seen["traceparent"].startswith("00-") and len(seen["traceparent"]) == 55
            assert seen["x-request-id"]
            mine = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            echoed = client.get(
                f"http://{mesh.service}/", headers={"traceparent": mine, "x-request-id": "r-1"}
            ).json()
            assert echoed["x-request-id"] == "r-1"
            version, trace, parent, flags = echoed["traceparent"].split("-")
            assert (version, trace, flags) == ("00", "0af7651916cd43dd8448eb211c80319c", "01")
            assert parent != "b7ad6b7169203331"
            unsampled = mine[:-2] + "00"
            passed = client.get(f"http://{mesh.service}/", headers={"traceparent": unsampled})
            assert passed.json()["traceparent"] == unsampled

        mesh.set_route(route(100, 0, timeout={"idle": {"value": 1, "unit": "s"}}))
        time.sleep(0.5)
        mesh.v1.behaviour.stall_body = 4.0
        started = time.monotonic()
        with mesh.client(timeout=10) as client, pytest.raises(httpx.HTTPError):
            client.get(f"http://{mesh.service}/stall").read()
        assert time.monotonic() - started < 3.5  # cut by the 1 s idle timeout (1 s sweep)
