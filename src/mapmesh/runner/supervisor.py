"""The supervisor: runs a whole app file on this machine and keeps it running.

Theory of operation
-------------------
Start-up (:meth:`Supervisor.run`): open the control endpoint and write ``runner.json`` (so
``ps``/``down`` find it from the first second), start the control plane unless one was given,
create the Cloud Map namespace and services, then hand over to the reconciler. Once every
replica is ready and the gateway answers, the phase becomes ``running`` (``up`` prints the
gateway URL then). SIGINT/SIGTERM or ``POST /down`` stop everything in order: gateway, then
all replicas at once (sidecars first, so instances leave Cloud Map before apps stop), then
the control plane; a second signal kills whatever is left.

The desired state is the app file (:class:`~mapmesh.runner.launch.LaunchSpec` and replica
count per virtual node) plus ``scale`` overrides, versioned by a *generation* that every
``apply``/``scale`` bumps. The reconciler is one task that wakes on every change — a new
generation, a replica becoming ready or failing, a replica finishing its stop — and in each
pass:

1. applies the derived mesh when the generation or the set of nodes with a ready replica
   changed (route weights only name nodes that can answer, :func:`derive.derive`);
2. asks :func:`rollout.next_step` what each node needs and does it (start replicas, stop
   one, give up a rollout whose replacement keeps failing);
3. stops every replica of nodes no longer in the file, and once they are gone deletes the
   resources the file no longer derives;
4. records the generation as converged when no node has anything left to do.

Decisions are made synchronously from the current views; the I/O they ask for (starting
and stopping processes, control-plane calls in a worker thread) runs as tasks that wake the
reconciler when they finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mapmesh.cli.client import ClientError, CloudMapClient
from mapmesh.runner import derive
from mapmesh.runner.appfile import AppFile, AppFileError, load_file
from mapmesh.runner.control import ControlServer
from mapmesh.runner.daemons import Daemon, DaemonFailed, http_ready
from mapmesh.runner.launch import LaunchSpec, launch_specs, nodes_named
from mapmesh.runner.meshsync import MeshSync
from mapmesh.runner.ports import PortAllocator
from mapmesh.runner.processes import Child
from mapmesh.runner.replica import LOCAL_TRACING, Replica, ReplicaState, RunnerContext
from mapmesh.runner.rollout import Abort, Start, Stop, next_step
from mapmesh.runner.state import RunnerState, remove_state, write_state

__all__ = ["Supervisor", "SupervisorOptions"]

log = logging.getLogger("mapmesh.runner")

_CONTROL_PLANE_START = 30.0
_GATEWAY_PREFIX = "gateway"


@dataclass(frozen=True)
class SupervisorOptions:
    app_file: Path
    state_dir: Path
    control_plane: str | None = None  # None: start one
    api_port: int = 7070
    dns_port: int = 8053
    gateway_port: int | None = None  # overrides the file's gateway.port
    log_level: str = "info"
    access_log: bool = True
    drain_timeout: float = 5.0
    python: str = sys.executable


class Supervisor:
    def __init__(
        self, options: SupervisorOptions, app: AppFile, report: Callable[[str], None]
    ) -> None:
        self.options = options
        self.app = app
        self.report = report
        self.state_dir = options.state_dir
        self.logs = options.state_dir / "logs"
        self.token = secrets.token_urlsafe(24)
        self.control = ControlServer(self._handle, self.token)
        self.ports = PortAllocator()
        self.control_plane_url = options.control_plane or ""
        self.dns_port: int | None = None
        self.control_plane: Daemon | None = None
        self.gateway: Daemon | None = None
        self.gateway_port: int | None = None
        self.gateway_admin_port: int | None = None
        self.sync: MeshSync | None = None
        self.ctx: RunnerContext | None = None
        # desired state
        self.generation = 1
        self.converged_generation = 0
        self.specs: dict[str, LaunchSpec] = {}
        self.counts: dict[str, int] = {}
        self.overrides: dict[str, int] = {}
        self.failed: dict[str, LaunchSpec] = {}  # node → the spec whose rollout was given up
        self.errors: list[str] = []
        # actual state
        self.replicas: dict[str, list[Replica]] = {}
        self.next_number: dict[str, int] = {}
        self.phase = "starting"
        self._applied: tuple[int, frozenset[str]] | None = None
        self._refused: tuple[int, frozenset[str]] | None = None
        self._gateway_refused = 0
        self._prune_pending = False
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._stopped_signals = 0
        self._seen: dict[str, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._set_desired(app)

    # -- desired state -------------------------------------------------------------------

    def _set_desired(self, app: AppFile) -> None:
        self.app = app
        self.specs = launch_specs(app, self.options.app_file.resolve().parent)
        self.counts = {v.node: v.replicas for v in app.versions}
        self.overrides = {}
        self.failed = {}
        self.errors = []

    def _count(self, node: str) -> int:
        return self.overrides.get(node, self.counts[node])

    def _bump(self) -> int:
        self.generation += 1
        self._wake.set()
        return self.generation

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self) -> int:
        """Run until stopped; the exit code (0 after a clean stop)."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, self._on_signal)
        code = 0
        try:
            await self.control.start()
            self._write_state()
            await self._start_control_plane()
            await self._prepare_registry()
            reconciler = asyncio.create_task(self._reconcile_forever(), name="reconciler")
            waiting = asyncio.create_task(self._stop.wait())
            await asyncio.wait({reconciler, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if reconciler.done():
                reconciler.result()  # a bug in the reconciler: surface it
            reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reconciler
        except (DaemonFailed, ClientError, OSError) as exc:
            self.report(f"error: {exc}")
            self.errors.append(str(exc))
            self._write_state(error=str(exc))
            code = 1
        finally:
            await self._shutdown()
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(signum)
        return code

    def _on_signal(self) -> None:
        self._stopped_signals += 1
        if self._stopped_signals == 1:
            self.report("stopping (press Ctrl-C again to kill everything at once)")
            self.request_stop()
        else:
            self.report("killing everything")
            for child in self._children():
                child.kill()

    def request_stop(self) -> None:
        self._stop.set()

    async def _start_control_plane(self) -> None:
        options = self.options
        if options.control_plane is not None:
            self.control_plane_url = options.control_plane.rstrip("/")
        else:
            api_port = options.api_port or self.ports.take()
            dns_port = options.dns_port or self.ports.take_tcp_udp()
            self.dns_port = dns_port
            self.control_plane_url = f"http://127.0.0.1:{api_port}"
            argv = [
                options.python, "-m", "mapmesh", "server",
                "--data-dir", str(self.state_dir / "controlplane"), "--host", "127.0.0.1",
                "--port", str(api_port), "--dns-port", str(dns_port),
                "--log-level", options.log_level,
            ]  # fmt: skip
            self.control_plane = Daemon(
                "control plane", argv, self.logs / "controlplane.log",
                http_ready(api_port, "/healthz"), self.report,
                start_timeout=_CONTROL_PLANE_START,
            )  # fmt: skip
            await self.control_plane.start()
            self.report(f"control plane {self.control_plane_url} (DNS on 127.0.0.1:{dns_port})")
        self.sync = MeshSync(self.control_plane_url)
        self.ctx = RunnerContext(
            control_plane=self.control_plane_url,
            logs=self.logs,
            proxies=self.state_dir / "proxies",
            ports=self.ports,
            cloud_map=CloudMapClient(self.control_plane_url),
            python=options.python,
            drain_timeout=options.drain_timeout,
            access_log=options.access_log,
            log_level=options.log_level,
        )
        self._write_state()

    async def _prepare_registry(self) -> None:
        assert self.sync is not None
        derived = derive.derive(self.app)
        await asyncio.to_thread(self.sync.ensure_cloud_map, derived)
        removed = await asyncio.to_thread(self.sync.deregister_leftovers, derived)
        if removed:
            self.report(f"deregistered {removed} instance(s) left behind by an earlier run")

    async def _shutdown(self) -> None:
        self.phase = "stopping"
        self._write_state()
        if self.gateway is not None:
            await self.gateway.stop()
            self.gateway = None
        replicas = [r for group in self.replicas.values() for r in group]
        if replicas:
            self.report(f"stopping {len(replicas)} replica(s)")
            await asyncio.gather(*(r.stop() for r in replicas), return_exceptions=True)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)
        if self.control_plane is not None:
            await self.control_plane.stop()
        await self.control.stop()
        remove_state(self.state_dir, os.getpid())
        self.report("stopped")

    def _children(self) -> list[Child]:
        children: list[Child] = []
        for daemon in (self.gateway, self.control_plane):
            if daemon is not None and daemon.child is not None:
                children.append(daemon.child)
        for group in self.replicas.values():
            for replica in group:
                children += [c for c in (replica.sidecar, replica.app) if c is not None]
        return children

    # -- the reconciler ------------------------------------------------------------------

    async def _reconcile_forever(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            await self._reconcile()
            await self._wake.wait()

    async def _reconcile(self) -> None:
        generation = self.generation
        if not await self._sync_mesh(generation):
            return
        busy = False
        for node, spec in self.specs.items():
            if self.failed.get(node) == spec:
                continue
            views = [r.view() for r in self.replicas.get(node, [])]
            step = next_step(views, spec, self._count(node))
            if step is None:
                continue
            busy = True
            if isinstance(step, Start):
                for _ in range(step.count):
                    self._start_replica(spec)
            elif isinstance(step, Stop):
                self._stop_replica(self._replica(node, step.number))
            elif isinstance(step, Abort):
                self._abort(node, spec, step.number)
        for node, group in self.replicas.items():
            if node not in self.specs:
                busy = True
                for replica in group:
                    if not replica.stopping:
                        self._stop_replica(replica)
                        self._prune_pending = True
        if any(r.stopping for group in self.replicas.values() for r in group):
            busy = True
        await self._sync_gateway()
        if not busy and self._prune_pending:
            self._prune_pending = False
            await self._prune()
        if not busy and generation == self.generation:
            self._converged(generation)

    async def _sync_mesh(self, generation: int) -> bool:
        """Apply the derived mesh if it changed; False when the control plane refused."""
        assert self.sync is not None
        ready = frozenset(
            node for node, group in self.replicas.items() if any(r.ready for r in group)
        )
        key = (generation, ready)
        if self._applied == key:
            return True
        if self._refused == key:
            return False  # nothing changed since the control plane refused it
        app = self.app
        derived = derive.derive(app, ready)
        try:
            if self._applied is None or self._applied[0] != generation:
                await asyncio.to_thread(self.sync.ensure_cloud_map, derived)
            results = await asyncio.to_thread(
                self.sync.apply, derived, f"{self.options.app_file} (derived)"
            )
        except (ClientError, ValueError) as exc:
            message = f"applying the mesh failed: {exc}"
            if self.phase == "starting":
                raise DaemonFailed(message) from None
            self.report(f"error: {message}")
            self.errors.append(message)
            self._refused = key
            return False
        changed = sum(n for action, n in results.items() if action != "unchanged")
        if self._applied is None:
            self.report(f"mesh {derived.mesh}: {sum(results.values())} resources applied")
        elif changed:
            self.report(f"mesh {derived.mesh}: {changed} resource(s) updated")
        self._applied = key
        return True

    async def _prune(self) -> None:
        assert self.sync is not None
        try:
            removed = await asyncio.to_thread(self.sync.prune, derive.derive(self.app))
        except ClientError as exc:
            self.errors.append(f"removing resources failed: {exc}")
            return
        for label in removed:
            self.report(f"removed {label}")

    async def _sync_gateway(self) -> None:
        """Start, restart (port changed) or stop the gateway to match the file."""
        wanted = self.app.gateway
        port = self.options.gateway_port or (wanted.port if wanted is not None else None)
        if self.gateway is not None and (wanted is None or port != self.gateway_port):
            await self.gateway.stop()
            self.gateway = self.gateway_admin_port = None
            self.report("gateway stopped")
        if wanted is None or self.gateway is not None or port is None:
            return
        if self._gateway_refused == self.generation:
            return  # it failed to start; try again when the file or the scale changes
        assert self.ctx is not None
        admin = self.ports.take()
        argv = [
            self.options.python, "-m", "mapmesh", "gateway",
            "--control-plane", self.control_plane_url, "--mesh", self.app.app,
            "--virtual-gateway", derive.GATEWAY_NAME, "--port", str(port),
            "--admin-port", str(admin), "--state-dir", str(self.ctx.proxies / _GATEWAY_PREFIX),
            "--drain-timeout", f"{self.options.drain_timeout:g}",
            "--log-level", self.options.log_level, *LOCAL_TRACING,
        ]  # fmt: skip
        if self.options.access_log:
            argv += ["--access-log", "-"]
        gateway = Daemon(
            "gateway", argv, self.logs / "gateway.log", http_ready(admin, "/ready"), self.report
        )
        self.gateway, self.gateway_port = gateway, port  # stopped by _shutdown even mid-start
        self.gateway_admin_port = admin
        try:
            await gateway.start()
        except (DaemonFailed, OSError) as exc:
            await gateway.stop()
            self.gateway = self.gateway_port = self.gateway_admin_port = None
            self.ports.release(admin)
            message = str(exc)
            if "in use" in message or "cannot start the proxy" in message:
                message += f"\nIs port {port} in use? Set gateway.port or pass --gateway-port."
            if self.phase == "starting":
                raise DaemonFailed(message) from None
            self.report(f"error: {message}")
            self.errors.append(message)
            self._gateway_refused = self.generation
            return
        self.report(f"gateway http://127.0.0.1:{port}")
        self._write_state()

    def _start_replica(self, spec: LaunchSpec) -> None:
        assert self.ctx is not None
        number = self.next_number.get(spec.service, 1)
        self.next_number[spec.service] = number + 1
        replica = Replica(self.ctx, spec, number, lambda: self._replica_changed(replica))
        self.replicas.setdefault(spec.node, []).append(replica)
        replica.start()

    def _stop_replica(self, replica: Replica) -> None:
        replica.stopping = True

        async def stop() -> None:
            try:
                await replica.stop()
            finally:
                group = self.replicas.get(replica.spec.node, [])
                if replica in group:
                    group.remove(replica)
                if not group:
                    self.replicas.pop(replica.spec.node, None)
                ports = replica.ports
                if ports is not None:
                    self.ports.release(ports.app, ports.inbound, ports.outbound, ports.admin)
                self._wake.set()

        self._spawn(stop())

    def _abort(self, node: str, spec: LaunchSpec, number: int) -> None:
        replica = self._replica(node, number)
        message = (
            f"gave up replacing {node}: replica {number} did not become ready "
            f"({replica.last_exit or replica.health_reason}); the previous replicas keep "
            f"serving. See `mapmesh logs {spec.service} --replica {number}`."
        )
        self.report(f"error: {message}")
        self.errors.append(message)
        self.failed[node] = spec
        for other in self.replicas.get(node, []):
            if other.spec == spec and not other.stopping:
                self._stop_replica(other)

    def _replica(self, node: str, number: int) -> Replica:
        return next(r for r in self.replicas[node] if r.number == number)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _replica_changed(self, replica: Replica) -> None:
        """Report state transitions once, and wake the reconciler."""
        key = f"{replica.spec.service}.{replica.number}"
        state = replica.state.value
        if self._seen.get(key) != state:
            self._seen[key] = state
            self._report_replica(replica, key)
        if state == ReplicaState.STOPPED.value:
            self._seen.pop(key, None)
        self._write_state()
        self._wake.set()

    def _report_replica(self, replica: Replica, key: str) -> None:
        name = f"{key} ({replica.spec.node})" if replica.spec.version else key
        state = replica.state
        if state is ReplicaState.RUNNING:
            pid = replica.app.pid if replica.app is not None else "?"
            self.report(f"{name} running (pid {pid}, port {replica.ports and replica.ports.app})")
        elif state is ReplicaState.RESTARTING:
            self.report(
                f"{name} down: {replica.last_exit}; restarting (restart {replica.restarts})"
            )
        elif state is ReplicaState.STOPPED and replica.stopping:
            self.report(f"{name} stopped")

    def _converged(self, generation: int) -> None:
        if self.converged_generation >= generation:
            return
        self.converged_generation = generation
        if self.phase == "starting":
            self.phase = "running"
            gateway = self.gateway_url
            where = f" at {gateway}" if gateway else ""
            self.report(f"ready: {self.app.app}{where} (Ctrl-C stops everything)")
        else:
            self.report(f"generation {generation} rolled out")
        self._write_state()

    # -- views ---------------------------------------------------------------------------

    @property
    def gateway_url(self) -> str | None:
        if self.gateway is None or self.gateway_port is None:
            return None
        return f"http://127.0.0.1:{self.gateway_port}"

    def status(self) -> dict[str, Any]:
        replicas = sorted(
            (r.status() for group in self.replicas.values() for r in group),
            key=lambda s: (s["service"], s["replica"]),
        )
        gateway = None
        if self.gateway is not None:
            gateway = {
                "url": self.gateway_url,
                "admin_port": self.gateway_admin_port,
                "pid": self.gateway.pid,
                "restarts": self.gateway.restarts,
                "log": str(self.gateway.log_path),
            }
        return {
            "app": self.app.app,
            "namespace": self.app.namespace,
            "app_file": str(self.options.app_file),
            "state_dir": str(self.state_dir),
            "pid": os.getpid(),
            "phase": self.phase,
            "generation": self.generation,
            "converged_generation": self.converged_generation,
            "errors": list(self.errors),
            "control_plane": self.control_plane_url,
            "control_plane_pid": self.control_plane.pid if self.control_plane else None,
            "control_url": self.control.url,
            "dns_port": self.dns_port,
            "gateway": gateway,
            "nodes": {
                node: {
                    "service": spec.service,
                    "version": spec.version or "",
                    "replicas": self._count(node),
                }
                for node, spec in self.specs.items()
            },
            "replicas": replicas,
        }

    def _write_state(self, error: str | None = None) -> None:
        children = [c.pid for c in self._children() if c.running]
        write_state(
            self.state_dir,
            RunnerState(
                pid=os.getpid(),
                control_url=self.control.url,
                token=self.token,
                app_file=str(self.options.app_file),
                phase=self.phase,
                control_plane=self.control_plane_url,
                dns_port=self.dns_port,
                gateway_url=self.gateway_url,
                error=error,
                children=children,
            ),
        )

    # -- the control endpoint ------------------------------------------------------------

    async def _handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if method == "GET" and path == "/status":
            return 200, self.status()
        if method == "POST" and path == "/apply":
            return self._apply_request(body)
        if method == "POST" and path == "/scale":
            return self._scale_request(body)
        if method == "POST" and path == "/down":
            self.report("stop requested by `mapmesh down`")
            self.request_stop()
            return 202, {"stopping": True, "pid": os.getpid()}
        return 404, {"error": f"no such endpoint: {method} {path}"}

    def _apply_request(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        file = body.get("file")
        if not isinstance(file, str):
            return 400, {"error": 'give the app file\'s path as {"file": PATH}'}
        try:
            app = load_file(Path(file))
        except AppFileError as exc:
            return 400, {"error": str(exc)}
        problem = derive.refusal(app, file)
        if problem is not None:
            return 400, {"error": problem}
        if Path(file).resolve() != self.options.app_file.resolve():
            return 409, {
                "error": f"this runner runs {self.options.app_file}; stop it with `mapmesh down` "
                f"or use another --state-dir for {file}"
            }
        if (app.app, app.namespace) != (self.app.app, self.app.namespace):
            return 409, {
                "error": f"the running app is {self.app.app!r} in namespace "
                f"{self.app.namespace!r}; app and namespace cannot change while it runs. "
                "Stop it with `mapmesh down`, then `mapmesh up` again"
            }
        specs = launch_specs(app, Path(file).resolve().parent)
        replaced = sorted(
            node
            for node, spec in specs.items()
            if any(r.spec != spec for r in self.replicas.get(node, []) if not r.stopping)
        )
        self._set_desired(app)
        self._prune_pending = True
        generation = self._bump()
        self.report(
            f"app file changed (generation {generation})"
            + (f"; replacing {', '.join(replaced)}" if replaced else "")
        )
        return 200, {"generation": generation, "replacing": replaced}

    def _scale_request(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        counts = body.get("counts")
        if not isinstance(counts, dict) or not counts:
            return 400, {"error": 'give {"counts": {SERVICE: N}}'}
        resolved: dict[str, int] = {}
        for name, count in counts.items():
            if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 100:
                return 400, {"error": f"{name}={count}: the count must be a number from 0 to 100"}
            nodes = nodes_named(str(name), self.specs)
            if isinstance(nodes, str):
                return 400, {"error": nodes}
            for node in nodes:
                resolved[node] = count
        self.overrides.update(resolved)
        for node in resolved:
            self.failed.pop(node, None)
        generation = self._bump()
        self.report("scaled " + ", ".join(f"{n}={c}" for n, c in resolved.items()))
        return 200, {"generation": generation, "counts": resolved}
