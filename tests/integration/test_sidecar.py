"""The sidecar proxy against real upstreams: the seed behaviours users verify first.

Story: a frontend's sidecar carries its calls to ``worker.<ns>``, whose router splits 90/10
between worker-v1 and worker-v2 (each a real HTTP server registered in Cloud Map). The
upstreams can be told to fail, stall or answer; the test watches what the client sees.
"""

from __future__ import annotations

import threading
import time

import httpx

from tests.integration.sidecar_support import Mesh, mesh_fixture, route, wait_for

__all__ = ["mesh_fixture"]  # the ``mesh`` fixture, imported so pytest finds it here


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
