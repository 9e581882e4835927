"""The sidecar's data path against HAProxy 2.6 and nginx as proxies, and against no proxy.

What it does, in order:

1. starts an upstream: nginx, one worker, answering ``GET /`` with a 23-byte ``return 200``
   body over keep-alive, pinned to ``--upstream-cpu`` (default: the proxy core, so the
   proxy and the app it fronts share a core and the load generator has the other one);
2. starts ``mapmesh server`` (pinned to the client core; it is idle during the load) and
   registers with boto3 a Cloud Map HTTP namespace ``bench.local``, service ``worker`` with
   one instance (the upstream), and an App Mesh mesh: virtual node ``worker`` (Cloud Map
   discovery), router ``worker`` with one prefix ``/`` route, virtual service
   ``worker.bench.local``, and virtual node ``frontend`` with that backend;
3. starts the four proxies, each pinned to ``--proxy-cpu`` and each keeping keep-alive
   connections to the upstream: HAProxy (``nbthread 1``, ``http-reuse always``), nginx
   (1 worker, ``proxy_http_version 1.1``, an ``upstream`` block with ``keepalive``), the
   design's anchor ``minimal`` (:mod:`bench.minimal_proxy`: the least a forwarder does with
   uvloop and httptools, so the sidecar's figures can be read against what that floor
   reaches in the same run) and ``mapmesh proxy`` for ``frontend`` (its outbound port,
   ``Host: worker.bench.local``); checks that every one returns the upstream's body;
4. memory: RSS (and PSS) of each proxy idle, with ``--idle-connections`` open keep-alive
   connections that have each made one request, and after they close;
5. throughput: ``wrk -t 1`` (pinned to ``--client-cpu``) at each ``--connections`` count
   against ``direct`` (the upstream itself) and each proxy, ``--rounds`` rounds with a
   rotating order. The proxy's CPU time (scheduler run time of its process tree) during
   each run gives requests per proxy CPU-second, and the ratio of that to HAProxy's;
6. latency at fixed rates (``--rates``): wrk2 is not in Debian, so a small open-loop load
   generator in this file (asyncio + uvloop + httptools, its own process on the client
   core, ``fixed-rate`` sub-command) sends requests on a fixed schedule over keep-alive
   connections and measures each from its *scheduled* send time (no coordinated omission);
   when the high rate is more than some target can sustain, the highest rate every target
   sustained in step 5 (times ``--sustain-fraction``) is measured as well;
7. ready time: from just before exec to the first 200 *through* the proxy (and to admin
   ``/ready`` 200), for a cold sidecar (snapshot from the control plane), a warm one
   (``--state-dir`` holding the last snapshot) and a warm one whose control plane is
   unreachable; HAProxy and nginx for comparison, and the Python floor (``python -c pass``
   and importing the proxy's modules);
8. profile (``--profile-seconds``, 0 skips it): perf samples each proxy in turn under wrk
   and then at the highest fixed rate (:mod:`bench.cpu_profile`): µs per request in the
   kernel, CPython, the compiled modules, httptools, uvloop and libc, and the sidecar's
   busiest symbols;
9. prints the tables and the targets met or missed, and writes
   ``bench/results/proxy-<time>.json``.

Run from the repository root: ``.venv/bin/python -m bench.proxy --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import (
    IdleGroup,
    Processes,
    Spawned,
    child_cpu_seconds,
    cloudmap_client,
    compile_sources,
    core_busy_seconds,
    cpu_profile,
    free_port,
    machine_info,
    median,
    pin_self,
    raise_on_sigterm,
    require_tools,
    start_mapmesh,
    temp_dir,
    tree_cpu_seconds,
    wait_for_quiet,
    wait_operation,
    write_result,
)
from bench.damon import add_flag, damon_paused

MESH = "bench"
NAMESPACE = "bench.local"
SERVICE = "worker"
HOST = f"{SERVICE}.{NAMESPACE}"
BODY = b"hello from the upstream"  # nginx `return 200 "..."`, 23 bytes
PROXIES = ("haproxy", "nginx", "minimal", "mapmesh")
TARGETS = ("direct", *PROXIES)
VARIANT = "mapmesh-variant"  # a second sidecar with --variant-arg flags (latency runs only)
READY_TARGET_MS = 300.0

# The targets; ratios are mapmesh/HAProxy measured in the same run.
TARGET_RPS_PER_CPU = 0.5
STRETCH_RPS_PER_CPU = 0.65
TARGET_ADDED_P50_MS = 0.2
TARGET_ADDED_P99_MS = 1.0
TARGET_P99_HIGH_RATIO = 1.5
TARGET_RSS_IDLE_MB = 40.0
TARGET_RSS_CONNS_MB = 64.0

# wrk's done() hook prints one machine-readable line; latencies are in microseconds.
_WRK_SCRIPT = (
    f'wrk.headers["Host"] = "{HOST}"\n'
    + """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\\"requests\\":%d,\\"duration_us\\":%d,"
    .. "\\"connect_errors\\":%d,\\"read_errors\\":%d,\\"write_errors\\":%d,"
    .. "\\"status_errors\\":%d,\\"timeouts\\":%d,"
    .. "\\"p50_us\\":%d,\\"p99_us\\":%d,\\"max_us\\":%d}\\n",
    summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""
)


# -- configuration files ----------------------------------------------------------------------


def _nginx_common(workdir: Path, name: str) -> str:
    temp = workdir / f"{name}-temp"
    temp.mkdir(parents=True, exist_ok=True)
    paths = "".join(
        f"  {kind}_temp_path {temp / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        "worker_processes 1;\n"
        "daemon off;\n"
        f"pid {workdir / name}.pid;\n"
        f"error_log {workdir / name}-error.log warn;\n"
        "worker_rlimit_nofile 20000;\n"
        "events { worker_connections 8192; }\n"
        "http {\n"
        "  access_log off;\n"
        f"{paths}"
        "  keepalive_requests 100000000;\n"
        "  keepalive_timeout 300s;\n"
    )


def upstream_conf(workdir: Path, port: int) -> str:
    return (
        _nginx_common(workdir, "upstream") + "  default_type text/plain;\n"
        f"  server {{\n    listen 127.0.0.1:{port} backlog=4096;\n"
        f'    location / {{ return 200 "{BODY.decode()}"; }}\n  }}\n}}\n'
    )


def nginx_proxy_conf(workdir: Path, port: int, upstream_port: int, name: str) -> str:
    return (
        _nginx_common(workdir, name) + "  upstream app {\n"
        f"    server 127.0.0.1:{upstream_port};\n"
        "    keepalive 1024;\n"
        "    keepalive_requests 100000000;\n"
        "    keepalive_timeout 300s;\n"
        "  }\n"
        f"  server {{\n    listen 127.0.0.1:{port} backlog=4096;\n"
        "    location / {\n"
        "      proxy_pass http://app;\n"
        "      proxy_http_version 1.1;\n"
        '      proxy_set_header Connection "";\n'
        "    }\n  }\n}\n"
    )


def haproxy_conf(port: int, upstream_port: int) -> str:
    return (
        "global\n"
        "  nbthread 1\n"
        "  maxconn 8000\n"
        "defaults\n"
        "  mode http\n"
        "  timeout connect 5s\n"
        "  timeout client 300s\n"
        "  timeout server 300s\n"
        "  timeout http-keep-alive 300s\n"
        "  http-reuse always\n"
        "frontend fe\n"
        f"  bind 127.0.0.1:{port}\n"
        "  default_backend app\n"
        "backend app\n"
        f"  server up 127.0.0.1:{upstream_port}\n"
    )


# -- raw HTTP probes (the benchmark's own checks; not on the measured path) ------------------


