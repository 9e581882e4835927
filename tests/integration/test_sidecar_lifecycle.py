"""The sidecar's life: without its control plane, in front of its app, and at shutdown.

Stories told against real processes (see ``sidecar_support``): a proxy that keeps serving
while its control plane is dead and comes back to it; a proxy whose inbound listener fronts
the local app, registers it in Cloud Map once it answers, and on SIGTERM deregisters it and
lets the request in flight finish; a client too slow to send its body gets 408.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.integration.sidecar_support import (
    HTTP_8080,
    Sidecar,
    Upstream,
    appmesh_client,
    route,
    wait_for,
    worker_mesh,
)
from tests.integration.test_cloudmap_api import http_namespace
from tests.support import (
    ServerProcess,
    free_port,
    servicediscovery_client,
    start_server,
    stop_server,
)


def test_the_proxy_outlives_its_control_plane(unique: str, tmp_path: Path) -> None:
    # A control plane of this test's own, so it can be killed.
    control = start_server(tmp_path / "control-plane")
    try:
        sd = servicediscovery_client(control.url)
        with worker_mesh(control.url, sd, unique, tmp_path, weights=(100, 0)) as mesh:
            url = f"http://{mesh.service}/"
            version = httpx.get(mesh.proxy.admin_url("/config_dump")).json()["version"]
            with mesh.client() as client:
                assert client.get(url).json()["from"] == "v1"

                # The control plane dies hard (kill -9): the proxy keeps serving.
                control.process.kill()
                control.process.wait(timeout=10)
                for _ in range(20):
                    response = client.get(url)
                    assert (response.status_code, response.json()["from"]) == (200, "v1")

            # The proxy restarts while the control plane is still down: it serves from the
            # snapshot it kept in its state directory.
            assert mesh.proxy.stop() == 0
            mesh.proxy.start().wait_ready()
            dump = httpx.get(mesh.proxy.admin_url("/config_dump")).json()
            assert dump["version"] == version
            with mesh.client() as client:
                for _ in range(20):
                    response = client.get(url)
                    assert (response.status_code, response.json()["from"]) == (200, "v1")

                # The control plane comes back on its data and port; the proxy reconnects
                # by itself, and a route change made now reaches it.
                control = start_server(control.data_dir, port=control.port)
                mesh.set_route(route(0, 100))
                wait_for(lambda: client.get(url).json()["from"] == "v2", within=20.0)
                assert {client.get(url).json()["from"] for _ in range(10)} == {"v2"}
    finally:
        stop_server(control)


def _app_node(
    server: ServerProcess, sd: Any, name: str, listener: dict[str, Any]
) -> tuple[str, Any]:
    """A mesh with one node, ``api``, discovered through Cloud Map as ``api.<name>.local``."""
    appmesh = appmesh_client(server.url)
    namespace = f"{name}.local"
    ns_id = http_namespace(sd, namespace)
    sd.create_service(Name="api", NamespaceId=ns_id)
    appmesh.create_mesh(meshName=name)
    appmesh.create_virtual_node(
        meshName=name, virtualNodeName="api",
        spec={"listeners": [listener],
              "serviceDiscovery": {"awsCloudMap": {"namespaceName": namespace,
                                                   "serviceName": "api"}}},
    )  # fmt: skip
    return namespace, appmesh


def _instances(sd: Any, namespace: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = sd.discover_instances(NamespaceName=namespace, ServiceName="api")[
        "Instances"
    ]
    return found


def test_inbound_listener_registration_and_graceful_shutdown(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path
) -> None:
    namespace, _ = _app_node(server, sd, unique, {"portMapping": HTTP_8080})
    app_port = free_port()
    proxy = Sidecar(
        server.url, unique, "api", tmp_path, app_port=app_port, register=True,
        extra=("--instance-id", "api-1", "--drain-timeout", "5"),
    )  # fmt: skip
    app: Upstream | None = None
    try:
        # The sidecar starts before its app: it has its config but registers nothing yet.
        proxy.launch()
        time.sleep(0.5)
        assert _instances(sd, namespace) == []

        # The app comes up; the sidecar sees it answer and registers the instance, with the
        # inbound port (callers reach the app through its proxy).
        app = Upstream("app", port=app_port)
        wait_for(lambda: _instances(sd, namespace), within=10.0)
        (instance,) = _instances(sd, namespace)
        assert instance["InstanceId"] == "api-1"
        assert instance["Attributes"]["AWS_INSTANCE_PORT"] == str(proxy.inbound)

        # Requests to the inbound port reach the app.
        response = httpx.get(f"http://127.0.0.1:{proxy.inbound}/hello", timeout=5)
        assert (response.status_code, response.json()["from"]) == (200, "app")
        assert response.json()["path"] == "/hello"

        # A slow request is in flight when SIGTERM arrives.
        app.behaviour.delay = 1.5
        results: list[httpx.Response | Exception] = []

        def slow_call() -> None:
            try:
                results.append(httpx.get(f"http://127.0.0.1:{proxy.inbound}/slow", timeout=10))
            except httpx.HTTPError as exc:
                results.append(exc)

        served = app.behaviour.served
        caller = threading.Thread(target=slow_call)
        caller.start()
        wait_for(lambda: app is not None and app.behaviour.served > served, within=5.0)
        proxy.send_signal(signal.SIGTERM)

        # The instance is deregistered first, while the proxy is still draining...
        wait_for(lambda: _instances(sd, namespace) == [], within=1.0)
        assert proxy.process is not None and proxy.process.poll() is None

        # ...the request in flight completes, and then the proxy exits cleanly.
        caller.join(timeout=10)
        (result,) = results
        assert isinstance(result, httpx.Response), result
        assert (result.status_code, result.json()["path"]) == (200, "/slow")
        assert proxy.stop(within=10) == 0
    finally:
        proxy.stop()
        if app is not None:
            app.close()


def test_a_client_too_slow_to_send_its_body_gets_408(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path
) -> None:
    listener = {
        "portMapping": HTTP_8080,
        "timeout": {"http": {"perRequest": {"value": 500, "unit": "ms"}}},
    }
    _app_node(server, sd, unique, listener)
    app = Upstream("app")
    proxy = Sidecar(server.url, unique, "api", tmp_path, app_port=app.port)
    try:
        proxy.launch()

        # The client announces 100 bytes of body, sends 10, then goes quiet.
        with socket.create_connection(("127.0.0.1", proxy.inbound), timeout=3) as sock:
            sock.sendall(
                b"POST /upload HTTP/1.1\r\nHost: api\r\nContent-Length: 100\r\n\r\n0123456789"
            )
            started = time.monotonic()
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            waited = time.monotonic() - started

        # The listener's 500 ms request timeout answers 408 and closes the connection; the
        # app never saw a partial request.
        assert received.startswith(b"HTTP/1.1 408 "), received[:200]
        assert b"request timeout" in received
        assert 0.4 <= waited < 1.5, waited
        assert app.bodies == []

        # The next client is served.
        response = httpx.post(f"http://127.0.0.1:{proxy.inbound}/upload", content=b"x" * 100)
        assert response.status_code == 200
        assert app.bodies == [b"x" * 100]
    finally:
        proxy.stop()
        app.close()
