"""Snapshot convergence: from one write to the moment N connected proxies hold its result.

What it does, for each ``--n`` (a fresh ``mapmesh server`` per N, pinned to ``--server-cpu``;
this process, pinned to ``--client-cpu``, is the writer *and* all N proxies):

1. builds the mesh with boto3. Shape: Cloud Map private DNS namespace ``corp`` with service
   ``worker`` (8 instances, ``version=v1|v2``) and service ``frontend``; mesh ``bench`` with
   nodes ``worker-v1``/``worker-v2`` (discovered by attribute), router ``worker`` whose route
   ``split`` sends 90/10 to them (retry policy, timeout), virtual service ``worker.corp`` on
   the router, and N/10 frontend nodes ``frontend-000``.. each with backend ``worker.corp``
   (listener with health check, connection pool, outlier detection, like the walkthrough);
2. connects N simulated sidecars: proxy ``i`` streams as ``frontend-{i mod N/10}``, so every
   frontend identity has 10 streams sharing one snapshot, and every write below changes all
   N/10 identities at once;
3. per round (``--rounds``), two writes, each sent as raw HTTP from this event loop (the same
   clock as the arrivals; boto3 in a thread would hold the GIL while lines arrive):
   * ``route`` — UpdateRoute (App Mesh REST-JSON) changing the split to a new weight;
   * ``register`` — RegisterInstance (Cloud Map JSON 1.1) of a new ``worker`` instance;
   and records, per proxy, when the first snapshot line holding the change arrived
   (``received``) and when the server answered that proxy's ``POST /v1/ack`` for it
   (``acked``: the server records the ack before it answers, so it is visible in
   ``/v1/proxies`` from then; checked once after each write, outside the timed window);
4. per write and N: per-proxy latency p50/p99/max over all rounds (N x rounds samples), the
   time until the *last* proxy had it (p50/p99/max over rounds; nearest rank, so with 10
   rounds p99 is the max), the server's CPU seconds (utime+stime from ``/proc/<pid>/stat``)
   between the write and the last ack, as a share of one core, and its RSS
   (``VmRSS``/``VmHWM`` from ``/proc/<pid>/status``) idle, with N streams, and at the end.

The proxies are asyncio Protocols on uvloop parsing chunked NDJSON with ``bytes.find`` (no
JSON decoding on the arrival path); each acknowledges every snapshot on a new connection, as
``mapmesh.proxy.config_watch`` does. This process's own garbage collector is frozen and
paused inside measured windows (it collects between writes), so its pauses are not
counted as the server's. Every wait has a deadline and the whole run is bounded
by ``--time-limit``; the server is stopped on exit, error, Ctrl-C and SIGTERM.

Run from the repository root: ``.venv/bin/python -m bench.convergence --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, cast

from bench import (
    Processes,
    cloudmap_client,
    core_busy_seconds,
    machine_info,
    pin_self,
    raise_on_sigterm,
    start_mapmesh,
    wait_for_quiet,
    wait_operation,
    write_result,
)
from bench.damon import add_flag, damon_paused

MESH, NAMESPACE, ROUTER, ROUTE = "bench", "corp", "worker", "split"
REPLICAS = 10  # streams per frontend identity
WORKER_INSTANCES = 8
HOST = "127.0.0.1"
_TICKS = os.sysconf("SC_CLK_TCK")
_SNAPSHOT = b'{"type":"snapshot","version":'

# -- the mesh -------------------------------------------------------------------------------


def _appmesh_client(url: str) -> Any:
    import boto3  # type: ignore[import-untyped]

    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    return boto3.client(
        "appmesh",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="AKIDBENCH",
        aws_secret_access_key="bench",
    )


def _listener() -> dict[str, Any]:
    return {
        "portMapping": {"port": 8080, "protocol": "http"},
        "healthCheck": {
            "protocol": "http", "path": "/health", "port": 8080, "intervalMillis": 5000,
            "timeoutMillis": 2000, "healthyThreshold": 2, "unhealthyThreshold": 3,
        },
        "connectionPool": {"http": {"maxConnections": 100, "maxPendingRequests": 50}},
        "outlierDetection": {
            "maxServerErrors": 5, "interval": {"unit": "s", "value": 10},
            "baseEjectionDuration": {"unit": "s", "value": 30}, "maxEjectionPercent": 50,
        },
    }  # fmt: skip


def _node(service: str, attributes: dict[str, str], backends: Sequence[str]) -> dict[str, Any]:
    discovery: dict[str, Any] = {"namespaceName": NAMESPACE, "serviceName": service}
    if attributes:
        discovery["attributes"] = [{"key": k, "value": v} for k, v in attributes.items()]
    return {
        "listeners": [_listener()],
        "serviceDiscovery": {"awsCloudMap": discovery},
        "backends": [{"virtualService": {"virtualServiceName": b}} for b in backends],
    }


def route_spec(v1: int) -> dict[str, Any]:
    return {
        "httpRoute": {
            "match": {"prefix": "/"},
            "action": {
                "weightedTargets": [
                    {"virtualNode": "worker-v1", "weight": v1},
                    {"virtualNode": "worker-v2", "weight": 100 - v1},
                ]
            },
            "retryPolicy": {
                "maxRetries": 2, "perRetryTimeout": {"unit": "s", "value": 2},
                "httpRetryEvents": ["server-error", "gateway-error"],
                "tcpRetryEvents": ["connection-error"],
            },
            "timeout": {"perRequest": {"unit": "s", "value": 5}},
        }
    }  # fmt: skip


def frontend_name(index: int) -> str:
    return f"frontend-{index:03d}"


def build_mesh(url: str, frontends: int) -> str:
    """Creates the registry and mesh described in the module docstring; returns worker's id."""
    sd, mesh = cloudmap_client(url), _appmesh_client(url)
    op = sd.create_private_dns_namespace(Name=NAMESPACE, Vpc="vpc-bench")["OperationId"]
    namespace_id = wait_operation(sd, op)["Targets"]["NAMESPACE"]
    dns = {"DnsRecords": [{"Type": "A", "TTL": 10}]}
    worker = sd.create_service(Name="worker", NamespaceId=namespace_id, DnsConfig=dns)
    sd.create_service(Name="frontend", NamespaceId=namespace_id, DnsConfig=dns)
    worker_id: str = worker["Service"]["Id"]
    for i in range(WORKER_INSTANCES):
        attributes = {"AWS_INSTANCE_IPV4": f"10.1.0.{i + 1}", "AWS_INSTANCE_PORT": "8080",
                      "version": f"v{i % 2 + 1}"}  # fmt: skip
        op = sd.register_instance(ServiceId=worker_id, InstanceId=f"w-{i}", Attributes=attributes)
        wait_operation(sd, op["OperationId"])
    mesh.create_mesh(meshName=MESH)
    for version in ("v1", "v2"):
        mesh.create_virtual_node(
            meshName=MESH,
            virtualNodeName=f"worker-{version}",
            spec=_node("worker", {"version": version}, []),
        )
    listener = {"portMapping": {"port": 8080, "protocol": "http"}}
    mesh.create_virtual_router(
        meshName=MESH, virtualRouterName=ROUTER, spec={"listeners": [listener]}
    )
    mesh.create_route(meshName=MESH, virtualRouterName=ROUTER, routeName=ROUTE, spec=route_spec(90))
    mesh.create_virtual_service(
        meshName=MESH,
        virtualServiceName=f"worker.{NAMESPACE}",
        spec={"provider": {"virtualRouter": {"virtualRouterName": ROUTER}}},
    )
    for k in range(frontends):
        mesh.create_virtual_node(
            meshName=MESH,
            virtualNodeName=frontend_name(k),
            spec=_node("frontend", {"app": frontend_name(k)}, [f"worker.{NAMESPACE}"]),
        )
    return worker_id


