"""A local port per backend, through a real sidecar.

Story: the frontend's sidecar runs with ``--backend-port worker.<ns>=P`` and with a port for
a service the node never declared. The app calls ``http://127.0.0.1:P/...`` with whatever
Host header it likes; the request goes through worker.<ns>'s routes — ``/canary/`` to
worker-v2 by a route of its own, the rest to worker-v1 — and reaches the upstream with its
path and Host as sent. The undeclared service's port is open and answers 404 naming why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.integration.sidecar_support import wait_for, worker_mesh
from tests.support import ServerProcess, free_port


def test_a_backend_port_routes_every_request_through_its_virtual_service(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path
) -> None:
    with worker_mesh(server.url, sd, unique, tmp_path, weights=(100, 0), start_proxy=False) as mesh:
        mesh.appmesh.create_route(
            meshName=mesh.name, virtualRouterName="worker", routeName="canary",
            spec={"priority": 1, "httpRoute": {
                "match": {"prefix": "/canary/"},
                "action": {"weightedTargets": [{"virtualNode": "worker-v2", "weight": 1}]}}},
        )  # fmt: skip
        worker_port, missing_port = free_port(), free_port()
        mesh.proxy.extra = (
            "--backend-port", f"{mesh.service}={worker_port}",
            "--backend-port", f"missing.{mesh.namespace}={missing_port}",
        )  # fmt: skip
        mesh.proxy.launch()
        local = f"http://127.0.0.1:{worker_port}"

        with httpx.Client(timeout=10) as client:
            wait_for(lambda: client.get(f"{local}/canary/ready").json()["from"] == "v2")

            # The route table applies: the default route to v1, the canary prefix to v2.
            answer = client.get(f"{local}/orders/7?full=1")
            assert answer.status_code == 200, answer.text
            assert answer.json() == {
                "from": "v1", "path": "/orders/7?full=1", "host": f"127.0.0.1:{worker_port}",
                "traceparent": answer.json()["traceparent"],
                "x-request-id": answer.json()["x-request-id"],
            }  # fmt: skip
            assert client.get(f"{local}/canary/1").json()["from"] == "v2"

            # Whatever the Host header says, the port decides the virtual service.
            elsewhere = client.get(f"{local}/x", headers={"Host": "billing.example"})
            assert elsewhere.status_code == 200
            assert elsewhere.json()["from"] == "v1"
            assert elsewhere.json()["host"] == "billing.example"
            posted = client.post(f"{local}/canary/upload", content=b"payload")
            assert (posted.status_code, posted.json()["from"]) == (200, "v2")
            assert mesh.v2.bodies[-1] == b"payload"

            # A port for a service the node does not declare is open, and says why it is 404.
            refused = client.get(f"http://127.0.0.1:{missing_port}/")
            assert refused.status_code == 404
            assert f"missing.{mesh.namespace} is not a declared backend" in refused.text
            assert str(missing_port) in refused.text

        # The HTTP-proxy port is unchanged.
        with mesh.client() as client:
            assert client.get(f"http://{mesh.service}/plain").json()["from"] == "v1"

        # Access log and stats name the backend port's listener.
        lines = (tmp_path / "access-frontend.log").read_text().splitlines()
        listeners = {json.loads(line).get("listener") for line in lines}
        assert f"backend:{mesh.service}" in listeners, listeners
        stats = httpx.get(mesh.proxy.admin_url("/stats")).text
        assert f'listener="backend:{mesh.service}"' in stats
