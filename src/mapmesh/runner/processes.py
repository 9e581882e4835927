"""Child processes of the runner: each in its own process group, output appended to a log.

Own process group (``start_new_session``): Ctrl-C in the terminal reaches only the
supervisor, which then stops children in order (gateway, sidecars, apps, control plane)
instead of all of them at once; and stopping a child signals its whole group, so an app
started through a shell wrapper does not leave its real process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["Child", "describe_exit", "kill_leftovers", "signal_group"]


def signal_group(pid: int, sig: int) -> bool:
    """Send ``sig`` to the process group led by ``pid``; False when it is already gone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


class Child:
    """One running child; :meth:`stop` is SIGTERM to its group, then SIGKILL after a grace."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self.name = name
        self.process = process
        self.log_path = log_path
        self.started = time.time()

    @classmethod
    async def spawn(
        cls,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        banner: str = "",
    ) -> Child:
        """Start ``argv`` with stdout and stderr appended to ``log_path``.

        Raises OSError (for example FileNotFoundError for an unknown command) as is."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            if banner:
                log.write(f"--- mapmesh: {banner} ---\n".encode())
                log.flush()
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        return cls(name, process, log_path)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    async def wait(self) -> int:
        return await self.process.wait()

    async def stop(self, grace: float = 10.0) -> int:
        """SIGTERM the group, wait up to ``grace`` seconds, then SIGKILL it; the exit code."""
        if self.running:
            signal_group(self.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(self.process.wait()), grace)
            signal_group(self.pid, signal.SIGKILL)
            return await self.process.wait()
        # The leader is gone; make sure nothing it started outlives it.
        signal_group(self.pid, signal.SIGKILL)
        return self.process.returncode if self.process.returncode is not None else -1

    def kill(self) -> None:
        signal_group(self.pid, signal.SIGKILL)


def describe_exit(code: int) -> str:
    """``exited with code 1`` / ``killed by SIGKILL``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def kill_leftovers(pids: list[int], grace: float = 5.0) -> int:
    """Stop the process groups a killed supervisor left behind; how many were still there.

    Only processes that still lead their own session are touched — the runner starts every
    child that way — so a recycled pid of an unrelated process is left alone."""
    alive = []
    for pid in pids:
        try:
            if os.getsid(pid) == pid and os.getpgid(pid) == pid:
                alive.append(pid)
        except OSError:
            continue
    for pid in alive:
        signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_group_alive(pid) for pid in alive):
        time.sleep(0.05)
    for pid in alive:
        signal_group(pid, signal.SIGKILL)
    return len(alive)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except OSError:
        return False
    return True
