"""The control plane process: store, registry, mesh, health checks, DNS and the HTTP APIs.

Start order follows the data: the store opens, the registry's view loads from it, the DNS
table and health runner subscribe to the view, unfinished operations resume, then the
listeners open. Stop runs the same list backwards, so nothing serves from a closed store.
DNS runs on its own thread and event loop (see ``mapmesh.dns.server``) so answering never
waits behind API or health work on the main loop.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from mapmesh.api.app import create_app
from mapmesh.dns import DnsServer, DnsTable
from mapmesh.health import HealthRunner
from mapmesh.mesh.service import MeshService
from mapmesh.mesh.view import MeshView
from mapmesh.registry.registry import Registry
from mapmesh.registry.view import RegistryView
from mapmesh.store import Store, open_store
from mapmesh.xds.service import SnapshotService

__all__ = ["ControlPlane", "ControlPlaneConfig"]

log = logging.getLogger("mapmesh.server")


@dataclass(frozen=True)
class ControlPlaneConfig:
    data_dir: Path = field(default_factory=lambda: Path(".mapmesh"))
    host: str = "127.0.0.1"
    port: int = 7070
    dns_port: int = 8053
    dns_host: str | None = None  # defaults to ``host``
    account_id: str = "111122223333"
    region: str = "us-east-1"
    health_interval: float = 10.0
    health_timeout: float = 2.0


class ControlPlane:
    def __init__(self, config: ControlPlaneConfig) -> None:
        self.config = config
        self.store: Store | None = None
        self.view: RegistryView | None = None
        self.registry: Registry | None = None
        self.mesh_view: MeshView | None = None
        self.mesh: MeshService | None = None
        self.snapshots: SnapshotService | None = None
        self.dns: DnsServer | None = None
        self.health: HealthRunner | None = None
        self._http: uvicorn.Server | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._http_socket: socket.socket | None = None

    @property
    def port(self) -> int:
        """The bound API port (useful when configured as 0)."""
        assert self._http_socket is not None
        return int(self._http_socket.getsockname()[1])

    @property
    def dns_port(self) -> int:
        assert self.dns is not None
        return self.dns.port

    async def start(self) -> None:
        config = self.config
        self.store = await open_store(config.data_dir)
        self.view = RegistryView(self.store)
        self.registry = Registry(self.store, self.view)
        self.mesh_view = MeshView(self.store)
        self.mesh = MeshService(self.store, self.mesh_view)
        self.snapshots = SnapshotService(self.mesh_view, self.view)
        table = DnsTable()
        self.view.subscribe(lambda change: table.rebuild(self.view, change))  # type: ignore[arg-type]
        self.health = HealthRunner(
            self.view, self.registry, interval=config.health_interval, timeout=config.health_timeout
        )
        await self.view.start()
        await self.mesh_view.start()
        await self.registry.start()
        await self.health.start()
        self.dns = DnsServer(table, config.dns_host or config.host, config.dns_port)
        self.dns.start()
        await self._start_http()
        # Everything loaded so far lives as long as the process: keep it out of every later
        # garbage collection (full collections otherwise rescan it, ~100 ms with big meshes).
        gc.collect()
        gc.freeze()
        log.info(
            "control plane started",
            extra={
                "api": f"http://{config.host}:{self.port}",
                "dns": f"{config.dns_host or config.host}:{self.dns_port}",
                "data_dir": str(config.data_dir),
            },
        )

    async def _start_http(self) -> None:
        config = self.config
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((config.host, config.port))
        except OSError:
            sock.close()
            raise
        sock.listen(1024)
        sock.setblocking(False)
        self._http_socket = sock
        assert self.registry and self.mesh and self.snapshots
        app = create_app(
            self.registry,
            self.mesh,
            self.snapshots,
            account=config.account_id,
            default_region=config.region,
        )
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                lifespan="off",
                log_config=None,
                access_log=False,
                loop="none",
                timeout_graceful_shutdown=5,
            )
        )
        server.config.load()
        server.lifespan = server.config.lifespan_class(server.config)
        await server.startup(sockets=[sock])
        self._http = server
        self._http_task = asyncio.create_task(server.main_loop(), name="http")

    async def stop(self) -> None:
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            await self._http_task
            await self._http.shutdown(sockets=[self._http_socket] if self._http_socket else None)
            self._http = None
        if self.dns is not None:
            self.dns.stop()
        if self.health is not None:
            await self.health.stop()
        if self.registry is not None:
            await self.registry.stop()
        if self.mesh_view is not None:
            await self.mesh_view.stop()
        if self.view is not None:
            await self.view.stop()
        if self.store is not None:
            await self.store.close()
        log.info("control plane stopped")

    async def run_until_signalled(self) -> None:
        """Serve until SIGTERM or SIGINT, then shut down gracefully."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await self.start()
        try:
            await stop.wait()
            log.info("signal received; shutting down")
        finally:
            await self.stop()
