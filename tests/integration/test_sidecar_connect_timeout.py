"""The connect timeout through a real sidecar.

Story: worker-v1's only instance is registered at a loopback port whose connects hang (its
accept queue is full, so SYNs go unanswered). The sidecar runs with ``--connect-timeout 0.3``:
the call fails within about three connect timeouts (the first try and App Mesh's two default
retries) with 503 naming the connect timeout — not after the 15 s per-try timeout — and each
try counts as a connect failure.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from tests.integration.sidecar_support import hanging_listener, wait_for, worker_mesh
from tests.support import ServerProcess


def test_a_connect_that_hangs_is_cut_at_the_connect_timeout(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path
) -> None:
    with (
        worker_mesh(
            server.url, sd, unique, tmp_path, instances={"v1": 1, "v2": 0}, weights=(100, 0),
            start_proxy=False,
        ) as mesh,
        hanging_listener() as port,
    ):  # fmt: skip
        mesh.sd.register_instance(
            ServiceId=mesh.worker_service_id, InstanceId="worker-v1",
            Attributes={"AWS_INSTANCE_IPV4": "127.0.0.1", "AWS_INSTANCE_PORT": str(port),
                        "version": "v1"},
        )  # fmt: skip
        mesh.proxy.extra = ("--connect-timeout", "0.3")
        mesh.proxy.launch()
        wait_for(
            lambda: [e["port"] for c in mesh.proxy.clusters() for e in c["endpoints"]
                     if c["virtual_node"] == "worker-v1"] == [port]
        )  # fmt: skip

        with mesh.client() as client:
            started = time.monotonic()
            response = client.get(f"http://{mesh.service}/hangs")
            elapsed = time.monotonic() - started
        assert response.status_code == 503
        assert "connect timeout after 0.3s" in response.text
        assert 0.85 <= elapsed < 5.0, elapsed

        stats = httpx.get(mesh.proxy.admin_url("/stats")).text
        fails = [
            line for line in stats.splitlines()
            if line.startswith("mapmesh_upstream_cx_connect_fail") and "worker-v1" in line
        ]  # fmt: skip
        assert [float(line.rsplit(" ", 1)[1]) for line in fails] == [3.0], fails
        entries = [
            json.loads(line) for line in (tmp_path / "access-frontend.log").read_text().splitlines()
        ]
        (entry,) = [e for e in entries if e.get("path") == "/hangs"]
        assert "UF" in json.dumps(entry), entry