# -- raw HTTP (writes and reads from this event loop) ---------------------------------------


async def http_call(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One request on a new connection (``Connection: close``); (status, body)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 5.0)
    try:
        head = [
            f"{method} {path} HTTP/1.1",
            f"Host: {HOST}:{port}",
            "Connection: close",
            f"Content-Length: {len(body)}",
            *(f"{k}: {v}" for k, v in (headers or {}).items()),
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        raw = await asyncio.wait_for(reader.read(-1), 30.0)
    finally:
        writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    head_rest, _, payload = rest.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head_rest.lower():
        payload = _dechunk(payload)
    return int(status_line.split(b" ", 2)[1]), payload


def _dechunk(data: bytes) -> bytes:
    out, at = bytearray(), 0
    while True:
        end = data.index(b"\r\n", at)
        size = int(data[at:end].split(b";", 1)[0], 16)
        if size == 0:
            return bytes(out)
        out += data[end + 2 : end + 2 + size]
        at = end + 4 + size


@dataclass(frozen=True)
class Write:
    """One measured write: how to send it and the bytes that prove a snapshot reflects it."""

    kind: str  # "route" | "register"
    method: str
    path: str
    body: bytes
    headers: dict[str, str]
    marker: bytes


def route_write(round_: int) -> Write:
    weight = 89 - round_  # distinct per round, two digits, never the v2 weight
    body = {"spec": route_spec(weight), "clientToken": str(uuid.uuid4())}
    return Write(
        "route",
        "PUT",
        f"/v20190125/meshes/{MESH}/virtualRouter/{ROUTER}/routes/{ROUTE}",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
        b'"weight":%d' % weight,
    )


def register_write(round_: int, n: int, worker_id: str) -> Write:
    address = f"10.77.{round_ + 1}.{n % 250 + 1}"
    body = {
        "ServiceId": worker_id,
        "InstanceId": f"bench-{n}-{round_}",
        "Attributes": {"AWS_INSTANCE_IPV4": address, "AWS_INSTANCE_PORT": "8080",
                       "version": f"v{round_ % 2 + 1}"},
    }  # fmt: skip
    return Write(
        "register",
        "POST",
        "/",
        json.dumps(body).encode(),
        {"Content-Type": "application/x-amz-json-1.1",
         "X-Amz-Target": "Route53AutoNaming_v20170314.RegisterInstance"},
        f'"{address}"'.encode(),
    )  # fmt: skip


# -- the simulated proxies -------------------------------------------------------------------


@dataclass
class Armed:
    """What the fleet is waiting for during one measured write."""

    marker: bytes
    t0: float
    received: list[float | None]
    acked: list[float | None]
    n_received: int = 0
    n_acked: int = 0
    lines: int = 0  # snapshot lines that arrived in the window, all proxies
    done: asyncio.Event = field(default_factory=asyncio.Event)


class StreamProxy(asyncio.Protocol):
    """One sidecar's ``GET /v1/stream``: chunked NDJSON in, snapshot versions out."""

    def __init__(self, fleet: Fleet, index: int, node: str) -> None:
        self.fleet, self.index, self.node = fleet, index, node
        self.instance = f"{node}-{index}"
        self.version = 0
        self.closed: str | None = None
        self._transport: asyncio.Transport | None = None
        self._head_done = False
        self._buffer = bytearray()
        self._lines = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self._transport = cast(asyncio.Transport, transport)
        query = f"mesh={MESH}&virtualNode={self.node}&instance={self.instance}&version=0"
        self._transport.write(
            f"GET /v1/stream?{query} HTTP/1.1\r\nHost: {HOST}\r\n"
            "Accept: application/x-ndjson\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self._buffer += data
        if not self._head_done:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end]).lower()
            if not head.startswith(b"http/1.1 200") or b"transfer-encoding: chunked" not in head:
                self._fail(head.split(b"\r\n", 1)[0].decode(errors="replace"))
                return
            del self._buffer[: end + 4]
            self._head_done = True
        self._read_chunks()
        while (newline := self._lines.find(b"\n")) >= 0:
            line = bytes(self._lines[:newline])
            del self._lines[: newline + 1]
            if line.startswith(_SNAPSHOT):
                start = len(_SNAPSHOT)
                self.version = int(line[start : line.index(b",", start)])
                self.fleet.on_snapshot(self, line, now)

    def _read_chunks(self) -> None:
        buffer = self._buffer
        while (end := buffer.find(b"\r\n")) >= 0:
            size = int(bytes(buffer[:end]).split(b";", 1)[0], 16)
            if len(buffer) < end + 4 + size:
                return
            if size == 0:
                self._fail("stream ended")
                return
            self._lines += buffer[end + 2 : end + 2 + size]
            del buffer[: end + 4 + size]

    def _fail(self, reason: str) -> None:
        self.closed = reason
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = self.closed or f"connection lost: {exc}"

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class AckProtocol(asyncio.Protocol):
    """``POST /v1/ack`` on its own connection; ``answered`` resolves to the status."""

    def __init__(self, request: bytes, answered: asyncio.Future[int]) -> None:
        self._request, self._answered = request, answered
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if b"\r\n" in self._buffer and not self._answered.done():
            self._answered.set_result(int(self._buffer.split(b" ", 2)[1]))
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._answered.done():
            self._answered.set_exception(ConnectionError(f"ack connection lost: {exc}"))


