"""Children that must keep running: the control plane and the gateway.

A :class:`Daemon` is started and waited for (its ``ready`` probe must pass within a timeout,
else :class:`DaemonFailed` carries the end of its log, which usually names the cause — a
port in use, a bad flag). Afterwards it is watched: when it exits on its own it is started
again after an exponential backoff, so a crash of the gateway or the control plane is an
outage of seconds, and the proxies keep serving from their last snapshot meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from mapmesh.core.backoff import Backoff
from mapmesh.core.probes import ProbeTarget, probe
from mapmesh.model.registry import HealthCheckType
from mapmesh.runner.processes import Child, describe_exit

__all__ = ["Daemon", "DaemonFailed", "http_ready", "log_tail"]


class DaemonFailed(Exception):
    pass


def http_ready(port: int, path: str) -> Callable[[], Awaitable[bool]]:
    """A readiness probe: ``GET path`` on loopback answers 2xx/3xx."""
    target = ProbeTarget(HealthCheckType.HTTP, "127.0.0.1", port, path)

    async def ready() -> bool:
        return (await probe(target, 1.0)).ok

    return ready


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


class Daemon:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        ready: Callable[[], Awaitable[bool]],
        report: Callable[[str], None],
        *,
        start_timeout: float = 30.0,
        grace: float = 15.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.restarts = 0
        self.child: Child | None = None
        self._ready = ready
        self._report = report
        self._start_timeout = start_timeout
        self._grace = grace
        self._stopping = False
        self._watcher: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child is not None and self.child.running else None

    async def start(self) -> None:
        await self._spawn()
        self._watcher = asyncio.create_task(self._watch(), name=f"watch {self.name}")

    async def _spawn(self) -> None:
        self.child = await Child.spawn(
            self.name, self.argv, self.log_path, banner=f"start at {time.strftime('%H:%M:%S')}"
        )
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if not self.child.running:
                code = await self.child.wait()
                raise DaemonFailed(
                    f"the {self.name} {describe_exit(code)} while starting:\n"
                    f"{log_tail(self.log_path)}"
                )
            if await self._ready():
                return
            await asyncio.sleep(0.05)
        await self.child.stop(grace=2.0)
        raise DaemonFailed(
            f"the {self.name} was not ready within {self._start_timeout:g}s:\n"
            f"{log_tail(self.log_path)}"
        )

    async def _watch(self) -> None:
        backoff = Backoff(base=0.5, cap=15.0)
        while not self._stopping:
            assert self.child is not None
            code = await self.child.wait()
            if self._stopping:
                return
            self.restarts += 1
            delay = backoff.next()
            self._report(f"{self.name} {describe_exit(code)}; restarting in {delay:.1f}s")
            await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                await self._spawn()
                self._report(f"{self.name} running again")
            except (DaemonFailed, OSError) as exc:
                self._report(str(exc))

    async def stop(self) -> None:
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self.child is not None:
            await self.child.stop(grace=self._grace)
