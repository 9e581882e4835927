"""Endpoint weights through a real sidecar.

Story: worker-v1 runs two instances and takes all of worker.<ns>'s traffic. The first
instance re-registers with ``MAPMESH_WEIGHT=3``; the snapshot carries the weight, the
sidecar's ``/clusters`` and ``explain`` show it, and of 200 calls the heavy instance serves
three in four.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from tests.integration.sidecar_support import Mesh, Upstream, wait_for, worker_mesh
from tests.support import ServerProcess


def register(mesh: Mesh, upstream: Upstream, **extra: str) -> None:
    mesh.sd.register_instance(
        ServiceId=mesh.worker_service_id,
        InstanceId=f"worker-{upstream.name}",
        Attributes={"AWS_INSTANCE_IPV4": "127.0.0.1", "AWS_INSTANCE_PORT": str(upstream.port),
                    "version": "v1", **extra},
    )  # fmt: skip


def weights(mesh: Mesh) -> dict[int, int]:
    """Endpoint port → weight, as the sidecar's admin page shows them."""
    (cluster,) = [c for c in mesh.proxy.clusters() if c["virtual_node"] == "worker-v1"]
    return {e["port"]: e["weight"] for e in cluster["endpoints"]}


def test_endpoints_weighted_three_to_one_share_traffic_three_to_one(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path
) -> None:
    with worker_mesh(
        server.url, sd, unique, tmp_path, instances={"v1": 2, "v2": 0}, weights=(100, 0)
    ) as mesh:
        heavy, light = mesh.upstreams["v1"]
        wait_for(lambda: weights(mesh) == {heavy.port: 1, light.port: 1})

        register(mesh, heavy, MAPMESH_WEIGHT="3")
        wait_for(lambda: weights(mesh) == {heavy.port: 3, light.port: 1})

        served: Counter[str] = Counter()
        with mesh.client() as client:
            for number in range(200):
                response = client.get(f"http://{mesh.service}/weighted/{number}")
                assert response.status_code == 200, response.text
                served[response.json()["from"]] += 1
        assert 140 <= served[heavy.name] <= 160, served  # 150 expected
        assert served[heavy.name] + served[light.name] == 200

        explained = httpx.get(
            f"{server.url}/v1/explain", params={"mesh": mesh.name, "virtualNode": "frontend"}
        ).json()
        (backend,) = explained["backends"]
        endpoints = backend["routes"][0]["targets"][0]["upstream"]["endpoints"]
        assert sorted((e["port"], e["weight"]["value"]) for e in endpoints) == sorted(
            [(heavy.port, 3), (light.port, 1)]
        )

        # A bad value is ignored (weight 1) and reported, never a broken cluster.
        register(mesh, heavy, MAPMESH_WEIGHT="a lot")
        wait_for(lambda: weights(mesh) == {heavy.port: 1, light.port: 1})
        explained = httpx.get(
            f"{server.url}/v1/explain", params={"mesh": mesh.name, "virtualNode": "frontend"}
        ).json()
        assert any(w["code"] == "INVALID_WEIGHT" for w in explained["warnings"]), explained