def http_get(
    port: int, path: str = "/", host: str = HOST, timeout: float = 2.0
) -> tuple[int, bytes]:
    """One ``GET`` on a new connection: (status, body); (0, b"") when nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
            )
            return _read_response(sock)
    except OSError:
        return 0, b""


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = next(
        (
            int(v)
            for k, _, v in (x.partition(b":") for x in lines[1:])
            if k.strip().lower() == b"content-length"
        ),
        None,
    )
    while length is not None and len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, body[:length] if length is not None else body


# -- processes --------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    port: int
    process: Spawned
    admin_port: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid


def wait_http_200(port: int, process: Spawned, timeout: float = 20.0, path: str = "/") -> None:
    deadline = time.monotonic() + timeout
    while True:
        status, body = http_get(port, path)
        if status == 200:
            return
        process.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{process.name} did not answer 200 on {port}{path} in {timeout:.0f}s "
                f"(last {status} {body[:200]!r}):\n{process.log_tail()}"
            )
        time.sleep(0.05)


def start_nginx(processes: Processes, workdir: Path, name: str, conf: str, cpu: int) -> Spawned:
    path = workdir / f"{name}.conf"
    path.write_text(conf)
    argv = ["nginx", "-c", str(path), "-p", str(workdir), "-e", str(workdir / f"{name}-error.log")]
    return processes.spawn(name, argv, workdir / f"{name}.log", cpu=cpu)


def start_haproxy(
    processes: Processes, workdir: Path, name: str, port: int, upstream: int, cpu: int
) -> Spawned:
    path = workdir / f"{name}.cfg"
    path.write_text(haproxy_conf(port, upstream))
    return processes.spawn(
        name, ["haproxy", "-db", "-f", str(path)], workdir / f"{name}.log", cpu=cpu
    )


def sidecar_argv(api_url: str, outbound: int, admin: int, state_dir: Path | None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mapmesh",
        "proxy",
        "--control-plane",
        api_url,
        "--mesh",
        MESH,
        "--virtual-node",
        "frontend",
        "--app-port",
        str(free_port()),
        "--inbound-port",
        str(free_port()),
        "--outbound-port",
        str(outbound),
        "--admin-port",
        str(admin),
        "--no-register",
        "--log-level",
        "warning",
        *(["--state-dir", str(state_dir)] if state_dir is not None else []),
        *SIDECAR_ARGS,
    ]


SIDECAR_ARGS: list[str] = []  # --sidecar-arg: extra flags for the sidecar under test


def appmesh_client(url: str) -> Any:
    import boto3  # type: ignore[import-untyped]

    return boto3.client(
        "appmesh",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="AKIDBENCH",
        aws_secret_access_key="bench",
    )


def seed(api_url: str, upstream_port: int) -> None:
    """Cloud Map namespace/service/instance and the App Mesh resources the sidecar needs."""
    sd = cloudmap_client(api_url)
    op = sd.create_http_namespace(Name=NAMESPACE)["OperationId"]
    namespace_id = wait_operation(sd, op)["Targets"]["NAMESPACE"]
    service_id = sd.create_service(Name=SERVICE, NamespaceId=namespace_id)["Service"]["Id"]
    op = sd.register_instance(
        ServiceId=service_id,
        InstanceId="nginx-1",
        Attributes={"AWS_INSTANCE_IPV4": "127.0.0.1", "AWS_INSTANCE_PORT": str(upstream_port)},
    )["OperationId"]
    wait_operation(sd, op)
    am = appmesh_client(api_url)
    http8080 = [{"portMapping": {"port": 8080, "protocol": "http"}}]
    am.create_mesh(meshName=MESH)
    am.create_virtual_node(
        meshName=MESH,
        virtualNodeName=SERVICE,
        spec={
            "listeners": http8080,
            "serviceDiscovery": {
                "awsCloudMap": {"namespaceName": NAMESPACE, "serviceName": SERVICE}
            },
        },
    )
    am.create_virtual_router(meshName=MESH, virtualRouterName=SERVICE, spec={"listeners": http8080})
    am.create_route(
        meshName=MESH,
        virtualRouterName=SERVICE,
        routeName="all",
        spec={
            "httpRoute": {
                "match": {"prefix": "/"},
                "action": {"weightedTargets": [{"virtualNode": SERVICE, "weight": 1}]},
            }
        },
    )
    am.create_virtual_service(
        meshName=MESH,
        virtualServiceName=HOST,
        spec={"provider": {"virtualRouter": {"virtualRouterName": SERVICE}}},
    )
    am.create_virtual_node(
        meshName=MESH,
        virtualNodeName="frontend",
        spec={"backends": [{"virtualService": {"virtualServiceName": HOST}}]},
    )


def check_body(target: Target) -> None:
    status, body = http_get(target.port)
    if status != 200 or body != BODY:
        raise RuntimeError(f"{target.name} answered {status} {body[:200]!r}, not 200 {BODY!r}")


# -- memory -----------------------------------------------------------------------------------


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                raw = Path(f"/proc/{entry}/stat").read_text()
                children[int(raw[raw.rindex(")") + 2 :].split()[1])].append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def _kb(path: str, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def memory_mb(root: int) -> dict[str, float]:
    """RSS summed over the process tree (nginx: master + worker) and PSS (shared pages split)."""
    pids = _tree(root)
    rss = sum(_kb(f"/proc/{p}/status", "VmRSS") for p in pids)
    pss = sum(_kb(f"/proc/{p}/smaps_rollup", "Pss") for p in pids)
    return {"rss_mb": round(rss / 1024, 1), "pss_mb": round(pss / 1024, 1), "processes": len(pids)}


def open_idle_connections(port: int, count: int) -> tuple[list[socket.socket], int]:
    """``count`` keep-alive connections that have each made one request; how many got 200."""
    sockets: list[socket.socket] = []
    ok = 0
    request = f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sockets.append(sock)
        sock.sendall(request)
        status, _body = _read_response(sock)
        ok += status == 200
    return sockets, ok


def measure_memory(target: Target, connections: int, settle: float) -> dict[str, Any]:
    time.sleep(settle)
    result: dict[str, Any] = {"idle": memory_mb(target.pid)}
    sockets, ok = open_idle_connections(target.port, connections)
    try:
        time.sleep(settle)
        target.process.check_alive()
        result["with_connections"] = memory_mb(target.pid)
        result["connections"] = connections
        result["connections_ok"] = ok
    finally:
        for sock in sockets:
            sock.close()
    time.sleep(settle)
    result["after_close"] = memory_mb(target.pid)
    return result


# -- throughput (wrk) -------------------------------------------------------------------------


def _stat_user_sys(pids: Sequence[int]) -> tuple[float, float]:
    user = system = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            raw = Path(f"/proc/{pid}/stat").read_text()
            fields = raw[raw.rindex(")") + 2 :].split()
            user += int(fields[11])
            system += int(fields[12])
    ticks = os.sysconf("SC_CLK_TCK")
    return user / ticks, system / ticks


@dataclass(frozen=True)
class Sample:
    """CPU counters at one instant: the proxy's tree, the upstream's, the load generator's."""

    at: float
    proxy: float
    proxy_user: float
    proxy_sys: float
    upstream: float
    client: float
    proxy_core: float
    client_core: float

    @classmethod
    def take(cls, proxy: int, upstream: int | None, proxy_cpu: int, client_cpu: int) -> Sample:
        user, system = _stat_user_sys(_tree(proxy))
        return cls(
            at=time.monotonic(),
            proxy=tree_cpu_seconds(proxy),
            proxy_user=user,
            proxy_sys=system,
            upstream=tree_cpu_seconds(upstream) if upstream is not None else 0.0,
            client=child_cpu_seconds(),
            proxy_core=core_busy_seconds(proxy_cpu),
            client_core=core_busy_seconds(client_cpu),
        )


