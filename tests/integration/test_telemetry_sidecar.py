"""A real sidecar reports to the control plane's telemetry store.

The story: the frontend's sidecar carries 40 calls to ``worker.<ns>`` (split 90/10 between
worker-v1 and worker-v2, real upstreams), one of them with a sampled W3C ``traceparent``.
Within a few report intervals the map shows the frontend's edges to both workers with all 40
requests, and the sampled request's trace holds the sidecar's server span with its upstream
attempt as a child.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.integration.sidecar_support import wait_for, worker_mesh
from tests.support import ServerProcess

TRACE = "5af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


def test_a_sidecar_reports_edges_and_spans(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path
) -> None:
    with worker_mesh(server.url, sd, unique, tmp_path, start_proxy=False) as mesh:
        mesh.proxy.extra = ("--report-interval", "0.2", "--trace-sampling", "1")
        mesh.proxy.launch()
        with mesh.client() as client:
            traced = client.get(
                f"http://{mesh.service}/traced",
                headers={"traceparent": f"00-{TRACE}-{CALLER_SPAN}-01"},
            )
            assert traced.status_code == 200
            for number in range(39):
                assert client.get(f"http://{mesh.service}/call/{number}").status_code == 200

        def edges() -> dict[str, Any]:
            topology = httpx.get(
                f"{server.url}/v1/topology", params={"mesh": mesh.name}, timeout=5
            ).json()
            return {
                e["target"]: e for e in topology["edges"] if e["source"] == "virtualNode/frontend"
            }

        wait_for(lambda: sum(e["requests"] for e in edges().values()) == 40, within=10)
        found = edges()
        assert set(found) == {"virtualNode/worker-v1", "virtualNode/worker-v2"}
        assert (
            found["virtualNode/worker-v1"]["requests"] > found["virtualNode/worker-v2"]["requests"]
        )
        assert all(e["errorRate"] == 0 and e["p50Ms"] is not None for e in found.values())

        def trace() -> dict[str, Any] | None:
            answer = httpx.get(f"{server.url}/v1/traces/{TRACE}", timeout=5)
            return answer.json() if answer.status_code == 200 else None

        wait_for(trace, within=10)
        spans = trace()["spans"]  # type: ignore[index]
        server_span = next(s for s in spans if s["kind"] == "server")
        client_span = next(s for s in spans if s["kind"] == "client")
        assert server_span["parentSpanId"] == CALLER_SPAN  # the caller's span, not reported
        assert server_span["node"] == "frontend" and server_span["depth"] == 0
        assert client_span["parentSpanId"] == server_span["spanId"]
        assert client_span["depth"] == 1
