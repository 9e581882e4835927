"""Shared pieces of the sidecar scenario tests: real upstreams, a real mesh, a real proxy.

* :class:`Upstream` — an HTTP server on loopback whose answers the test controls (status,
  delay, a number of 503s first) and which can be killed like a crashed process;
* :func:`worker_mesh` — builds, through boto3, a mesh where a ``frontend`` node calls
  ``worker.<ns>``, a router splitting between ``worker-v1`` and ``worker-v2`` whose endpoints
  are Upstreams registered in Cloud Map, and starts the frontend's sidecar;
* :class:`Sidecar` — a ``mapmesh proxy`` subprocess that can be stopped, killed, restarted;
* :class:`Load` — a bounded load loop (a number of requests from a few threads, with a
  deadline) through the sidecar, recording every status and error;
* :func:`mesh_fixture` — the ``mesh`` fixture of ``test_sidecar.py`` (import it by name).
"""

from __future__ import annotations

import http
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from tests.integration.test_cloudmap_api import http_namespace
from tests.support import ServerProcess, free_port

__all__ = [
    "Behaviour",
    "Load",
    "LoadResult",
    "Mesh",
    "Sidecar",
    "Upstream",
    "appmesh_client",
    "hanging_listener",
    "mesh_fixture",
    "route",
    "wait_for",
    "worker_mesh",
]