@dataclass
class Cpu:
    """Fractions of one core during a run; ``*_other`` is anything else on that core."""

    proxy: float = 0.0
    proxy_sys_share: float = 0.0  # share of the proxy's CPU time spent in the kernel
    upstream: float = 0.0
    client: float = 0.0
    proxy_core_other: float = 0.0
    client_core_other: float = 0.0

    @classmethod
    def between(cls, a: Sample, b: Sample, upstream_on_proxy_core: bool) -> Cpu:
        elapsed = max(b.at - a.at, 1e-9)
        proxy = (b.proxy - a.proxy) / elapsed
        upstream = (b.upstream - a.upstream) / elapsed
        client = (b.client - a.client) / elapsed
        ticks = (b.proxy_user - a.proxy_user) + (b.proxy_sys - a.proxy_sys)
        core0 = (b.proxy_core - a.proxy_core) / elapsed
        core1 = (b.client_core - a.client_core) / elapsed
        return cls(
            proxy=proxy,
            proxy_sys_share=(b.proxy_sys - a.proxy_sys) / ticks if ticks else 0.0,
            upstream=upstream,
            client=client,
            proxy_core_other=max(0.0, core0 - proxy - (upstream if upstream_on_proxy_core else 0)),
            client_core_other=max(
                0.0, core1 - client - (0 if upstream_on_proxy_core else upstream)
            ),
        )


@dataclass(frozen=True)
class Placement:
    proxy_cpu: int
    client_cpu: int
    upstream_cpu: int
    wait_quiet: float

    def cores(self) -> tuple[int, int]:
        return self.proxy_cpu, self.client_cpu


@dataclass
class WrkRun:
    round: int
    target: str
    connections: int
    rps: float = 0.0
    requests: int = 0
    errors: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    cpu: Cpu = field(default_factory=Cpu)
    upstream_cx_opened: int | None = None  # mapmesh only, from its admin /stats

    @property
    def rps_per_cpu(self) -> float:
        return self.rps / self.cpu.proxy if self.cpu.proxy else 0.0

    @property
    def cpu_us_per_request(self) -> float:
        return 1e6 / self.rps_per_cpu if self.rps_per_cpu else 0.0


def upstream_connections_opened(target: Target) -> int | None:
    """The sidecar's ``upstream_cx_total`` so far (None for the other targets)."""
    if target.admin_port is None:
        return None
    status, body = http_get(target.admin_port, "/stats")
    if status != 200:
        return None
    return sum(
        int(line.rsplit(" ", 1)[1])
        for line in body.decode().splitlines()
        if line.startswith(("mapmesh_upstream_cx_total{", "mapmesh_upstream_cx_total "))
    )


def wrk_argv(cpu: int, connections: int, duration: float, script: Path, port: int) -> list[str]:
    return [
        "taskset",
        "-c",
        str(cpu),
        "wrk",
        "-t",
        "1",
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(duration))}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}/",
    ]


