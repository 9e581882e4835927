"""Reading the runner's log files for ``mapmesh logs``: find, print, follow.

Names under ``<state>/logs`` (:mod:`mapmesh.runner.state`): ``<service>.<n>.log`` for replica
``n``'s app, ``<service>.<n>.sidecar.log`` for its sidecar, and ``gateway.log``,
``controlplane.log``, ``runner.log``. A replica keeps its file across restarts (each start
is marked by a ``--- mapmesh: ...`` line), so the files outlive the processes and the runner.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

__all__ = ["LogFollower", "find_logs", "known_services"]

_REPLICA_LOG = re.compile(r"^(?P<service>[a-z0-9-]+)\.(?P<n>\d+)(?P<sidecar>\.sidecar)?\.log$")
_SPECIAL = {"gateway": "gateway.log", "control-plane": "controlplane.log",
            "controlplane": "controlplane.log", "runner": "runner.log"}  # fmt: skip


def find_logs(directory: Path, service: str, replica: int | None, sidecar: bool) -> list[Path]:
    """The files ``logs SERVICE [--replica N] [--sidecar]`` shows, by replica number."""
    if not directory.is_dir():
        return []
    found: list[tuple[int, Path]] = []
    for path in directory.iterdir():
        match = _REPLICA_LOG.match(path.name)
        if match is None or match["service"] != service or bool(match["sidecar"]) != sidecar:
            continue
        number = int(match["n"])
        if replica is None or number == replica:
            found.append((number, path))
    if not found and service in _SPECIAL and replica is None:
        special = directory / _SPECIAL[service]
        return [special] if special.exists() else []
    return [path for _, path in sorted(found)]


def known_services(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    names = {m["service"] for p in directory.iterdir() if (m := _REPLICA_LOG.match(p.name))}
    return sorted(names)


def _label(path: Path) -> str:
    match = _REPLICA_LOG.match(path.name)
    return f"{match['service']}.{match['n']}" if match else path.stem


class LogFollower:
    """Prints files (prefixed with ``service.n | `` when there are several) and, when
    following, what is appended to them and to files of new replicas."""

    def __init__(
        self,
        directory: Path,
        service: str,
        replica: int | None,
        sidecar: bool,
        files: Sequence[Path],
        out: TextIO,
    ) -> None:
        self._query = (directory, service, replica, sidecar)
        self._out = out
        self._offsets: dict[Path, int] = {}
        replica_logs = _REPLICA_LOG.match(files[0].name) is not None
        self._prefix = len(files) > 1 or (replica is None and replica_logs)
        self._files = list(files)

    def print_existing(self, tail: int | None) -> None:
        for path in self._files:
            text = self._read_from(path, 0)
            lines = text.splitlines()
            if tail is not None:
                lines = lines[-tail:] if tail > 0 else []
            self._emit(path, lines)

    def poll(self) -> None:
        """Print what was appended since the last call, including files of new replicas."""
        current = find_logs(*self._query)
        for path in current:
            if path not in self._offsets:
                self._offsets[path] = 0
                self._files.append(path)
            self._emit(path, self._read_from(path, self._offsets[path]).splitlines())
        self._out.flush()

    def _read_from(self, path: Path, offset: int) -> str:
        try:
            with path.open("rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except OSError:
            return ""
        end = data.rfind(b"\n") + 1  # keep a partial last line for the next read
        self._offsets[path] = offset + end
        return data[:end].decode(errors="replace")

    def _emit(self, path: Path, lines: list[str]) -> None:
        prefix = f"{_label(path)} | " if self._prefix else ""
        for line in lines:
            self._out.write(f"{prefix}{line}\n")