@dataclass
class Behaviour:
    status: int = 200
    delay: float = 0.0
    fail_first: int = 0  # answer 503 to this many requests first
    stall_body: float = 0.0  # send the head and half the body, then stall this long
    served: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Upstream:
    """A real HTTP server whose answers the test controls.

    Each response (head and body) goes out in one write, so killing the server between
    requests never leaves a response half-sent. :meth:`kill` stops it like a crash: the
    listening socket and every open connection are closed at once.
    """

    def __init__(self, name: str, port: int = 0) -> None:
        self.name = name
        self.behaviour = Behaviour()
        self.bodies: list[bytes] = []
        behaviour, bodies = self.behaviour, self.bodies
        connections: set[socket.socket] = set()
        self._connections = connections

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                connections.add(self.connection)

            def finish(self) -> None:
                connections.discard(self.connection)
                super().finish()

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                bodies.append(self.rfile.read(length))
                self._answer()

            def _answer(self) -> None:
                with behaviour.lock:
                    behaviour.served += 1
                    failing = behaviour.fail_first > 0
                    if failing:
                        behaviour.fail_first -= 1
                if behaviour.delay:
                    time.sleep(behaviour.delay)
                status = 503 if failing else behaviour.status
                echoed = ("host", "traceparent", "x-request-id")
                answer = {"from": name, "path": self.path}
                answer.update({h: self.headers.get(h) for h in echoed})
                for extra in ("tracestate", "x-amzn-trace-id"):  # only when sent
                    if self.headers.get(extra) is not None:
                        answer[extra] = self.headers[extra]
                body = json.dumps(answer).encode()
                if behaviour.stall_body:
                    head = (f"HTTP/1.1 {status} OK\r\nContent-Length: {len(body)}\r\n\r\n"
                            .encode())  # fmt: skip
                    self.wfile.write(head + body[: len(body) // 2])
                    self.wfile.flush()
                    time.sleep(behaviour.stall_body)
                    self.close_connection = True
                    return
                self.wfile.write(
                    f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                    .encode() + body
                )  # fmt: skip

            def log_message(self, *args: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self._closed = False

    def kill(self) -> None:
        """Crash: stop accepting and cut every open connection."""
        self.close()
        for conn in list(self._connections):
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.server.shutdown()
            self.server.server_close()


def route(v1: int, v2: int, **extra: Any) -> dict[str, Any]:
    return {
        "httpRoute": {
            "match": {"prefix": "/"},
            "action": {
                "weightedTargets": [
                    {"virtualNode": "worker-v1", "weight": v1},
                    {"virtualNode": "worker-v2", "weight": v2},
                ]
            },
            **extra,
        }
    }


def wait_for(check: Callable[[], Any], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    pytest.fail("condition not met in time")


def appmesh_client(url: str) -> Any:
    return boto3.client(
        "appmesh", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id="x", aws_secret_access_key="x",
    )  # fmt: skip


class Sidecar:
    """A ``mapmesh proxy`` subprocess for one virtual node, on ports chosen up front (so a
    restart comes back on the same ones)."""

    def __init__(
        self,
        control_plane: str,
        mesh: str,
        node: str,
        workdir: Path,
        *,
        app_port: int | None = None,
        register: bool = False,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.control_plane = control_plane
        self.mesh = mesh
        self.node = node
        self.outbound, self.admin, self.inbound = free_port(), free_port(), free_port()
        self.app = app_port or free_port()
        self.workdir = workdir
        self.register = register
        self.extra = extra
        self.log_path = workdir / f"proxy-{node}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def args(self) -> list[str]:
        return [
            sys.executable, "-m", "mapmesh", "proxy", "--control-plane", self.control_plane,
            "--mesh", self.mesh, "--virtual-node", self.node, "--app-port", str(self.app),
            "--inbound-port", str(self.inbound), "--outbound-port", str(self.outbound),
            "--admin-port", str(self.admin), *(() if self.register else ("--no-register",)),
            "--access-log", str(self.workdir / f"access-{self.node}.log"),
            "--state-dir", str(self.workdir / "state"), *self.extra,
        ]  # fmt: skip

    def launch(self, within: float = 10.0) -> Sidecar:
        """Start and wait until ready. A port handed out by ``free_port`` can be taken by
        another socket before the proxy binds it; then it is tried again on fresh ports."""
        for _ in range(3):
            self.start()
            problem = self._wait_ready(within)
            if problem is None:
                return self
            if "cannot start the proxy" not in problem:
                pytest.fail(problem)
            self.process = None
            self.outbound, self.admin, self.inbound = free_port(), free_port(), free_port()
        pytest.fail(f"the proxy could not bind its ports:\n{self.log()}")

    def start(self) -> Sidecar:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.args, stdout=subprocess.DEVNULL, stderr=log,
                env={**os.environ, "MAPMESH_PROXY_SEED": "7"},
            )  # fmt: skip
        return self

    def wait_ready(self, within: float = 10.0) -> None:
        problem = self._wait_ready(within)
        if problem is not None:
            pytest.fail(problem)

    def _wait_ready(self, within: float) -> str | None:
        deadline = time.monotonic() + within
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return f"the proxy exited before it was ready:\n{self.log()}"
            try:
                answer = httpx.get(self.admin_url("/ready"), timeout=1)
                if answer.status_code == 200:
                    return None
                last = f"{answer.status_code} {answer.text}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.05)
        return f"the proxy was not ready in {within}s ({last}):\n{self.log()}"

    def admin_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.admin}{path}"

    def clusters(self) -> list[dict[str, Any]]:
        clusters: list[dict[str, Any]] = httpx.get(self.admin_url("/clusters")).json()["clusters"]
        return clusters

    def send_signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, within: float = 15.0) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(sig)
        try:
            return process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Mesh:
    """The worker mesh, seen from the frontend's sidecar."""

    name: str
    namespace: str
    upstreams: dict[str, list[Upstream]]
    proxy: Sidecar
    appmesh: Any
    sd: Any
    worker_service_id: str

    @property
    def v1(self) -> Upstream:
        return self.upstreams["v1"][0]

    @property
    def v2(self) -> Upstream:
        return self.upstreams["v2"][0]

    @property
    def outbound(self) -> int:
        return self.proxy.outbound

    @property
    def admin(self) -> int:
        return self.proxy.admin

    @property
    def service(self) -> str:
        return f"worker.{self.namespace}"

    def client(self, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(proxy=f"http://127.0.0.1:{self.outbound}", timeout=timeout)

    def set_route(self, spec: dict[str, Any]) -> None:
        self.appmesh.update_route(
            meshName=self.name, virtualRouterName="worker", routeName="split", spec=spec
        )

    def update_worker_listener(self, version: str, listener: dict[str, Any]) -> None:
        self.appmesh.update_virtual_node(
            meshName=self.name,
            virtualNodeName=f"worker-{version}",
            spec=_worker_spec(self.namespace, version, listener),
        )


def _worker_spec(namespace: str, version: str, listener: dict[str, Any]) -> dict[str, Any]:
    return {
        "listeners": [listener],
        "serviceDiscovery": {"awsCloudMap": {
            "namespaceName": namespace, "serviceName": "worker",
            "attributes": [{"key": "version", "value": version}]}},
    }  # fmt: skip


HTTP_8080 = {"port": 8080, "protocol": "http"}


@contextmanager
def worker_mesh(
    control_plane: str,
    sd: Any,
    name: str,
    workdir: Path,
    *,
    instances: dict[str, int] | None = None,
    listeners: dict[str, dict[str, Any]] | None = None,
    weights: tuple[int, int] = (90, 10),
    start_proxy: bool = True,
) -> Iterator[Mesh]:
    """The worker mesh on ``control_plane``, ``instances[version]`` Upstreams per version
    (registered with ``version=<v>``), each worker node with ``listeners[version]`` (default:
    plain http on 8080), and the frontend's sidecar started and ready."""
    appmesh = appmesh_client(control_plane)
    instances = instances or {"v1": 1, "v2": 1}
    listeners = listeners or {}
    namespace = f"{name}.local"
    ns_id = http_namespace(sd, namespace)
    worker_service = sd.create_service(Name="worker", NamespaceId=ns_id)["Service"]["Id"]
    upstreams: dict[str, list[Upstream]] = {}
    for version in ("v1", "v2"):
        for index in range(instances.get(version, 0)):
            upstream = Upstream(version if index == 0 else f"{version}-{index}")
            upstreams.setdefault(version, []).append(upstream)
            sd.register_instance(
                ServiceId=worker_service,
                InstanceId=f"worker-{upstream.name}",
                Attributes={"AWS_INSTANCE_IPV4": "127.0.0.1",
                            "AWS_INSTANCE_PORT": str(upstream.port), "version": version},
            )  # fmt: skip
    appmesh.create_mesh(meshName=name)
    for version in ("v1", "v2"):
        listener = listeners.get(version, {"portMapping": HTTP_8080})
        appmesh.create_virtual_node(
            meshName=name, virtualNodeName=f"worker-{version}",
            spec=_worker_spec(namespace, version, listener),
        )  # fmt: skip
    appmesh.create_virtual_node(
        meshName=name, virtualNodeName="frontend",
        spec={"backends": [{"virtualService": {"virtualServiceName": f"worker.{namespace}"}}]},
    )  # fmt: skip
    appmesh.create_virtual_router(
        meshName=name, virtualRouterName="worker", spec={"listeners": [{"portMapping": HTTP_8080}]}
    )
    appmesh.create_route(
        meshName=name, virtualRouterName="worker", routeName="split", spec=route(*weights)
    )
    appmesh.create_virtual_service(
        meshName=name, virtualServiceName=f"worker.{namespace}",
        spec={"provider": {"virtualRouter": {"virtualRouterName": "worker"}}},
    )  # fmt: skip
    proxy = Sidecar(control_plane, name, "frontend", workdir)
    mesh = Mesh(name, namespace, upstreams, proxy, appmesh, sd, worker_service)
    try:
        if start_proxy:
            proxy.launch()
        yield mesh
    finally:
        proxy.stop()
        for group in upstreams.values():
            for upstream in group:
                upstream.close()


@pytest.fixture(name="mesh")
def mesh_fixture(server: ServerProcess, sd: Any, unique: str, tmp_path: Path) -> Iterator[Mesh]:
    """The worker mesh split 90/10, each worker node limited to one connection and one
    pending request (so the breaker is easy to trip)."""
    pool = {"http": {"maxConnections": 1, "maxPendingRequests": 1}}
    listener = {"portMapping": HTTP_8080, "connectionPool": pool}
    with worker_mesh(
        server.url, sd, unique, tmp_path, listeners={"v1": listener, "v2": listener}
    ) as mesh:
        yield mesh


@dataclass
class LoadResult:
    completed: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    served_by: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)  # non-200 answers and client errors


class Load:
    """``total`` GETs through the sidecar from ``threads`` clients, stopping at ``within``
    seconds whatever happens; :meth:`wait_until` lets the test act part-way through."""

    def __init__(self, mesh: Mesh, total: int = 300, threads: int = 4, within: float = 20.0):
        self._mesh = mesh
        self._total = total
        self._deadline = time.monotonic() + within
        self._lock = threading.Lock()
        self._issued = 0
        self.result = LoadResult()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def _next(self) -> int | None:
        with self._lock:
            if self._issued >= self._total or time.monotonic() > self._deadline:
                return None
            self._issued += 1
            return self._issued

    def _run(self) -> None:
        with self._mesh.client(timeout=10.0) as client:
            while (number := self._next()) is not None:
                url = f"http://{self._mesh.service}/load/{number}"
                try:
                    response = client.get(url)
                except httpx.HTTPError as exc:
                    failure: str | None = f"#{number}: client error {exc!r}"
                    status, source = None, None
                else:
                    status = response.status_code
                    failure = None if status == 200 else f"#{number}: {status} {response.text}"
                    source = response.json().get("from") if status == 200 else None
                with self._lock:
                    self.result.completed += 1
                    if status is not None:
                        self.result.statuses[status] += 1
                    if source is not None:
                        self.result.served_by[source] += 1
                    if failure is not None:
                        self.result.failures.append(failure)

    def wait_until(self, completed: int) -> None:
        while self.result.completed < completed and time.monotonic() < self._deadline:
            time.sleep(0.005)

    def join(self) -> LoadResult:
        for thread in self._threads:
            thread.join(max(self._deadline - time.monotonic(), 0) + 11)
        assert not any(t.is_alive() for t in self._threads), "load threads did not finish"
        return self.result


@contextmanager
def hanging_listener(tries: int = 8) -> Iterator[int]:
    """A loopback port where a connect hangs, as to a host that never answers SYN.

    A socket listening with backlog 0 and never accepting holds one finished handshake in its
    accept queue; once that is full, Linux drops further SYNs, so connects neither succeed
    nor fail until the client gives up. The queue is filled here (bounded by ``tries``)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = int(server.getsockname()[1])
        for _ in range(tries):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            fillers.append(filler)
            filler.settimeout(0.2)
            try:
                filler.connect(("127.0.0.1", port))
            except TimeoutError:
                break  # the queue is full: connects to the port now hang
        else:
            pytest.skip("could not fill the accept queue; connects do not hang here")
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()