def run_wrk(
    target: Target,
    upstream: Spawned,
    place: Placement,
    script: Path,
    duration: float,
    run: WrkRun,
) -> WrkRun:
    if place.wait_quiet > 0:
        wait_for_quiet(place.cores(), place.wait_quiet)
    target.process.check_alive()
    upstream_pid = None if target.pid == upstream.pid else upstream.pid
    shared = place.upstream_cpu == place.proxy_cpu
    opened = upstream_connections_opened(target)
    before = Sample.take(target.pid, upstream_pid, place.proxy_cpu, place.client_cpu)
    done = subprocess.run(
        wrk_argv(place.client_cpu, run.connections, duration, script, target.port),
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
    )
    after = Sample.take(target.pid, upstream_pid, place.proxy_cpu, place.client_cpu)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"no summary in wrk output:\n{done.stdout}{done.stderr}")
    data = json.loads(line.removeprefix("WRKJSON "))
    run.requests = int(data["requests"])
    run.rps = run.requests / (data["duration_us"] / 1e6)
    run.errors = sum(
        int(data[k])
        for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    run.p50_ms, run.p99_ms, run.max_ms = (data[k] / 1000 for k in ("p50_us", "p99_us", "max_us"))
    run.cpu = Cpu.between(before, after, shared)
    if opened is not None:
        run.upstream_cx_opened = (upstream_connections_opened(target) or 0) - opened
    if target.pid == upstream.pid:  # direct: the "proxy" is the upstream itself
        run.cpu.upstream = 0.0
    return run


def rotate(items: Sequence[str], n: int) -> list[str]:
    k = n % len(items)
    return [*items[k:], *items[:k]]


# -- fixed-rate load generator (the `fixed-rate` sub-command, run in its own process) ------


class _FixedRateConnection(asyncio.Protocol):
    def __init__(self, generator: _FixedRate) -> None:
        import httptools

        self.generator = generator
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.intended = 0.0
        self.sent = 0.0
        self.busy = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except Exception:  # a response the parser refuses is an error, not a crash
            self.generator.errors += 1
            if self.transport is not None:
                self.transport.close()

    def on_message_complete(self) -> None:
        self.generator.complete(self, time.perf_counter(), self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.generator.connection_lost(self)


class _FixedRate:
    def __init__(self, request: bytes, measure_from: float, measure_to: float) -> None:
        self.request = request
        self.measure_from = measure_from
        self.measure_to = measure_to
        self.free: list[_FixedRateConnection] = []
        self.backlog: collections.deque[float] = collections.deque()
        self.from_schedule: list[float] = []
        self.from_send: list[float] = []
        self.completed_in_window = 0
        self.errors = 0
        self.lost_connections = 0
        self.max_backlog = 0
        self.in_flight = 0

    def send(self, conn: _FixedRateConnection, intended: float, now: float) -> None:
        conn.intended, conn.sent, conn.busy = intended, now, True
        self.in_flight += 1
        assert conn.transport is not None
        conn.transport.write(self.request)

    def schedule(self, intended: float, now: float) -> None:
        if self.free:
            self.send(self.free.pop(), intended, now)
        else:
            self.backlog.append(intended)
            self.max_backlog = max(self.max_backlog, len(self.backlog))

    def complete(self, conn: _FixedRateConnection, now: float, status: int) -> None:
        conn.busy = False
        self.in_flight -= 1
        if self.measure_from <= conn.intended < self.measure_to:
            self.from_schedule.append(now - conn.intended)
            self.from_send.append(now - conn.sent)
            if status != 200:
                self.errors += 1
        if self.measure_from <= now < self.measure_to:
            self.completed_in_window += 1
        if self.backlog:
            self.send(conn, self.backlog.popleft(), now)
        else:
            self.free.append(conn)

    def connection_lost(self, conn: _FixedRateConnection) -> None:
        self.lost_connections += 1
        if conn.busy:
            self.in_flight -= 1
            self.errors += 1
        with contextlib.suppress(ValueError):
            self.free.remove(conn)


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def pct(p: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 4)

    return {
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "p999_ms": pct(99.9),
        "max_ms": round(1000 * ordered[-1], 4),
        "mean_ms": round(1000 * sum(ordered) / len(ordered), 4),
    }


async def _fixed_rate(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    request = f"GET / HTTP/1.1\r\nHost: {args.host}\r\n\r\n".encode()
    start = time.perf_counter() + 0.2  # after the connections are up
    measure_from = start + args.warmup
    measure_to = measure_from + args.duration
    gen = _FixedRate(request, measure_from, measure_to)
    for _ in range(args.connections):
        _, conn = await loop.create_connection(
            lambda: _FixedRateConnection(gen), "127.0.0.1", args.port
        )
        conn.transport.get_extra_info("socket").setsockopt(  # type: ignore[union-attr]
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        gen.free.append(conn)
    interval = 1.0 / args.rate
    total = int(args.rate * (args.warmup + args.duration))
    late = 0
    n = 0
    while time.perf_counter() < start:
        await asyncio.sleep(0)
    # Busy loop on purpose: libuv timers have 1 ms resolution, too coarse for a schedule
    # of 100 µs; sleep(0) yields to the loop, which polls sockets without blocking.
    while n < total:
        now = time.perf_counter()
        due = start + n * interval
        while due <= now and n < total:
            if now - due > 0.001:
                late += 1
            gen.schedule(due, now)
            n += 1
            due = start + n * interval
        await asyncio.sleep(0)
    drain_until = time.perf_counter() + 10.0
    while (gen.in_flight or gen.backlog) and time.perf_counter() < drain_until:
        await asyncio.sleep(0)
    expected = int(args.rate * args.duration)
    return {
        "rate": args.rate,
        "duration": args.duration,
        "connections": args.connections,
        "expected": expected,
        "measured": len(gen.from_schedule),
        "achieved_rps": round(gen.completed_in_window / args.duration, 1),
        "errors": gen.errors,
        "unfinished": gen.in_flight + len(gen.backlog),
        "lost_connections": gen.lost_connections,
        "max_backlog": gen.max_backlog,
        "late_sends": late,  # sent > 1 ms after their scheduled time (a busy generator)
        "from_schedule": _percentiles(gen.from_schedule),
        "from_send": _percentiles(gen.from_send),
    }


def fixed_rate_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.proxy fixed-rate",
        description="Open-loop HTTP load at a fixed rate; prints JSON.",
    )
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default=HOST)
    p.add_argument("--rate", type=float, required=True, help="requests per second")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    p.add_argument("--connections", type=int, default=64, help="keep-alive connections")
    args = p.parse_args(argv)
    import uvloop

    result = uvloop.run(_fixed_rate(args))
    print("FIXEDRATE " + json.dumps(result))
    return 0


@dataclass
class RateRun:
    round: int
    target: str
    rate: float
    result: dict[str, Any]
    cpu: Cpu

    @property
    def sustained(self) -> bool:
        r = self.result
        return bool(
            r["achieved_rps"] >= 0.98 * r["rate"] and r["errors"] == 0 and r["unfinished"] == 0
        )

    def p(self, key: str) -> float:
        return float(self.result["from_schedule"].get(key, float("nan")))


def run_fixed_rate(
    target: Target,
    upstream: Spawned,
    place: Placement,
    rate: float,
    args: argparse.Namespace,
    n: int,
) -> RateRun:
    if place.wait_quiet > 0:
        wait_for_quiet(place.cores(), place.wait_quiet)
    target.process.check_alive()
    argv = [
        "taskset",
        "-c",
        str(place.client_cpu),
        sys.executable,
        "-m",
        "bench.proxy",
        "fixed-rate",
        "--port",
        str(target.port),
        "--rate",
        str(rate),
        "--duration",
        str(args.latency_duration),
        "--warmup",
        str(args.latency_warmup),
        "--connections",
        str(args.latency_connections),
    ]
    upstream_pid = None if target.pid == upstream.pid else upstream.pid
    before = Sample.take(target.pid, upstream_pid, place.proxy_cpu, place.client_cpu)
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
        timeout=args.latency_duration + args.latency_warmup + 60,
    )
    after = Sample.take(target.pid, upstream_pid, place.proxy_cpu, place.client_cpu)
    line = next((x for x in done.stdout.splitlines() if x.startswith("FIXEDRATE ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(
            f"fixed-rate generator failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )
    cpu = Cpu.between(before, after, place.upstream_cpu == place.proxy_cpu)
    if target.pid == upstream.pid:
        cpu.upstream = 0.0
    return RateRun(n, target.name, rate, json.loads(line.removeprefix("FIXEDRATE ")), cpu)


# -- ready time -------------------------------------------------------------------------------


def _probe_ready(admin_port: int) -> bool:
    return http_get(admin_port, "/ready", timeout=0.5)[0] == 200


def time_to_ready(
    processes: Processes,
    name: str,
    argv: list[str],
    port: int,
    admin_port: int | None,
    cpu: int,
    log: Path,
    timeout: float = 30.0,
) -> dict[str, float | None]:
    """Milliseconds from just before exec to the first 200 through ``port`` (and admin /ready)."""
    t0 = time.perf_counter()
    child = processes.spawn(name, argv, log, cpu=cpu)
    ready_ms: float | None = None
    first_ms: float | None = None
    try:
        while first_ms is None or (admin_port is not None and ready_ms is None):
            if admin_port is not None and ready_ms is None and _probe_ready(admin_port):
                ready_ms = (time.perf_counter() - t0) * 1000
            if first_ms is None and http_get(port, timeout=0.5)[0] == 200:
                first_ms = (time.perf_counter() - t0) * 1000
            child.check_alive()
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"{name} not ready in {timeout:.0f}s:\n{child.log_tail()}")
            time.sleep(0.002)
    finally:
        child.process.terminate()
        try:
            child.process.wait(15)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait(5)
    return {
        "first_200_ms": round(first_ms, 1),
        "admin_ready_ms": round(ready_ms, 1) if ready_ms is not None else None,
    }


_RSS_SNIPPET = (
    "import pathlib; print(next(int(x.split()[1]) for x in "
    "pathlib.Path('/proc/self/status').read_text().splitlines() if x.startswith('VmRSS:')))"
)


def python_floor(runs: int, cpu: int) -> dict[str, float]:
    """Exec-to-exit of the interpreter alone and with the sidecar's modules imported, and
    the RSS of each: what any Python sidecar pays before it does anything."""
    pin = ["taskset", "-c", str(cpu), sys.executable, "-c"]
    imports = "import uvloop, mapmesh.cli.proxy_commands, mapmesh.proxy.process; "
    commands = {"python_c_pass": "", "import_proxy": imports}
    result = {}
    for key, code in commands.items():
        times, rss = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            done = subprocess.run([*pin, code + _RSS_SNIPPET], check=True, timeout=60,
                                  capture_output=True, text=True)  # fmt: skip
            times.append((time.perf_counter() - t0) * 1000)
            rss.append(int(done.stdout.strip()) / 1024)
        result[f"{key}_ms"] = round(median(times), 1)
        result[f"{key}_rss_mb"] = round(median(rss), 1)
    return result


def measure_ready(
    processes: Processes, workdir: Path, api_url: str, upstream_port: int, args: argparse.Namespace
) -> dict[str, Any]:
    cpu = args.proxy_cpu
    runs: dict[str, list[dict[str, float | None]]] = {
        "mapmesh_cold": [],
        "mapmesh_warm": [],
        "mapmesh_warm_control_plane_down": [],
        "haproxy": [],
        "nginx": [],
    }
    dead_control_plane = f"http://127.0.0.1:{free_port()}"
    for i in range(args.ready_runs):
        state = workdir / f"ready-state-{i}"
        for kind, url, state_dir in (
            ("mapmesh_cold", api_url, state),  # empty dir: the snapshot comes from the server
            ("mapmesh_warm", api_url, state),  # the cold run left its snapshot there
            ("mapmesh_warm_control_plane_down", dead_control_plane, state),
        ):
            out, admin = free_port(), free_port()
            runs[kind].append(
                time_to_ready(
                    processes,
                    kind,
                    sidecar_argv(url, out, admin, state_dir),
                    out,
                    admin,
                    cpu,
                    workdir / "ready-mapmesh.log",
                )
            )
        port = free_port()
        path = workdir / "ready-haproxy.cfg"
        path.write_text(haproxy_conf(port, upstream_port))
        runs["haproxy"].append(
            time_to_ready(
                processes,
                "haproxy-ready",
                ["haproxy", "-db", "-f", str(path)],
                port,
                None,
                cpu,
                workdir / "ready-haproxy.log",
            )
        )
        port = free_port()
        name = f"ready-nginx-{i}"
        conf = workdir / f"{name}.conf"
        conf.write_text(nginx_proxy_conf(workdir, port, upstream_port, name))
        runs["nginx"].append(
            time_to_ready(
                processes,
                name,
                [
                    "nginx",
                    "-c",
                    str(conf),
                    "-p",
                    str(workdir),
                    "-e",
                    str(workdir / f"{name}-error.log"),
                ],
                port,
                None,
                cpu,
                workdir / "ready-nginx.log",
            )
        )
    summary: dict[str, Any] = {"runs": runs}
    for kind, values in runs.items():
        firsts = [v["first_200_ms"] for v in values if v["first_200_ms"] is not None]
        readies = [v["admin_ready_ms"] for v in values if v["admin_ready_ms"] is not None]
        summary[kind] = {
            "first_200_ms_median": round(median(firsts), 1) if firsts else None,
            "first_200_ms_max": max(firsts) if firsts else None,
            "admin_ready_ms_median": round(median(readies), 1) if readies else None,
        }
    summary["floor"] = python_floor(args.ready_runs, args.proxy_cpu)
    return summary


# -- profile ----------------------------------------------------------------------------------


def profile_proxies(
    targets: dict[str, Target],
    names: Sequence[str],
    upstream: Spawned,
    place: Placement,
    script: Path,
    args: argparse.Namespace,
    workdir: Path,
) -> dict[str, Any]:
    """perf on each proxy in turn under two loads, wrk (throughput) and the fixed-rate
    generator at the highest rate (where the p99 target is judged): µs per request per
    component (kernel, CPython, compiled modules, httptools, uvloop, libc) and per symbol."""
    seconds = max(1.0, args.profile_seconds)
    quiet = dataclasses.replace(place, wait_quiet=0)
    rate = max(args.requested_rates)
    at_rate = argparse.Namespace(**{**vars(args), "latency_duration": seconds})
    connections = args.profile_connections

    def under_wrk(target: Target) -> tuple[float, float]:
        run = run_wrk(target, upstream, quiet, script, seconds, WrkRun(0, target.name, connections))
        return run.requests, run.cpu_us_per_request

    def under_rate(target: Target) -> tuple[float, float]:
        run = run_fixed_rate(target, upstream, quiet, rate, at_rate, 0)
        return rate * (seconds + args.latency_warmup), run.cpu.proxy * 1e6 / rate

    loads = {f"wrk -c {connections}": under_wrk, f"{rate:.0f} req/s": under_rate}
    result: dict[str, Any] = {"seconds": seconds, "rate_hz": args.profile_rate, "targets": {}}
    for name in names:
        target = targets[name]
        run_wrk(target, upstream, quiet, script, 2.0, WrkRun(0, name, connections))  # warm
        result["targets"][name] = found = {}
        for load, run in loads.items():
            data = workdir / f"profile-{name}.data"
            perf = cpu_profile.record(target.pid, args.profile_rate, data)
            if isinstance(perf, str):
                return {"skipped": perf}
            time.sleep(0.3)  # perf attaches
            requests, cpu_us = run(target)
            failed = cpu_profile.finish(perf)
            if failed is not None:
                return {"skipped": failed}
            found[load] = cpu_profile.summarize(data, requests, args.profile_rate)
            found[load]["cpu_us_per_request"] = round(cpu_us, 2)
    return result


# -- orchestration ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.proxy",
        description="mapmesh's sidecar vs HAProxy 2.6 and nginx as proxies, and vs direct.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    p.add_argument("--rounds", type=int, default=3, help="rounds, rotating the order of targets")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured wrk each")
    p.add_argument(
        "--connections",
        type=int,
        nargs="+",
        default=[16, 64, 256],
        help="wrk -c values (one wrk thread)",
    )
    p.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    p.add_argument(
        "--rates",
        type=float,
        nargs="+",
        default=[1000.0, 5000.0, 10000.0],
        help="fixed request rates for the latency runs: added latency is judged at the lowest, "
        "the p99 ratio to HAProxy at the highest",
    )
    p.add_argument(
        "--sustain-fraction",
        type=float,
        default=0.8,
        help="when a target cannot sustain the highest rate, also measure this "
        "fraction of the lowest max req/s any target reached (64 connections "
        "or the nearest count); 0 turns it off",
    )
    p.add_argument("--latency-duration", type=float, default=10.0, help="measured s per rate run")
    p.add_argument("--latency-warmup", type=float, default=1.0, help="unmeasured s first")
    p.add_argument(
        "--latency-rounds",
        type=int,
        default=5,
        help="rounds of latency runs (the p99s reported are medians over them)",
    )
    p.add_argument(
        "--latency-connections",
        type=int,
        default=64,
        help="keep-alive connections of the fixed-rate generator",
    )
    p.add_argument(
        "--sidecar-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an extra flag for `mapmesh proxy` (repeatable): --sidecar-arg=--trace-sampling=0",
    )
    p.add_argument(
        "--variant-arg",
        action="append",
        default=[],
        metavar="ARG",
        help=f"also start a second sidecar ({VARIANT}) with this extra flag (repeatable) and "
        "measure it in the latency runs beside the others: an A/B of a sidecar setting in "
        "one run, e.g. --variant-arg=--trace-sampling=0",
    )
    p.add_argument("--idle-connections", type=int, default=1000, help="for the RSS figure")
    p.add_argument("--ready-runs", type=int, default=5, help="starts per kind for ready time")
    p.add_argument(
        "--profile-seconds",
        type=float,
        default=10.0,
        help="perf-profile each proxy this long under wrk, then at the highest rate (0: skip)",
    )
    p.add_argument("--profile-rate", type=int, default=999, help="perf samples/s")
    p.add_argument("--profile-connections", type=int, default=64, help="wrk -c while profiling")
    p.add_argument(
        "--proxy-cpu", "--server-cpu", type=int, default=0, help="core each proxy is pinned to"
    )
    p.add_argument("--upstream-cpu", type=int, default=0, help="core the upstream nginx runs on")
    p.add_argument(
        "--client-cpu",
        type=int,
        default=1,
        help="core of wrk, the fixed-rate generator, the control plane and this script",
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before each run wait up to this many seconds for both cores to be idle",
    )
    p.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=("memory", "throughput", "latency", "ready", "profile"),
        help="phases to leave out",
    )
    p.add_argument("--keep-temp", action="store_true", help="keep the temp dir (configs, logs)")
    add_flag(p)
    return p.parse_args(argv)


def raise_fd_limit() -> None:
    """Children inherit it: 1,000 client connections need as many fds again in the proxy."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard)
        )


@contextlib.contextmanager
def idle_priority(name: str) -> Iterator[IdleGroup | None]:
    """An idle-priority cgroup for the control plane, or None (then it runs at nice 19)."""
    with contextlib.ExitStack() as stack:
        group: IdleGroup | None = None
        try:
            group = stack.enter_context(IdleGroup(name))
        except RuntimeError as exc:
            print(f"note: {exc}; the control plane runs at nice 19 instead")
        yield group


def start_targets(
    processes: Processes,
    workdir: Path,
    args: argparse.Namespace,
    control_plane_group: IdleGroup | None,
) -> tuple[Spawned, dict[str, Target], str, int]:
    upstream_port = free_port()
    upstream = start_nginx(
        processes, workdir, "upstream", upstream_conf(workdir, upstream_port), args.upstream_cpu
    )
    wait_http_200(upstream_port, upstream)
    targets = {"direct": Target("direct", upstream_port, upstream)}
    port = free_port()
    targets["haproxy"] = Target(
        "haproxy",
        port,
        start_haproxy(processes, workdir, "haproxy", port, upstream_port, args.proxy_cpu),
    )
    port = free_port()
    targets["nginx"] = Target(
        "nginx",
        port,
        start_nginx(
            processes,
            workdir,
            "nginx-proxy",
            nginx_proxy_conf(workdir, port, upstream_port, "nginx-proxy"),
            args.proxy_cpu,
        ),
    )
    port = free_port()
    minimal_argv = [sys.executable, "-m", "bench.minimal_proxy", "--port", str(port),
                    "--upstream-port", str(upstream_port)]  # fmt: skip
    targets["minimal"] = Target(
        "minimal",
        port,
        processes.spawn("minimal", minimal_argv, workdir / "minimal.log", cpu=args.proxy_cpu),
    )
    print(f"starting mapmesh server (pinned to CPU {args.proxy_cpu}, idle priority) in {workdir}")
    # The control plane runs elsewhere in production. Here it shares the proxy's core at idle
    # priority: it runs when the proxy and the upstream both wait, and either preempts it as
    # it wakes. Its work (storing the sidecar's telemetry reports) then never delays the
    # load generator, which busy-polls its core and would send late while the control plane
    # held a time slice there, nor the proxy, as it did at nice 19 (the scheduler still owes
    # a nice-19 process a share of the core, and pays it in whole time slices).
    _, api_port, _ = start_mapmesh(
        processes,
        workdir / "data",
        cpu=args.proxy_cpu,
        cgroup=control_plane_group,
        nice=0 if control_plane_group is not None else 19,
    )
    api_url = f"http://127.0.0.1:{api_port}"
    seed(api_url, upstream_port)
    out, admin = free_port(), free_port()
    sidecar = processes.spawn(
        "mapmesh-proxy",
        sidecar_argv(api_url, out, admin, None),
        workdir / "sidecar.log",
        cpu=args.proxy_cpu,
    )
    targets["mapmesh"] = Target("mapmesh", out, sidecar, admin)
    if args.variant_arg:
        out, admin = free_port(), free_port()
        variant = processes.spawn(
            VARIANT,
            [*sidecar_argv(api_url, out, admin, None), *args.variant_arg],
            workdir / "sidecar-variant.log",
            cpu=args.proxy_cpu,
        )
        targets[VARIANT] = Target(VARIANT, out, variant, admin)
    for target in targets.values():
        wait_http_200(target.port, target.process)
        check_body(target)
    return upstream, targets, api_url, upstream_port


def pick_extra_rate(
    runs: Sequence[WrkRun], rates: Sequence[float], fraction: float
) -> float | None:
    """The highest rate every proxy sustained in the wrk runs, times ``fraction`` (rounded)."""
    if fraction <= 0 or not runs:
        return None
    counts = sorted({r.connections for r in runs}, key=lambda c: abs(c - 64))
    at = [r for r in runs if r.connections == counts[0]]
    best = [median([r.rps for r in at if r.target == t]) for t in {r.target for r in at}]
    common = min(best) * fraction
    if max(rates) <= common:
        return None
    return float(max(500, int(common // 500) * 500))


def summarize(
    args: argparse.Namespace,
    wrk_runs: Sequence[WrkRun],
    rate_runs: Sequence[RateRun],
    memory: dict[str, Any],
    ready: dict[str, Any],
) -> dict[str, Any]:
    per_conn = throughput_summary(wrk_runs)
    lat = latency_summary(rate_runs)
    return {
        "throughput": per_conn,
        "latency": lat,
        "targets": targets_met(args, per_conn, lat, memory, ready),
    }


def throughput_summary(wrk_runs: Sequence[WrkRun]) -> dict[str, Any]:
    """Requests per proxy CPU-second; ratio to HAProxy's per round, median over rounds."""
    per_conn: dict[str, Any] = {}
    for c in sorted({r.connections for r in wrk_runs}):
        rows = [r for r in wrk_runs if r.connections == c]
        entry: dict[str, Any] = {}
        for t in {r.target for r in rows}:
            mine = [r for r in rows if r.target == t]
            entry[t] = {
                "rps": round(median([r.rps for r in mine])),
                "rps_per_cpu": round(median([r.rps_per_cpu for r in mine])),
                "cpu_us_per_request": round(median([r.cpu_us_per_request for r in mine]), 1),
                "proxy_cpu": round(median([r.cpu.proxy for r in mine]), 3),
                "p99_ms": round(median([r.p99_ms for r in mine]), 3),
                "upstream_cx_opened_per_1k_requests": _per_1k(mine),
            }
        for t in PROXIES:
            ratios = []
            for n in {r.round for r in rows}:
                by = {r.target: r for r in rows if r.round == n}
                if t in by and "haproxy" in by and by["haproxy"].rps_per_cpu:
                    ratios.append(by[t].rps_per_cpu / by["haproxy"].rps_per_cpu)
            if ratios and t in entry:
                entry[t]["ratio_per_cpu_vs_haproxy"] = round(median(ratios), 3)
                entry[t]["ratio_per_cpu_range"] = [round(min(ratios), 3), round(max(ratios), 3)]
        per_conn[str(c)] = entry
    return per_conn


def _per_1k(runs: Sequence[WrkRun]) -> float | None:
    values = [1000 * r.upstream_cx_opened / r.requests for r in runs
              if r.upstream_cx_opened is not None and r.requests]  # fmt: skip
    return round(median(values), 1) if values else None


def latency_summary(rate_runs: Sequence[RateRun]) -> dict[str, Any]:
    """Medians over rounds of each percentile; added latency over direct; p99 vs HAProxy."""
    lat: dict[str, Any] = {}
    for rate in sorted({r.rate for r in rate_runs}):
        entry: dict[str, Any] = {}
        for t in {r.target for r in rate_runs if r.rate == rate}:
            mine = [r for r in rate_runs if r.rate == rate and r.target == t]
            entry[t] = {
                "p50_ms": round(median([r.p("p50_ms") for r in mine]), 3),
                "p99_ms": round(median([r.p("p99_ms") for r in mine]), 3),
                "p999_ms": round(median([r.p("p999_ms") for r in mine]), 3),
                "sustained": all(r.sustained for r in mine),
                "achieved_rps": round(median([r.result["achieved_rps"] for r in mine])),
                "proxy_cpu": round(median([r.cpu.proxy for r in mine]), 3),
                "late_sends": sum(r.result["late_sends"] for r in mine),
            }
        proxies = [t for t in entry if t != "direct"]
        if "direct" in entry:
            for t in proxies:
                if t in entry:
                    entry[t]["added_p50_ms"] = round(
                        entry[t]["p50_ms"] - entry["direct"]["p50_ms"], 3
                    )
                    entry[t]["added_p99_ms"] = round(
                        entry[t]["p99_ms"] - entry["direct"]["p99_ms"], 3
                    )
        if "haproxy" in entry and entry["haproxy"]["p99_ms"]:
            for t in proxies:
                if t in entry:
                    entry[t]["p99_vs_haproxy"] = round(
                        entry[t]["p99_ms"] / entry["haproxy"]["p99_ms"], 2
                    )
        lat[str(int(rate))] = entry
    return lat


def targets_met(
    args: argparse.Namespace,
    per_conn: dict[str, Any],
    lat: dict[str, Any],
    memory: dict[str, Any],
    ready: dict[str, Any],
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(name: str, value: Any, goal: str, met: bool | None) -> None:
        rows.append({"target": name, "value": value, "goal": goal, "met": met})

    ratios = [
        e["mapmesh"]["ratio_per_cpu_vs_haproxy"]
        for e in per_conn.values()
        if "ratio_per_cpu_vs_haproxy" in e.get("mapmesh", {})
    ]
    if ratios:
        worst = min(ratios)
        add(
            "req per proxy CPU-s vs HAProxy (worst connection count)",
            worst,
            "≥ 0.5x (0.65x)",
            worst >= TARGET_RPS_PER_CPU,
        )
        add("  stretch", worst, "≥ 0.65x", worst >= STRETCH_RPS_PER_CPU)
    low = lat.get(str(int(min(args.rates))))
    if low and "mapmesh" in low and "added_p50_ms" in low["mapmesh"]:
        m = low["mapmesh"]
        add(
            f"added p50 at {int(min(args.rates))} req/s",
            m["added_p50_ms"],
            f"≤ +{TARGET_ADDED_P50_MS} ms",
            m["added_p50_ms"] <= TARGET_ADDED_P50_MS,
        )
        add(
            f"added p99 at {int(min(args.rates))} req/s",
            m["added_p99_ms"],
            f"≤ +{TARGET_ADDED_P99_MS} ms",
            m["added_p99_ms"] <= TARGET_ADDED_P99_MS,
        )
    judged = {max(args.requested_rates), *([args.extra_rate] if args.extra_rate else [])}
    for rate, entry in lat.items():
        if float(rate) not in judged or "mapmesh" not in entry or "haproxy" not in entry:
            continue
        m = entry["mapmesh"]
        ok = (
            m["sustained"]
            and entry["haproxy"]["sustained"]
            and (m["p99_vs_haproxy"] <= TARGET_P99_HIGH_RATIO)
        )
        add(
            f"p99 at {rate} req/s vs HAProxy",
            m["p99_vs_haproxy"] if m["sustained"] else f"not sustained ({m['achieved_rps']} req/s)",
            f"≤ {TARGET_P99_HIGH_RATIO}x",
            ok,
        )
    mm = memory.get("mapmesh")
    if mm:
        add(
            "RSS idle (MB)",
            mm["idle"]["rss_mb"],
            f"≤ {TARGET_RSS_IDLE_MB:.0f}",
            mm["idle"]["rss_mb"] <= TARGET_RSS_IDLE_MB,
        )
        add(
            f"RSS with {mm['connections']} connections (MB)",
            mm["with_connections"]["rss_mb"],
            f"≤ {TARGET_RSS_CONNS_MB:.0f}",
            mm["with_connections"]["rss_mb"] <= TARGET_RSS_CONNS_MB,
        )
    for kind in ("mapmesh_cold", "mapmesh_warm", "mapmesh_warm_control_plane_down"):
        value = ready.get(kind, {}).get("first_200_ms_median")
        if value is not None:
            add(
                f"ready, {kind.removeprefix('mapmesh_')} (exec → first 200, ms)",
                value,
                f"≤ {READY_TARGET_MS:.0f}",
                value <= READY_TARGET_MS,
            )
    return rows


def print_report(
    wrk_runs: Sequence[WrkRun],
    rate_runs: Sequence[RateRun],
    memory: dict[str, Any],
    ready: dict[str, Any],
    profile: dict[str, Any],
    summary: dict[str, Any],
) -> None:
    if wrk_runs:
        print("\n== throughput (wrk -t 1)")
        header = (
            f"{'round':>5} {'conns':>5} {'target':<8} {'req/s':>8} {'per cpu-s':>9} "
            f"{'µs/req':>6} {'proxy':>5} {'sys':>4} {'upstr':>5} {'wrk':>4} {'other0':>6} "
            f"{'other1':>6} {'p50 ms':>6} {'p99 ms':>6} {'errs':>4} {'up cx':>6}"
        )
        print(header)
        print("-" * len(header))
        for r in wrk_runs:
            print(
                f"{r.round:>5} {r.connections:>5} {r.target:<8} {r.rps:>8,.0f} "
                f"{r.rps_per_cpu:>9,.0f} {r.cpu_us_per_request:>6.1f} {r.cpu.proxy:>5.0%} "
                f"{r.cpu.proxy_sys_share:>4.0%} {r.cpu.upstream:>5.0%} {r.cpu.client:>4.0%} "
                f"{r.cpu.proxy_core_other:>6.0%} {r.cpu.client_core_other:>6.0%} "
                f"{r.p50_ms:>6.2f} {r.p99_ms:>6.2f} {r.errors:>4} "
                f"{'-' if r.upstream_cx_opened is None else r.upstream_cx_opened:>6}"
            )
        print("\nmedians; ratio = req per proxy CPU-second / HAProxy's, per round, median (range)")
        for c, entry in summary["throughput"].items():
            parts = []
            for t in TARGETS:
                if t in entry:
                    e = entry[t]
                    ratio = (
                        f" {e['ratio_per_cpu_vs_haproxy']:.3f}x {e['ratio_per_cpu_range']}"
                        if "ratio_per_cpu_vs_haproxy" in e and t != "haproxy"
                        else ""
                    )
                    parts.append(f"{t} {e['rps']:,} req/s {e['rps_per_cpu']:,}/cpu-s{ratio}")
            print(f"  c={c}: " + "; ".join(parts))
    if rate_runs:
        print("\n== latency at fixed rates (from the scheduled send time; fixed-rate generator)")
        header = (
            f"{'round':>5} {'rate':>6} {'target':<8} {'got/s':>7} {'p50 ms':>7} {'p90 ms':>7} "
            f"{'p99 ms':>7} {'p99.9':>7} {'max ms':>7} {'send p50':>8} {'proxy':>5} "
            f"{'late':>5} {'errs':>4} ok"
        )
        print(header)
        print("-" * len(header))
        for rr in rate_runs:
            s, d = rr.result["from_schedule"], rr.result["from_send"]
            print(
                f"{rr.round:>5} {rr.rate:>6.0f} {rr.target:<8} {rr.result['achieved_rps']:>7,.0f} "
                f"{s['p50_ms']:>7.3f} {s['p90_ms']:>7.3f} {s['p99_ms']:>7.3f} {s['p999_ms']:>7.3f} "
                f"{s['max_ms']:>7.2f} {d['p50_ms']:>8.3f} {rr.cpu.proxy:>5.0%} "
                f"{rr.result['late_sends']:>5} {rr.result['errors']:>4} "
                f"{'yes' if rr.sustained else 'NO'}"
            )
        print("\nmedians over rounds")
        for rate, entry in summary["latency"].items():
            for t in (*TARGETS, VARIANT):
                if t in entry:
                    e = entry[t]
                    extra = (
                        f", added +{e['added_p50_ms']:.3f} / +{e['added_p99_ms']:.3f} ms"
                        if "added_p50_ms" in e
                        else ""
                    )
                    extra += (
                        f", p99 {e['p99_vs_haproxy']:.2f}x HAProxy's"
                        if "p99_vs_haproxy" in e
                        else ""
                    )
                    print(
                        f"  {rate:>6} req/s {t:<8} p50 {e['p50_ms']:.3f} p99 {e['p99_ms']:.3f} ms"
                        f"{extra}{'' if e['sustained'] else ' (NOT sustained)'}"
                    )
    if memory:
        print("\n== memory (MB; RSS summed over the process tree, PSS in brackets)")
        for t, m in memory.items():
            print(
                f"  {t:<8} idle {m['idle']['rss_mb']:>6.1f} [{m['idle']['pss_mb']:.1f}]   "
                f"{m['connections']} conns {m['with_connections']['rss_mb']:>6.1f} "
                f"[{m['with_connections']['pss_mb']:.1f}] ({m['connections_ok']} got 200)   "
                f"after close {m['after_close']['rss_mb']:>6.1f}"
            )
    if ready:
        print("\n== ready time (ms from exec; median of runs)")
        for kind, value in ready.items():
            if kind in ("runs", "floor"):
                continue
            admin = value["admin_ready_ms_median"]
            print(
                f"  {kind:<34} first 200 {value['first_200_ms_median']:>7.1f} "
                f"(max {value['first_200_ms_max']:.1f})"
                + (f", admin /ready {admin:.1f}" if admin is not None else "")
            )
        print(f"  floor: {ready['floor']}")
    if profile.get("skipped"):
        print(f"\n== profile skipped: {profile['skipped']}")
    for name, loads in profile.get("targets", {}).items():
        for load, found in loads.items():
            if found.get("skipped"):
                print(f"\n== profile of {name} under {load} skipped: {found['skipped']}")
                continue
            print(
                f"\n== profile of {name} under {load} (perf): {found['cpu_us_per_request']:.1f}"
                f" µs CPU/request; samples cover {found['sampled_us_per_request']:.1f} µs"
            )
            print("  " + ", ".join(
                f"{part} {v['us_per_request']:.2f}" for part, v in found["components"].items()
            ))  # fmt: skip
            if name == "mapmesh":
                print("  busiest symbols, self time, µs per request:")
                for row in found["top"]:
                    print(
                        f"    {row['us_per_request']:>6.3f}  {row['share']:>5.1%}  "
                        f"{row['symbol']}  ({row['dso']})"
                    )
    noisy = [
        r
        for r in wrk_runs
        if max(r.cpu.proxy_core_other, r.cpu.client_core_other) > 0.1 or r.errors
    ]
    late = [r for r in rate_runs
            if r.result["late_sends"] > 0.01 * r.result["expected"]
            or max(r.cpu.proxy_core_other, r.cpu.client_core_other) > 0.1]  # fmt: skip
    if noisy or late:
        print(
            f"\nwarning: {len(noisy)} wrk run(s) had errors or >10% other load on a pinned core, "
            f"{len(late)} fixed-rate run(s) sent >1% of requests over 1 ms late or had >10% "
            "other load; rerun with --wait-quiet 120 on a shared machine"
        )
    print("\n== targets")
    for row in summary["targets"]:
        mark = {True: "met", False: "MISSED", None: "n/a"}[row["met"]]
        print(f"  {row['target']:<58} {row['value']!s:>10}  goal {row['goal']:<14} {mark}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fixed-rate"]:
        return fixed_rate_main(argv[1:])
    args = parse_args(argv)
    require_tools("wrk", "taskset", "nginx", "haproxy")
    compile_sources()
    SIDECAR_ARGS[:] = args.sidecar_arg
    raise_on_sigterm()
    raise_fd_limit()
    pin_self(args.client_cpu)
    place = Placement(args.proxy_cpu, args.client_cpu, args.upstream_cpu, args.wait_quiet)
    wrk_runs: list[WrkRun] = []
    rate_runs: list[RateRun] = []
    memory: dict[str, Any] = {}
    ready: dict[str, Any] = {}
    profile: dict[str, Any] = {}
    rates = list(args.rates)
    args.requested_rates, args.extra_rate = list(args.rates), None
    with (
        damon_paused(args.keep_damon) as damon,
        temp_dir("proxy", args.keep_temp) as workdir,
        idle_priority(f"mapmesh-bench-{workdir.name}") as control_plane_group,
        Processes() as processes,
    ):
        upstream, targets, api_url, upstream_port = start_targets(
            processes, workdir, args, control_plane_group
        )
        chosen = [t for t in TARGETS if t in args.targets]
        print("all targets answer 200 with the upstream's body: " + ", ".join(chosen))
        if "memory" not in args.skip:
            for name in chosen:
                memory[name] = measure_memory(targets[name], args.idle_connections, 1.0)
                print(
                    f"  memory {name}: {memory[name]['idle']['rss_mb']} MB idle, "
                    f"{memory[name]['with_connections']['rss_mb']} MB with "
                    f"{args.idle_connections} connections"
                )
        script = workdir / "wrk.lua"
        script.write_text(_WRK_SCRIPT)
        if "throughput" not in args.skip:
            for name in chosen:
                if args.warmup > 0:
                    run_wrk(
                        targets[name],
                        upstream,
                        dataclasses.replace(place, wait_quiet=0),
                        script,
                        args.warmup,
                        WrkRun(0, name, 64),
                    )
            for n in range(1, args.rounds + 1):
                for c in args.connections:
                    for name in rotate(chosen, n - 1):
                        run = run_wrk(
                            targets[name],
                            upstream,
                            place,
                            script,
                            args.duration,
                            WrkRun(n, name, c),
                        )
                        wrk_runs.append(run)
                        print(
                            f"  round {n} c={c:<4} {name:<8} {run.rps:>8,.0f} req/s "
                            f"{run.rps_per_cpu:>8,.0f} per proxy cpu-s"
                        )
            extra = pick_extra_rate(
                [r for r in wrk_runs if r.target in PROXIES], rates, args.sustain_fraction
            )
            if extra is not None and "latency" not in args.skip:
                print(f"  the highest rate is more than some proxy sustains; adding {extra:.0f}/s")
                rates.append(extra)
                args.extra_rate = extra
        if "latency" not in args.skip:
            measured = [*chosen, *([VARIANT] if VARIANT in targets else [])]
            for rate in rates:
                for n in range(1, args.latency_rounds + 1):
                    for name in rotate(measured, n - 1):
                        rr = run_fixed_rate(targets[name], upstream, place, rate, args, n)
                        rate_runs.append(rr)
                        s = rr.result["from_schedule"]
                        print(
                            f"  {rate:>6.0f}/s round {n} {name:<8} p50 {s['p50_ms']:.3f} "
                            f"p99 {s['p99_ms']:.3f} ms  {'ok' if rr.sustained else 'NOT sustained'}"
                        )
        if "ready" not in args.skip:
            ready = measure_ready(processes, workdir, api_url, upstream_port, args)
        if "profile" not in args.skip and args.profile_seconds > 0:
            profiled = [name for name in chosen if name != "direct"]
            profile = profile_proxies(targets, profiled, upstream, place, script, args, workdir)
        for name in chosen:
            if memory.get(name):
                memory[name]["idle_after_load"] = memory_mb(targets[name].pid)
    args.rates = rates
    summary = summarize(args, wrk_runs, rate_runs, memory, ready)
    print_report(wrk_runs, rate_runs, memory, ready, profile, summary)
    path = write_result(
        "proxy",
        {
            "benchmark": "proxy",
            "settings": {
                **vars(args),
                "wrk_argv": wrk_argv(args.client_cpu, 64, args.duration, Path("wrk.lua"), 0),
            },
            "configs": {
                "upstream_nginx": upstream_conf(Path("/TMP"), 0),
                "nginx_proxy": nginx_proxy_conf(Path("/TMP"), 0, 0, "nginx-proxy"),
                "haproxy": haproxy_conf(0, 0),
            },
            "latency_generator": "bench/proxy.py fixed-rate (asyncio+uvloop+httptools, open loop)",
            "machine": machine_info(
                {"wrk": ["wrk", "-v"], "haproxy": ["haproxy", "-v"], "nginx": ["nginx", "-v"]},
                damon,
            ),
            "throughput_runs": [
                {
                    **asdict(r),
                    "rps_per_cpu": r.rps_per_cpu,
                    "cpu_us_per_request": r.cpu_us_per_request,
                }
                for r in wrk_runs
            ],
            "latency_runs": [{**asdict(r), "sustained": r.sustained} for r in rate_runs],
            "memory": memory,
            "ready": ready,
            "profile": profile,
            **summary,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except RuntimeError as exc:
        sys.exit(f"error: {exc}")