class Fleet:
    """N stream proxies in this process; records arrivals and acks of the armed write."""

    def __init__(self, port: int, n: int, frontends: int, ack: bool) -> None:
        self.port, self.ack = port, ack
        self.proxies = [StreamProxy(self, i, frontend_name(i % frontends)) for i in range(n)]
        self.armed: Armed | None = None
        self.acks_in_flight = 0
        self.ack_failures = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def connect(self, timeout: float, batch: int = 50) -> float:
        """Opens every stream and waits for every first snapshot (and its ack); seconds."""
        loop, start = asyncio.get_running_loop(), time.monotonic()
        for first in range(0, len(self.proxies), batch):
            group = self.proxies[first : first + batch]
            await asyncio.gather(
                *(loop.create_connection(lambda p=p: p, HOST, self.port) for p in group)  # type: ignore[misc]
            )
        await self.until(lambda: all(p.version for p in self.proxies) and not self.acks_in_flight,
                         timeout, "first snapshots")  # fmt: skip
        return time.monotonic() - start

    async def until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if broken := [p for p in self.proxies if p.closed]:
                raise RuntimeError(f"{len(broken)} streams closed, e.g. {broken[0].closed}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not done in {timeout:.0f}s")
            await asyncio.sleep(0.01)

    def arm(self, marker: bytes) -> Armed:
        n = len(self.proxies)
        self.armed = Armed(marker, time.monotonic(), [None] * n, [None] * n)
        return self.armed

    def on_snapshot(self, proxy: StreamProxy, line: bytes, now: float) -> None:
        armed, hit = self.armed, False
        if armed is not None:
            armed.lines += 1
            if armed.received[proxy.index] is None and armed.marker in line:
                armed.received[proxy.index] = now - armed.t0
                armed.n_received += 1
                hit = True
        if self.ack:
            task = asyncio.ensure_future(
                self._acknowledge(proxy, proxy.version, armed if hit else None)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif armed is not None and armed.n_received == len(self.proxies):
            armed.done.set()

    async def _acknowledge(self, proxy: StreamProxy, version: int, armed: Armed | None) -> None:
        ack = {"mesh": MESH, "virtualNode": proxy.node, "instance": proxy.instance,
               "version": version, "accepted": True, "error": None}  # fmt: skip
        body = json.dumps(ack).encode()
        request = (
            f"POST /v1/ack HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[int] = loop.create_future()
        self.acks_in_flight += 1
        try:
            await loop.create_connection(lambda: AckProtocol(request, answered), HOST, self.port)
            status = await asyncio.wait_for(answered, 10.0)
            if status != 204:
                raise ConnectionError(f"ack answered {status}")
        except (OSError, TimeoutError):
            self.ack_failures += 1
            return
        finally:
            self.acks_in_flight -= 1
        if armed is not None:
            armed.acked[proxy.index] = time.monotonic() - armed.t0
            armed.n_acked += 1
            if armed.n_acked == len(self.proxies):
                armed.done.set()

    def close(self) -> None:
        for proxy in self.proxies:
            proxy.close()


# -- the server process ------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid`` so far (``/proc/<pid>/stat``, clock ticks)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def run_seconds(pid: int) -> float:
    """Time every thread of ``pid`` has run, from the scheduler (ns; ``stat`` has 10 ms ticks)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError, ValueError):
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
    return total / 1e9


def memory_mb(pid: int) -> dict[str, float]:
    """``VmRSS`` and ``VmHWM`` (peak RSS) of ``pid`` in MiB."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) / 1024
    return found


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- measuring ---------------------------------------------------------------------------


@dataclass
class WriteResult:
    kind: str
    round: int
    api_status: int
    api_ms: float
    received_ms: list[float]  # per proxy that got it, ms after the write was sent
    acked_ms: list[float]
    missing: int  # proxies that did not get it before the timeout
    window_s: float  # write sent → last ack (or last arrival without acks)
    server_cpu_s: float  # utime+stime, /proc/<pid>/stat
    server_run_s: float  # the same from schedstat, ns resolution
    client_cpu_s: float
    server_core_other_s: float  # anything else that ran on the server's core (noise)
    lines_per_proxy: float  # snapshot lines each proxy got in the window (1.0 = no extras)
    compiles: int  # snapshot compiles the hub did for this write
    pushes: int  # new snapshot versions it produced
    acks_visible: int  # streams whose ack of the new version /v1/proxies shows


async def proxies_status(port: int) -> dict[str, Any]:
    status, body = await http_call(port, "GET", "/v1/proxies")
    if status != 200:
        raise RuntimeError(f"/v1/proxies answered {status}")
    result: dict[str, Any] = json.loads(body)
    return result


def acks_visible(status: dict[str, Any], fleet: Fleet, armed: Armed) -> int:
    """Streams whose ack (as /v1/proxies shows it) is at least the version they received."""
    want = {p.instance: p.version for p, t in zip(fleet.proxies, armed.received, strict=True) if t}
    return sum(
        1
        for proxy in status["proxies"]
        for ack in proxy["acks"]
        if ack["accepted"] and ack["instance"] in want and ack["version"] >= want[ack["instance"]]
    )


async def measure(
    fleet: Fleet, server_pid: int, server_cpu: int, write: Write, round_: int, timeout: float
) -> WriteResult:
    before = (await proxies_status(fleet.port))["statistics"]
    armed = fleet.arm(write.marker)  # t0: just before the request leaves
    cpu0, self0, core0 = cpu_seconds(server_pid), self_cpu_seconds(), core_busy_seconds(server_cpu)
    run0 = run_seconds(server_pid)
    api_status, _ = await http_call(fleet.port, write.method, write.path, write.body, write.headers)
    api_ms = (time.monotonic() - armed.t0) * 1000
    with contextlib.suppress(TimeoutError):  # counted as missing proxies
        await asyncio.wait_for(armed.done.wait(), timeout)
    window = time.monotonic() - armed.t0
    cpu1, self1, core1 = cpu_seconds(server_pid), self_cpu_seconds(), core_busy_seconds(server_cpu)
    run1 = run_seconds(server_pid)
    fleet.armed = None
    await fleet.until(lambda: not fleet.acks_in_flight, 15.0, "acks in flight")
    status = await proxies_status(fleet.port)
    after = status["statistics"]
    received = [t * 1000 for t in armed.received if t is not None]
    return WriteResult(
        kind=write.kind,
        round=round_,
        api_status=api_status,
        api_ms=api_ms,
        received_ms=received,
        acked_ms=[t * 1000 for t in armed.acked if t is not None],
        missing=len(fleet.proxies) - len(received),
        window_s=window,
        server_cpu_s=cpu1 - cpu0,
        server_run_s=run1 - run0,
        client_cpu_s=self1 - self0,
        server_core_other_s=max(0.0, core1 - core0 - (cpu1 - cpu0)),
        lines_per_proxy=armed.lines / len(fleet.proxies),
        compiles=after["compiles"] - before["compiles"],
        pushes=after["pushes"] - before["pushes"],
        acks_visible=acks_visible(status, fleet, armed),
    )


@dataclass(frozen=True)
class Settings:
    rounds: int
    timeout: float
    gap: float
    ack: bool
    server_cpu: int
    client_cpu: int
    wait_quiet: float


async def run_fleet(
    port: int, server_pid: int, n: int, worker_id: str, settings: Settings
) -> dict[str, Any]:
    frontends = max(1, n // REPLICAS)
    fleet = Fleet(port, n, frontends, settings.ack)
    memory: dict[str, dict[str, float]] = {"idle": memory_mb(server_pid)}
    try:
        connect_s = await fleet.connect(timeout=max(60.0, n / 10))
        gc.collect()
        gc.freeze()  # boto3 and the fleet: keep them out of this process's collections
        gc.disable()
        memory["connected"] = memory_mb(server_pid)
        snapshot_bytes = await _snapshot_size(port)
        results: list[WriteResult] = []
        for round_ in range(settings.rounds):
            for write in (route_write(round_), register_write(round_, n, worker_id)):
                if settings.wait_quiet:
                    await asyncio.to_thread(
                        wait_for_quiet, [settings.server_cpu, settings.client_cpu],
                        settings.wait_quiet,
                    )  # fmt: skip
                await asyncio.sleep(settings.gap)
                gc.collect()  # this process collects between writes, never inside a window
                result = await measure(
                    fleet, server_pid, settings.server_cpu, write, round_, settings.timeout
                )
                results.append(result)
                print(_progress(n, result), flush=True)
        memory["after"] = memory_mb(server_pid)
    finally:
        gc.enable()
        gc.unfreeze()
        fleet.close()
    return {
        "n": n,
        "frontend_identities": frontends,
        "streams_per_identity": REPLICAS,
        "connect_s": connect_s,
        "snapshot_line_bytes": snapshot_bytes,
        "ack_failures": fleet.ack_failures,
        "memory_mb": memory,
        "writes": [r.__dict__ for r in results],
        "summary": {kind: summarize([r for r in results if r.kind == kind], n)
                    for kind in ("route", "register")},
    }  # fmt: skip


async def _snapshot_size(port: int) -> int:
    """Bytes of one frontend's snapshot line, read once from a short-lived stream."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        query = f"mesh={MESH}&virtualNode={frontend_name(0)}&instance=size-probe"
        writer.write(f"GET /v1/stream?{query} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5.0)
        return int(size_line.split(b";", 1)[0], 16)
    finally:
        writer.close()


# -- summarizing -------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "p99": percentile(values, 99),
            "max": max(values, default=0.0)}  # fmt: skip


def summarize(results: Sequence[WriteResult], n: int) -> dict[str, Any]:
    complete = [r for r in results if not r.missing]
    window = sum(r.window_s for r in results)
    server_cpu = sum(r.server_cpu_s for r in results)
    return {
        "writes": len(results),
        "incomplete_writes": len(results) - len(complete),
        "api_ms": _spread([r.api_ms for r in results]),
        "received_ms": _spread([t for r in results for t in r.received_ms]),
        "last_received_ms": _spread([max(r.received_ms) for r in complete]),
        "acked_ms": _spread([t for r in results for t in r.acked_ms]),
        "last_acked_ms": _spread([max(r.acked_ms) for r in complete if len(r.acked_ms) == n]),
        "server_cpu_s_per_write": server_cpu / max(1, len(results)),
        "server_run_s_per_write": sum(r.server_run_s for r in results) / max(1, len(results)),
        "server_core_share": (sum(r.server_run_s for r in results) / window if window else 0.0),
        "server_core_share_stat": server_cpu / window if window else 0.0,
        "client_core_share": sum(r.client_cpu_s for r in results) / window if window else 0.0,
        "server_core_other_share": (
            sum(r.server_core_other_s for r in results) / window if window else 0.0
        ),
        "window_s_mean": window / max(1, len(results)),
        "lines_per_proxy_mean": sum(r.lines_per_proxy for r in results) / max(1, len(results)),
        "compiles_per_write": sum(r.compiles for r in results) / max(1, len(results)),
        "pushes_per_write": sum(r.pushes for r in results) / max(1, len(results)),
        "acks_visible_min": min((r.acks_visible for r in results), default=0),
    }


def _progress(n: int, r: WriteResult) -> str:
    last = max(r.received_ms, default=0.0)
    return (
        f"  N={n:<5} round {r.round:<2} {r.kind:<8} api {r.api_ms:6.1f} ms  "
        f"p50 {percentile(r.received_ms, 50):7.1f}  last {last:7.1f}  "
        f"last ack {max(r.acked_ms, default=0.0):7.1f} ms  missing {r.missing}  "
        f"srv cpu {r.server_cpu_s:.2f} s  pushes {r.pushes}  acks visible {r.acks_visible}"
    )


def table(runs: Sequence[dict[str, Any]]) -> str:
    header = (
        f"{'N':>5} {'write':<8} {'recv p50':>8} {'p99':>7} {'max':>7} {'last p50':>8} "
        f"{'p99':>7} {'max':>7} {'ack p50':>7} {'last ack':>8} {'api p50':>7} "
        f"{'cpu s/w':>7} {'run s/w':>7} {'srv cpu':>7} {'RSS MB':>6}"
    )
    lines = [header, "-" * len(header)]
    for run in runs:
        rss = run["memory_mb"].get("after", {}).get("VmRSS", 0.0)
        for kind, s in run["summary"].items():
            lines.append(
                f"{run['n']:>5} {kind:<8} {s['received_ms']['p50']:8.1f} "
                f"{s['received_ms']['p99']:7.1f} {s['received_ms']['max']:7.1f} "
                f"{s['last_received_ms']['p50']:8.1f} {s['last_received_ms']['p99']:7.1f} "
                f"{s['last_received_ms']['max']:7.1f} {s['acked_ms']['p50']:7.1f} "
                f"{s['last_acked_ms']['p50']:8.1f} {s['api_ms']['p50']:7.1f} "
                f"{s['server_cpu_s_per_write']:7.3f} {s['server_run_s_per_write']:7.3f} "
                f"{s['server_core_share']:6.0%} {rss:6.0f}"
            )
    lines.append(
        "(ms after the write was sent; 'last' = the last of the N proxies, per write; 'cpu s/w' ="
        " server utime+stime per write (10 ms ticks), 'run s/w' = the same from schedstat (ns);"
        " 'srv cpu' = run s/w over the window, one core = 100%; RSS at the end)"
    )
    return "\n".join(lines)


# -- orchestration -----------------------------------------------------------------------


def raise_fd_limit(n: int) -> int:
    """Streams + ack connections in flight, here and in the server (which inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * n + 512
    if soft < want:
        soft = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft < want:
        sys.exit(f"open-file limit {soft} is below the {want} that N={n} needs (raise ulimit -n)")
    return soft


def run_async(main: Callable[[], Coroutine[Any, Any, dict[str, Any]]]) -> dict[str, Any]:
    try:
        import uvloop

        return uvloop.run(main())
    except ImportError:
        return asyncio.run(main())


def one_n(processes: Processes, temp: Path, n: int, settings: Settings) -> dict[str, Any]:
    data_dir = temp / f"n{n}" / "data"
    server, port, _ = start_mapmesh(processes, data_dir, cpu=settings.server_cpu)
    url = f"http://{HOST}:{port}"
    started = time.monotonic()
    worker_id = build_mesh(url, max(1, n // REPLICAS))
    print(f"N={n}: mesh built in {time.monotonic() - started:.1f} s; connecting...", flush=True)
    try:
        result = run_async(lambda: run_fleet(port, server.pid, n, worker_id, settings))
    finally:
        server.check_alive()
    result["server_log_tail"] = server.log_tail(10)
    processes.stop_all()
    return result


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise TimeoutError("--time-limit reached")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.convergence",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--n", type=int, nargs="+", default=[100, 1000], help="connected proxies")
    p.add_argument("--rounds", type=int, default=10, help="writes of each kind per N (max 39)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds one write may take")
    p.add_argument("--gap", type=float, default=0.5, help="idle seconds before each write")
    p.add_argument("--no-ack", action="store_true", help="proxies do not POST /v1/ack")
    p.add_argument("--server-cpu", type=int, default=0, help="core the server is pinned to")
    p.add_argument("--client-cpu", type=int, default=1, help="core the proxies/writer run on")
    p.add_argument("--wait-quiet", type=float, default=0.0,
                   help="wait up to S seconds for idle cores before each write")  # fmt: skip
    p.add_argument("--time-limit", type=int, default=1200, help="seconds for the whole run")
    p.add_argument("--json-out", type=Path, help="write JSON here (default bench/results/)")
    p.add_argument("--keep-temp", action="store_true", help="keep the temp dir (server logs)")
    add_flag(p)
    args = p.parse_args(argv)
    if not 1 <= args.rounds <= 39:
        p.error("--rounds must be 1..39 (route weights stay distinct per round)")
    if min(args.n) < 1:
        p.error("--n must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    settings = Settings(args.rounds, args.timeout, args.gap, not args.no_ack,
                        args.server_cpu, args.client_cpu, args.wait_quiet)  # fmt: skip
    raise_on_sigterm()
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(args.time_limit)
    fd_limit = raise_fd_limit(max(args.n))
    pin_self(args.client_cpu)
    temp = Path(tempfile.mkdtemp(prefix="mapmesh-convergence-"))
    runs: list[dict[str, Any]] = []
    try:
        with damon_paused(args.keep_damon) as damon, Processes() as processes:
            for n in args.n:
                runs.append(one_n(processes, temp, n, settings))
    finally:
        signal.alarm(0)
        if not args.keep_temp:
            import shutil

            shutil.rmtree(temp, ignore_errors=True)
        else:
            print(f"kept {temp}")
    print(table(runs))
    result = {
        "benchmark": "convergence",
        "settings": {**settings.__dict__, "fd_limit": fd_limit, "replicas": REPLICAS,
                     "worker_instances": WORKER_INSTANCES},
        "machine": machine_info({}, damon),
        "runs": runs,
    }  # fmt: skip
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        print(f"wrote {args.json_out}")
    else:
        print(f"wrote {write_result('convergence', result)}")


if __name__ == "__main__":
    main()
