"""The state directory: where a runner keeps its store, logs and the file that finds it.

Layout (``docs/runner.md``)::

    .mapmesh/                    next to the app file, or --state-dir / $MAPMESH_STATE_DIR
      runner.json                who runs here: supervisor pid, control endpoint and token,
                                 control plane, gateway URL, child process ids (mode 0600)
      controlplane/              the embedded control plane's sqlite store
      logs/<service>.<n>.log     each replica's app output; .sidecar.log: its sidecar's
      logs/gateway.log, logs/controlplane.log, logs/runner.log (a detached supervisor's own)
      proxies/<instance>/        each proxy's last good snapshot

``runner.json`` exists while a supervisor runs; :func:`find_runner` tells a live one from a
file left behind by one that was killed.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ENV_STATE_DIR",
    "STATE_FILE",
    "RunnerState",
    "find_runner",
    "pid_alive",
    "read_state",
    "remove_state",
    "resolve_state_dir",
    "write_state",
]

ENV_STATE_DIR = "MAPMESH_STATE_DIR"
STATE_FILE = "runner.json"


@dataclass
class RunnerState:
    pid: int
    control_url: str
    token: str
    app_file: str
    phase: str = "starting"  # starting | running | stopping
    control_plane: str = ""
    dns_port: int | None = None
    gateway_url: str | None = None
    error: str | None = None
    children: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunnerState:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def resolve_state_dir(flag: Path | None, app_file: Path | None) -> Path:
    """``--state-dir``, else ``$MAPMESH_STATE_DIR``, else ``.mapmesh`` beside the app file
    (or in the current directory when no file is named)."""
    if flag is not None:
        return flag.resolve()
    env = os.environ.get(ENV_STATE_DIR)
    if env:
        return Path(env).resolve()
    base = app_file.resolve().parent if app_file is not None else Path.cwd()
    return base / ".mapmesh"


def write_state(state_dir: Path, state: RunnerState) -> None:
    """Atomically, readable by the owner only (it holds the control endpoint's token)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    temporary = path.with_name(f".{STATE_FILE}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(state.to_json(), out, indent=1)
    os.replace(temporary, path)


def read_state(state_dir: Path) -> RunnerState | None:
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
        return RunnerState.from_json(data)
    except (OSError, ValueError, TypeError):
        return None


def remove_state(state_dir: Path, pid: int | None = None) -> None:
    """Remove the state file (only if it still belongs to ``pid``, when given)."""
    if pid is not None:
        current = read_state(state_dir)
        if current is not None and current.pid != pid:
            return
    with contextlib.suppress(FileNotFoundError):
        (state_dir / STATE_FILE).unlink()


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust the signal check
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def find_runner(state_dir: Path) -> tuple[RunnerState | None, RunnerState | None]:
    """(the live runner's state, a dead runner's leftover state); at most one is set."""
    state = read_state(state_dir)
    if state is None:
        return None, None
    if pid_alive(state.pid):
        return state, None
    return None, state
