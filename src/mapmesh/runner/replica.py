"""One replica: an app process and its sidecar, started, watched, restarted and stopped.

Theory of operation
-------------------
A replica is a numbered copy of one virtual node (``worker-v1`` replica 3, Cloud Map instance
``worker-v1-3``). Its driver (:meth:`Replica._run`) repeats *attempts* until it is told to
stop:

1. **start** — take free ports, start the sidecar (``mapmesh proxy``) and then the app, so the
   app's outbound proxy is there from its first request. State ``starting``.
2. **become ready** — probe the app directly (its health check, fast at first) until
   :class:`~mapmesh.runner.health.HealthTracker` calls it healthy, the sidecar's admin
   ``/ready`` answers and the sidecar has registered the instance in Cloud Map (the sidecar
   registers once the app accepts connections). All within the health check's start timeout.
   State ``running``; from now on callers and the gateway route to it.
3. **watch** — probe every interval; the attempt ends when the app or the sidecar exits or
   the app fails ``unhealthyThreshold`` checks in a row.
4. **tear down** — SIGTERM the sidecar first (it deregisters the instance, stops accepting
   and finishes requests in flight), then the app. If the sidecar did not exit cleanly, or
   the instance is still listed, it is deregistered here, so a replica that is down is never
   left in Cloud Map.

A failed attempt is followed by a pause from :class:`~mapmesh.core.backoff.Backoff`
(exponential, with jitter; reset after a replica stayed up :data:`STABLE_AFTER` seconds),
during which the state is ``restarting``. :meth:`Replica.stop` ends the current attempt with
the same tear-down and no restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from mapmesh.cli.client import ApiError, ClientError, CloudMapClient
from mapmesh.core.backoff import Backoff
from mapmesh.core.probes import ProbeTarget, probe
from mapmesh.model.registry import HealthCheckType
from mapmesh.runner.health import Health, HealthTracker
from mapmesh.runner.launch import LaunchSpec, app_environment
from mapmesh.runner.ports import PortAllocator
from mapmesh.runner.processes import Child, describe_exit
from mapmesh.runner.rollout import ReplicaView

__all__ = ["STABLE_AFTER", "Replica", "ReplicaPorts", "ReplicaState", "RunnerContext"]

log = logging.getLogger("mapmesh.runner")

STABLE_AFTER = 30.0
"""Seconds a replica must stay up before its restart backoff starts again from the bottom."""

_FIRST_POLL = 0.05
_MAX_START_POLL = 0.25


# A mesh run on one machine traces every request (the dashboard's trace view is much of the
# point of running it here); a production sidecar's default samples a few percent, at most 50
# traces a second.
LOCAL_TRACING = ("--trace-sampling", "1", "--trace-rate-limit", "0")


class ReplicaState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass
class RunnerContext:
    """What every replica of one runner shares."""

    control_plane: str
    logs: Path
    proxies: Path
    ports: PortAllocator
    cloud_map: CloudMapClient
    inherited_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    python: str = sys.executable
    drain_timeout: float = 5.0
    access_log: bool = True
    log_level: str = "info"


@dataclass(frozen=True, slots=True)
class ReplicaPorts:
    app: int
    inbound: int
    outbound: int
    admin: int


class _Stopped:
    """The attempt ended because the replica was told to stop."""


_STOPPED = _Stopped()


class Replica:
    def __init__(
        self, ctx: RunnerContext, spec: LaunchSpec, number: int, on_change: Callable[[], None]
    ) -> None:
        self.ctx = ctx
        self.spec = spec
        self.number = number
        self.state = ReplicaState.STARTING
        self.ready = False
        self.restarts = 0
        self.failures = 0  # attempts in a row that never became ready
        self.health = Health.STARTING
        self.health_reason = "not checked yet"
        self.last_exit: str | None = None
        self.ports: ReplicaPorts | None = None
        self.app: Child | None = None
        self.sidecar: Child | None = None
        self.stopping = False
        self._on_change = on_change
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tracker = HealthTracker(
            spec.health.healthy_threshold, spec.health.unhealthy_threshold
        )

    # -- identity and views --------------------------------------------------------------

    @property
    def instance_id(self) -> str:
        return f"{self.spec.node}-{self.number}"

    @property
    def log_path(self) -> Path:
        return self.ctx.logs / f"{self.spec.service}.{self.number}.log"

    @property
    def sidecar_log_path(self) -> Path:
        return self.ctx.logs / f"{self.spec.service}.{self.number}.sidecar.log"

    def view(self) -> ReplicaView[LaunchSpec]:
        return ReplicaView(self.number, self.spec, self.ready, self.failures, self.stopping)

    def status(self) -> dict[str, Any]:
        """What ``mapmesh ps`` shows (JSON-ready)."""
        ports = self.ports
        return {
            "service": self.spec.service,
            "version": self.spec.version or "",
            "node": self.spec.node,
            "replica": self.number,
            "instance": self.instance_id,
            "state": self.state.value,
            "pid": self.app.pid if self.app is not None and self.app.running else None,
            "sidecar_pid": self.sidecar.pid
            if self.sidecar is not None and self.sidecar.running
            else None,
            "app_port": ports.app if ports else None,
            "inbound_port": ports.inbound if ports else None,
            "outbound_port": ports.outbound if ports else None,
            "admin_port": ports.admin if ports else None,
            "restarts": self.restarts,
            "health": self.health.value,
            "health_reason": self.health_reason,
            "last_exit": self.last_exit,
            "log": str(self.log_path),
            "sidecar_log": str(self.sidecar_log_path),
        }

    # -- control -------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"replica {self.instance_id}")

    async def stop(self) -> None:
        """Take the replica out of service and stop its processes; returns when they are gone."""
        self.stopping = True
        self._stop.set()
        if self._task is not None:
            await self._task

    def _set(self, state: ReplicaState) -> None:
        self.state = state
        self._on_change()

    # -- the driver ----------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff(base=0.5, cap=30.0)
        try:
            while not self._stop.is_set():
                began = time.monotonic()
                outcome = await self._attempt()
                if isinstance(outcome, _Stopped):
                    break
                self.last_exit = outcome
                self.restarts += 1
                if time.monotonic() - began > STABLE_AFTER:
                    backoff.reset()
                self._set(ReplicaState.RESTARTING)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), backoff.next())
        finally:
            self.ready = False
            self._set(ReplicaState.STOPPED)

    async def _attempt(self) -> str | _Stopped:
        """One start of the replica; why it ended (a reason to restart, or stopped)."""
        self.ready = False
        self._tracker = HealthTracker(
            self.spec.health.healthy_threshold, self.spec.health.unhealthy_threshold
        )
        self._show_health()
        self._set(ReplicaState.STARTING)
        try:
            await self._launch()
        except OSError as exc:
            await self._tear_down()
            self.failures += 1
            return f"cannot start: {exc}"
        assert self.app is not None and self.sidecar is not None
        waits: dict[asyncio.Future[Any], str] = {
            asyncio.ensure_future(self.app.wait()): "app",
            asyncio.ensure_future(self.sidecar.wait()): "sidecar",
            asyncio.ensure_future(self._stop.wait()): "stop",
        }
        try:
            outcome = await self._become_ready(waits)
            if outcome is not None:
                self.failures += 1
                return outcome
            self.ready = True
            self.failures = 0
            self._set(ReplicaState.RUNNING)
            return await self._watch(waits)
        finally:
            self.ready = False
            for waiter in waits:
                waiter.cancel()
            if self._stop.is_set():
                self._set(ReplicaState.STOPPING)
            await self._tear_down()

    async def _launch(self) -> None:
        ctx, spec = self.ctx, self.spec
        previous = self.ports
        if previous is not None:
            ctx.ports.release(previous.app, previous.inbound, previous.outbound, previous.admin)
        ports = ReplicaPorts(
            app=ctx.ports.take(previous.app if previous else None),
            inbound=ctx.ports.take(previous.inbound if previous else None),
            outbound=ctx.ports.take(previous.outbound if previous else None),
            admin=ctx.ports.take(previous.admin if previous else None),
        )
        self.ports = ports
        banner = f"replica {self.number} start {self.restarts + 1} at {time.strftime('%H:%M:%S')}"
        self.sidecar = await Child.spawn(
            f"{self.instance_id} sidecar",
            self._sidecar_argv(ports),
            self.sidecar_log_path,
            env=ctx.inherited_env,
            banner=banner,
        )
        env = app_environment(
            spec, self.number, ports.app, ports.outbound, ctx.inherited_env,
            os.path.dirname(ctx.python),
        )  # fmt: skip
        self.app = await Child.spawn(
            self.instance_id,
            self._app_argv(),
            self.log_path,
            env=env,
            cwd=spec.cwd,
            banner=banner,
        )
        self._on_change()

    def _app_argv(self) -> list[str]:
        command = list(self.spec.command)
        if command[0] in ("python", "python3"):
            command[0] = self.ctx.python  # the interpreter (and packages) mapmesh runs with
        return command

    def _sidecar_argv(self, ports: ReplicaPorts) -> list[str]:
        ctx, spec = self.ctx, self.spec
        argv = [
            ctx.python, "-m", "mapmesh", "proxy",
            "--control-plane", ctx.control_plane, "--mesh", spec.mesh,
            "--virtual-node", spec.node, "--app-port", str(ports.app),
            "--inbound-port", str(ports.inbound), "--outbound-port", str(ports.outbound),
            "--admin-port", str(ports.admin), "--instance-id", self.instance_id,
            "--attribute", f"replica={self.number}",
            "--state-dir", str(ctx.proxies / self.instance_id),
            "--drain-timeout", f"{ctx.drain_timeout:g}", "--log-level", ctx.log_level,
            *LOCAL_TRACING,
        ]  # fmt: skip
        if ctx.access_log:
            argv += ["--access-log", "-"]
        return argv

    async def _pause(
        self, waits: dict[asyncio.Future[Any], str], seconds: float
    ) -> str | _Stopped | None:
        """Sleep up to ``seconds``; what ended the attempt meanwhile (None: nothing did)."""
        done, _ = await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for waiter in done:
            what = waits[waiter]
            if what == "stop":
                return _STOPPED
            code = waiter.result()
            return f"{'app' if what == 'app' else 'sidecar'} {describe_exit(code)}"
        return None

    async def _check(self) -> Health | None:
        assert self.ports is not None
        health = self.spec.health
        kind = HealthCheckType.TCP if health.tcp else HealthCheckType.HTTP
        target = ProbeTarget(kind, "127.0.0.1", self.ports.app, health.path or "/")
        result = await probe(target, health.timeout)
        change = self._tracker.observe(result.ok, result.reason)
        self._show_health()
        return change

    def _show_health(self) -> None:
        self.health = self._tracker.state
        self.health_reason = self._tracker.reason

    async def _become_ready(self, waits: dict[asyncio.Future[Any], str]) -> str | _Stopped | None:
        """None once healthy, sidecar ready and registered; else why not."""
        deadline = time.monotonic() + self.spec.health.start_timeout
        poll = _FIRST_POLL
        sidecar_ready = registered = False
        while True:
            ended = await self._pause(waits, poll)
            if ended is not None:
                return ended
            poll = min(poll * 2, _MAX_START_POLL, self.spec.health.interval)
            await self._check()
            if self._tracker.state is Health.HEALTHY:
                sidecar_ready = sidecar_ready or await self._sidecar_ready()
                registered = sidecar_ready and await self._registered()
                if registered:
                    return None
            if time.monotonic() > deadline:
                missing = (
                    f"app not healthy ({self._tracker.reason})"
                    if self._tracker.state is not Health.HEALTHY
                    else "sidecar not ready"
                    if not sidecar_ready
                    else "instance not registered in Cloud Map"
                )
                return f"not ready within {self.spec.health.start_timeout:g}s: {missing}"

    async def _watch(self, waits: dict[asyncio.Future[Any], str]) -> str | _Stopped:
        health = self.spec.health
        while True:
            ended = await self._pause(waits, health.interval)
            if ended is not None:
                return ended
            if await self._check() is Health.UNHEALTHY:
                self._on_change()
                return (
                    f"failed {health.unhealthy_threshold} health checks in a row "
                    f"({self._tracker.reason})"
                )

    async def _sidecar_ready(self) -> bool:
        assert self.ports is not None
        target = ProbeTarget(HealthCheckType.HTTP, "127.0.0.1", self.ports.admin, "/ready")
        return (await probe(target, 1.0)).ok

    async def _registered(self) -> bool:
        try:
            found = await asyncio.to_thread(
                self.ctx.cloud_map.call,
                "DiscoverInstances",
                NamespaceName=self.spec.namespace,
                ServiceName=self.spec.service,
                HealthStatus="ALL",
                MaxResults=1000,
            )
        except ClientError:
            return False
        return any(i.get("InstanceId") == self.instance_id for i in found.get("Instances", []))

    async def _tear_down(self) -> None:
        """Sidecar first (it deregisters and drains), then the app; then make sure the
        instance is out of Cloud Map."""
        sidecar, app = self.sidecar, self.app
        clean = True
        if sidecar is not None:
            code = await sidecar.stop(grace=self.ctx.drain_timeout + 5.0)
            clean = code == 0
        if app is not None:
            await app.stop(grace=10.0)
        # A sidecar that exited cleanly may still have failed to deregister (the control
        # plane was busy or restarting): it only logs that, so look.
        if not clean or await self._registered():
            await self._deregister()
        self._on_change()

    async def _deregister(self) -> None:
        try:
            service = await asyncio.to_thread(self._service_id)
            if service is not None:
                await asyncio.to_thread(
                    self.ctx.cloud_map.call,
                    "DeregisterInstance",
                    ServiceId=service,
                    InstanceId=self.instance_id,
                )
        except ClientError as exc:  # gone already, or the control plane is down
            log.info(
                "deregistration skipped", extra={"instance": self.instance_id, "reason": str(exc)}
            )

    def _service_id(self) -> str | None:
        from mapmesh.cli.resolve import find_namespace, find_service

        client = self.ctx.cloud_map
        try:
            namespace = find_namespace(client, self.spec.namespace)
            return str(find_service(client, namespace, self.spec.service)["Id"])
        except ApiError:
            return None
