"""Snapshot streams: a connected proxy hears about every change that affects it, and only those.

The story: a mesh with a frontend calling worker.corp through a router split 90/10. A
simulated frontend sidecar (the proxy's real stream client) connects; registering a worker
task, changing the split and a health transition each reach it within a second as a new
version; a change to an unrelated mesh sends it nothing; its acknowledgements are visible.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import boto3
import httpx
import pytest

from mapmesh.proxy.config_watch import StreamIdentity, follow_snapshots
from tests.integration.test_cloudmap_api import dns_namespace
from tests.support import ServerProcess


def appmesh(server: ServerProcess) -> Any:
    return boto3.client(
        "appmesh",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


def node_spec(namespace: str, version: str | None, backends: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    discovery: dict[str, Any] = {"namespaceName": namespace, "serviceName": "worker"}
    if version:
        discovery["attributes"] = [{"key": "version", "value": version}]
    return {
        "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
        "serviceDiscovery": {"awsCloudMap": discovery},
        "backends": [{"virtualService": {"virtualServiceName": b}} for b in backends],
    }


def route_spec(v1: int, v2: int) -> dict[str, Any]:
    return {
        "httpRoute": {
            "match": {"prefix": "/"},
            "action": {
                "weightedTargets": [
                    {"virtualNode": "worker-v1", "weight": v1},
                    {"virtualNode": "worker-v2", "weight": v2},
                ]
            },
        }
    }


class Received:
    """Snapshots a simulated proxy applied, in order; ``next`` consumes them one by one."""

    def __init__(self) -> None:
        self.versions: list[tuple[int, dict[str, Any]]] = []
        self.seen = 0
        self.event = asyncio.Event()

    def apply(self, version: int, snapshot: dict[str, Any]) -> str | None:
        self.versions.append((version, snapshot))
        self.event.set()
        return None

    async def next(self, within: float = 1.0) -> tuple[int, dict[str, Any], float]:
        """The newest snapshot not yet consumed, waiting up to ``within`` seconds for one."""
        start = time.monotonic()
        while len(self.versions) == self.seen:
            self.event.clear()
            remaining = within - (time.monotonic() - start)
            try:
                await asyncio.wait_for(self.event.wait(), max(remaining, 0.001))
            except TimeoutError:
                pytest.fail(f"no new snapshot within {within}s")
        self.seen = len(self.versions)
        version, snapshot = self.versions[-1]
        return version, snapshot, time.monotonic() - start

    async def nothing_for(self, seconds: float) -> None:
        count = len(self.versions)
        await asyncio.sleep(seconds)
        assert len(self.versions) == count, "an unaffected proxy was sent a snapshot"


async def test_changes_reach_a_connected_stream(
    server: ServerProcess, sd: Any, unique: str
) -> None:
    mesh = appmesh(server)
    namespace = f"{unique}.corp"
    ns_id = dns_namespace(sd, namespace)
    worker = sd.create_service(
        Name="worker",
        NamespaceId=ns_id,
        DnsConfig={"DnsRecords": [{"Type": "A", "TTL": 10}]},
        HealthCheckCustomConfig={},
    )["Service"]["Id"]
    mesh.create_mesh(meshName=unique)
    for name, version in (("worker-v1", "v1"), ("worker-v2", "v2")):
        mesh.create_virtual_node(
            meshName=unique, virtualNodeName=name, spec=node_spec(namespace, version)
        )
    mesh.create_virtual_node(
        meshName=unique,
        virtualNodeName="frontend",
        spec=node_spec(namespace, None, backends=[f"worker.{namespace}"]),
    )
    mesh.create_virtual_router(
        meshName=unique,
        virtualRouterName="worker",
        spec={"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]},
    )
    mesh.create_route(
        meshName=unique, virtualRouterName="worker", routeName="split", spec=route_spec(90, 10)
    )
    mesh.create_virtual_service(
        meshName=unique,
        virtualServiceName=f"worker.{namespace}",
        spec={"provider": {"virtualRouter": {"virtualRouterName": "worker"}}},
    )

    frontend = Received()
    other = Received()
    identity = StreamIdentity(unique, "virtualNode", "frontend", "frontend-1")
    tasks = [
        asyncio.create_task(follow_snapshots(server.url, identity, frontend.apply)),
        asyncio.create_task(
            follow_snapshots(
                server.url, StreamIdentity(unique, "virtualNode", "worker-v1"), other.apply
            )
        ),
    ]
    try:
        first_version, first, _ = await frontend.next(within=3)
        await other.next(within=3)
        assert (first["mesh"], first["kind"], first["name"]) == (unique, "virtualNode", "frontend")

        # A registration reaches the stream within a second.
        sd.register_instance(
            ServiceId=worker,
            InstanceId="task-1",
            Attributes={"AWS_INSTANCE_IPV4": "10.9.0.1", "AWS_INSTANCE_PORT": "8080",
                        "version": "v1"},
        )  # fmt: skip
        version, snapshot, took = await frontend.next()
        assert version > first_version
        assert "10.9.0.1" in str(snapshot)
        assert took < 1.0

        # A route weight change reaches it too.
        mesh.update_route(
            meshName=unique, virtualRouterName="worker", routeName="split", spec=route_spec(50, 50)
        )
        newer, snapshot, _ = await frontend.next()
        assert newer > version
        assert "50" in str(snapshot)

        # A health change reaches it.
        sd.update_instance_custom_health_status(
            ServiceId=worker, InstanceId="task-1", Status="UNHEALTHY"
        )
        health_version, snapshot, _ = await frontend.next()
        assert health_version > newer

        # A change elsewhere sends nothing.
        mesh.create_mesh(meshName=f"{unique}-other")
        await frontend.nothing_for(0.5)

        # The acknowledgement is visible.
        status = httpx.get(server.url + "/v1/proxies").json()["proxies"]
        mine = next(p for p in status if p["mesh"] == unique and p["name"] == "frontend")
        assert mine["version"] == health_version
        assert mine["acks"] == [
            {**mine["acks"][0], "instance": "frontend-1", "version": health_version,
             "accepted": True}
        ]  # fmt: skip
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def test_unknown_node_is_refused(server: ServerProcess) -> None:
    response = httpx.get(server.url + "/v1/stream?mesh=nope&virtualNode=nobody", timeout=5)
    assert response.status_code == 404
    assert "not found" in response.json()["message"]
    response = httpx.get(server.url + "/v1/stream?mesh=nope", timeout=5)
    assert response.status_code == 400
