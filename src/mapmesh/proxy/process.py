"""The sidecar / gateway process: snapshot stream, listeners, admin, registration, drain.

Start: load the last good snapshot from the state directory (so the proxy serves at once,
even with the control plane down), open the listeners and the admin port, follow the
snapshot stream. Each snapshot is decoded and compiled before anything changes; a bad one is
rejected (acknowledged with the reason) and the last good one stays in force. A sidecar
registers its instance once the local app answers its health check.

Stop (SIGTERM/SIGINT): deregister first (callers stop being sent here), stop accepting,
let requests in flight finish up to the drain timeout, then close — the last telemetry
report (and OTLP batch) is sent after the drain, so it holds the last requests.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mapmesh.model import snapshot
from mapmesh.model.plain import to_json
from mapmesh.proxy.accesslog import AccessLogger
from mapmesh.proxy.admin import AdminServer
from mapmesh.proxy.backend_port import BackendPortConfig
from mapmesh.proxy.cluster import ClusterRuntime
from mapmesh.proxy.config import (
    ClusterSet,
    ConfigSource,
    ProxyConfig,
    RateLimiterSet,
    build_config,
)
from mapmesh.proxy.config_watch import StreamIdentity, follow_snapshots
from mapmesh.proxy.deadlines import Deadlines
from mapmesh.proxy.downstream import DownstreamConnection
from mapmesh.proxy.registration import CloudMapRegistrar, RegistrationError
from mapmesh.proxy.router import Router
from mapmesh.proxy.routing.table import timeout_ms
from mapmesh.proxy.stats import Stats
from mapmesh.proxy.telemetry.runtime import DEFAULT_SAMPLING, ProxyTelemetry, TelemetryOptions
from mapmesh.proxy.telemetry.spans import Identity
from mapmesh.proxy.telemetry.tracing import DEFAULT_RATE_LIMIT
from mapmesh.proxy.tls import TlsListeners

__all__ = ["ProxyOptions", "ProxyProcess"]

log = logging.getLogger("mapmesh.proxy")

STOP_TIMEOUT = 2.0  # seconds background tasks get to finish once cancelled


@dataclass(frozen=True)
class ProxyOptions:
    control_plane: str
    mesh: str
    kind: str  # "virtualNode" | "virtualGateway"
    name: str
    app_port: int | None = None
    inbound_port: int = 15000
    outbound_port: int = 15001
    gateway_port: int = 8080
    admin_port: int = 9901
    host: str = "127.0.0.1"
    advertise_address: str = "127.0.0.1"
    instance_id: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    state_dir: Path | None = None
    access_log: str | None = None
    drain_timeout: float = 10.0
    register: bool = True
    seed: int | None = None
    connect_timeout: float = 5.0  # seconds to open an upstream connection, every cluster
    # A local port per backend (virtual service name → port), besides the HTTP-proxy port.
    backend_ports: dict[str, int] = field(default_factory=dict)
    # Share of requests without a sampling decision that start a trace (0..1).
    trace_sampling: float = DEFAULT_SAMPLING
    trace_rate_limit: float | None = DEFAULT_RATE_LIMIT  # traces started per second; None: any
    otlp_endpoint: str | None = None  # http://collector:4318: spans as OTLP/HTTP JSON
    report_interval: float = 2.0  # seconds between telemetry reports to the control plane


class ProxyProcess:
    def __init__(self, options: ProxyOptions) -> None:
        self.options = options
        self.stats = Stats()
        self._clock = time.monotonic
        self._rng = random.Random(options.seed)
        self._clusters = ClusterSet(
            self.stats, self._clock, self._rng, connect_timeout=options.connect_timeout
        )
        self._config = ConfigSource()  # what every listener reads per request
        self._inbound: ClusterRuntime | None = None
        self._local: tuple[ClusterRuntime, int, int] | None = None  # for _inbound_target
        self._limits = RateLimiterSet(self.stats, self._clock)
        self._tls = TlsListeners()
        self._servers: list[asyncio.AbstractServer] = []
        self._connections: set[DownstreamConnection] = set()
        self._access_log = AccessLogger(options.access_log)
        self._admin = AdminServer(options.host, options.admin_port)
        self._tasks: list[asyncio.Task[None]] = []
        instance = options.instance_id or f"{options.name}-{socket.gethostname()}-{os.getpid()}"
        self._registrar = CloudMapRegistrar(options.control_plane, instance)
        self.telemetry = ProxyTelemetry(
            self.stats,
            Identity(options.mesh, options.kind, options.name, instance),
            TelemetryOptions(
                control_plane=options.control_plane,
                sampling=options.trace_sampling,
                rate_limit=options.trace_rate_limit,
                otlp_endpoint=options.otlp_endpoint,
                report_interval=options.report_interval,
            ),
            lambda: self.config.version if self.config is not None else None,
        )
        self._listening = False
        self._deadlines = Deadlines(self._clock)
        self.ports: dict[str, int] = {}

    # -- snapshots -----------------------------------------------------------------------

    @property
    def config(self) -> ProxyConfig | None:
        """The config in force (None until the first snapshot applies)."""
        return self._config.current

    @property
    def _state_file(self) -> Path | None:
        directory = self.options.state_dir
        return directory / f"{self.options.kind}-{self.options.name}.json" if directory else None

    def apply(self, version: int, data: dict[str, Any]) -> str | None:
        """Apply one snapshot; the reason it was refused, or None."""
        logging_plan = None
        try:
            snap = snapshot.decode(data)
            if (snap.mesh, snap.kind, snap.name) != (
                self.options.mesh,
                self.options.kind,
                self.options.name,
            ):
                raise ValueError(f"snapshot is for {snap.mesh}/{snap.kind}/{snap.name}")
            tls = self._tls.prepare(snap)  # bad certificate files refuse the snapshot
            logging_plan = self._access_log.prepare(snap.access_log)  # so do bad log formats
            config = build_config(snap, version, self._clusters, self._limits)
            self._inbound = self._inbound_cluster(snap)
            self._local = self._local_target(snap)
        except Exception as exc:  # any reason to refuse is reported, never raised
            if logging_plan is not None:
                self._access_log.discard(logging_plan)
            self.stats.inc("config_update_rejected")
            self.stats.events.add("config", version=version, accepted=False, error=str(exc))
            log.warning("snapshot rejected", extra={"version": version, "error": str(exc)})
            return f"{type(exc).__name__}: {exc}"
        first = self.config is None
        self._config.current = config
        self._tls.commit(tls)
        self._access_log.commit(logging_plan)
        self.stats.events.add("config", version=version, accepted=True)
        self.stats.inc("config_update_success")
        self.stats.set("config_version", version)
        self._persist(version, data)
        log.info("snapshot applied", extra={"version": version})
        if first:
            # What exists now (modules, the first config) lives as long as the process: keep
            # it out of every later collection, so collections stay short (request p99).
            gc.collect()
            gc.freeze()
        return None

    def _persist(self, version: int, data: dict[str, Any]) -> None:
        path = self._state_file
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"version": version, "snapshot": data}))
        os.replace(temporary, path)

    def _load_persisted(self) -> int:
        path = self._state_file
        if path is None or not path.exists():
            return 0
        try:
            saved = json.loads(path.read_text())
            version = int(saved["version"])
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable saved snapshot", extra={"error": str(exc)})
            return 0
        return version if self.apply(version, saved["snapshot"]) is None else 0

    def _inbound_cluster(self, snap: snapshot.Snapshot) -> ClusterRuntime | None:
        if self.options.app_port is None or not snap.listeners:
            return None
        listener = snap.listeners[0]
        config = snapshot.Cluster(
            name=f"inbound|{listener.port}",
            virtual_node=snap.name,
            port=self.options.app_port,
            protocol=listener.protocol,
            lb_policy="round_robin",
            connection_pool=listener.connection_pool,
            outlier_detection=None,
            health_check=listener.health_check,
            discovery=snapshot.Discovery(kind="none", ip_preference="IPv4_PREFERRED"),
            endpoints=(
                snapshot.Endpoint(
                    address="127.0.0.1", port=self.options.app_port, health="HEALTHY"
                ),
            ),
        )
        current = self._inbound
        if current is not None and current.config == config:
            return current
        if current is not None:
            current.close()
        return ClusterRuntime(
            config, self.stats, self._clock, self._rng, self.options.connect_timeout
        )

    def _local_target(self, snap: snapshot.Snapshot) -> tuple[ClusterRuntime, int, int] | None:
        """The inbound app's cluster and the listener's (request, idle) timeouts in ms, worked
        out once per snapshot rather than on every inbound request."""
        if self._inbound is None:
            return None
        request_ms, idle_ms = timeout_ms(snap.listeners[0].timeout)
        return self._inbound, request_ms, idle_ms

    def _inbound_target(self) -> tuple[ClusterRuntime, int, int] | None:
        return self._local

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        version = self._load_persisted()
        options = self.options
        if options.kind == "virtualGateway":
            await self._listen("gateway", options.gateway_port)
        else:
            await self._listen("outbound", options.outbound_port)
            for service, port in sorted(options.backend_ports.items()):
                backend = BackendPortConfig(service, port, self._config)
                await self._listen("outbound", port, backend, f"backend:{service}")
            if options.app_port is not None:
                await self._listen("inbound", options.inbound_port)
        self._admin_pages()
        await self._admin.start()
        self.ports["admin"] = self._admin.port
        self._listening = True
        identity = StreamIdentity(
            options.mesh, options.kind, options.name, self._registrar.instance_id
        )
        self._tasks.append(
            asyncio.create_task(
                follow_snapshots(options.control_plane, identity, self.apply, version=version)
            )
        )
        self._tasks.append(asyncio.create_task(self._sweep_idle()))
        self.telemetry.start()
        if options.kind == "virtualNode" and options.app_port is not None and options.register:
            self._tasks.append(asyncio.create_task(self._register_when_healthy()))
        log.info(
            "proxy started",
            extra={"ports": self.ports, "mesh": options.mesh, "proxy": options.name},
        )

    async def _listen(
        self,
        kind: str,
        port: int,
        config: Callable[[], ProxyConfig | None] | None = None,
        name: str | None = None,
    ) -> None:
        """Open a listener; a backend port passes its own config getter and ``name``."""
        current = config if config is not None else self._config
        name = name or kind
        destination = (  # the edge's destination when the listener fixes it
            self.options.name if kind == "inbound" else name.partition("backend:")[2] or None
        )
        telemetry = self.telemetry.listener(name, kind, destination)
        router = Router(
            kind,
            port,
            self.stats,
            self._clock,
            self._rng,
            self._deadlines,
            inbound=self._inbound_target,
            passthrough=self._clusters.passthrough,
        )

        def factory() -> DownstreamConnection:
            connection = DownstreamConnection(
                router, current, self.stats, self._access_log, name,
                self._connections.discard, telemetry=telemetry,
            )  # fmt: skip
            self._connections.add(connection)
            return connection

        server = await self._tls.listen(kind, factory, self.options.host, port, backlog=1024)
        self._servers.append(server)
        self.ports[name] = int(server.sockets[0].getsockname()[1])

    async def _sweep_idle(self) -> None:
        """Idle timeouts by one periodic sweep instead of a timer per request."""
        while True:
            await asyncio.sleep(1.0)
            now = self._clock()
            self._clusters.sweep(now)
            if self._inbound is not None:
                self._inbound.pool.sweep(now)

    async def _register_when_healthy(self) -> None:
        """Wait for the app to accept connections and a snapshot to say where to register."""
        options = self.options
        assert options.app_port is not None
        delay = 0.1
        while True:
            config = self.config
            registration = config.snapshot.registration if config is not None else None
            if registration is not None and await _app_answers(options.app_port):
                try:
                    await self._registrar.register(
                        registration,
                        options.advertise_address,
                        self.ports["inbound"],
                        options.attributes,
                    )
                    return
                except (RegistrationError, OSError, TimeoutError) as exc:
                    log.warning("registration failed; retrying", extra={"error": str(exc)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def drain(self) -> None:
        await self._registrar.deregister()
        for server in self._servers:
            server.close()
        for connection in list(self._connections):
            connection.close()
        deadline = time.monotonic() + self.options.drain_timeout
        while any(c.current is not None for c in self._connections):
            if time.monotonic() > deadline:
                log.warning("drain timeout: closing requests in flight")
                break
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        # Bounded: a cancellation that lands as a wait_for completes can be lost (Python
        # 3.11), and a task that ignores it must not keep the process from exiting.
        if self._tasks:
            done, stuck = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT)
            for task in done:
                if not task.cancelled():
                    task.exception()  # retrieved: its failure was logged where it happened
            for task in stuck:
                log.warning("task did not stop in time", extra={"task": task.get_name()})
        await self.telemetry.stop()  # after the drain: the last report holds its requests
        await self._admin.stop()
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.close()
        self._clusters.close()
        if self._inbound is not None:
            self._inbound.close()
        self._deadlines.close()
        self._access_log.close()

    async def run_until_signalled(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await self.start()
        try:
            await stop.wait()
            log.info("signal received; draining")
            await self.drain()
        finally:
            await self.stop()

    # -- admin ---------------------------------------------------------------------------

    def _admin_pages(self) -> None:
        def ready() -> tuple[int, str, bytes]:
            ok = self.config is not None and self._listening
            return (200, "text/plain", b"ready\n") if ok else (503, "text/plain", b"no config\n")

        def stats() -> tuple[int, str, bytes]:
            return 200, "text/plain; version=0.0.4", self.stats.render().encode()

        def config_dump() -> tuple[int, str, bytes]:
            config = self.config
            if config is None:
                return 503, "application/json", b'{"message":"no snapshot in force"}\n'
            body = {"version": config.version, "snapshot": to_json(config.snapshot)}
            return 200, "application/json", json.dumps(body, indent=1).encode()

        def clusters() -> tuple[int, str, bytes]:
            config = self.config
            states = [c.snapshot_state() for c in (config.clusters.values() if config else ())]
            if self._inbound is not None:
                states.append(self._inbound.snapshot_state())
            return 200, "application/json", json.dumps({"clusters": states}, indent=1).encode()

        self._admin.add("/ready", ready)
        self._admin.add("/stats", stats)
        self._admin.add("/stats/prometheus", stats)
        self._admin.add("/config_dump", config_dump)
        self._admin.add("/clusters", clusters)


async def _app_answers(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True
