"""The runner's state directory, its control endpoint and its log files, in one process."""

from __future__ import annotations

import asyncio
import io
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from mapmesh.runner.control import ControlClient, ControlError, ControlServer
from mapmesh.runner.logfiles import LogFollower, find_logs, known_services
from mapmesh.runner.ports import PortAllocator, port_free
from mapmesh.runner.state import (
    RunnerState,
    find_runner,
    read_state,
    remove_state,
    resolve_state_dir,
    write_state,
)


def test_state_dir_comes_from_the_flag_then_the_environment_then_the_app_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAPMESH_STATE_DIR", raising=False)
    app = tmp_path / "apps" / "app.yaml"
    assert resolve_state_dir(None, app) == (tmp_path / "apps" / ".mapmesh").resolve()
    monkeypatch.setenv("MAPMESH_STATE_DIR", str(tmp_path / "env"))
    assert resolve_state_dir(None, app) == tmp_path / "env"
    assert resolve_state_dir(tmp_path / "flag", app) == tmp_path / "flag"


def test_the_state_file_is_private_and_tells_live_runners_from_dead_ones(tmp_path: Path) -> None:
    state = RunnerState(pid=os.getpid(), control_url="http://127.0.0.1:1", token="t",
                        app_file="app.yaml", children=[1, 2])  # fmt: skip
    write_state(tmp_path, state)
    assert stat.S_IMODE((tmp_path / "runner.json").stat().st_mode) == 0o600
    assert read_state(tmp_path) == state
    assert find_runner(tmp_path) == (state, None)
    dead = RunnerState(pid=2**22 + 12345, control_url="", token="", app_file="")
    write_state(tmp_path, dead)
    assert find_runner(tmp_path) == (None, dead)
    remove_state(tmp_path, pid=os.getpid())  # not ours any more: kept
    assert read_state(tmp_path) == dead
    remove_state(tmp_path)
    assert find_runner(tmp_path) == (None, None)


def test_ports_are_never_handed_out_twice_and_a_free_preferred_one_is_reused() -> None:
    ports = PortAllocator()
    taken = {ports.take() for _ in range(20)}
    assert len(taken) == 20
    port = taken.pop()
    assert ports.take(port) != port  # still taken by this allocator
    ports.release(port)
    assert ports.take(port) == port and port_free(port)


async def test_the_control_endpoint_answers_only_with_the_token() -> None:
    calls: list[tuple[str, str, dict[str, Any]]] = []

    async def handler(method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        calls.append((method, path, body))
        if path == "/status":
            return 200, {"phase": "running"}
        return 400, {"error": "no such service 'x'"}

    server = ControlServer(handler, "secret")
    await server.start()
    try:
        good = ControlClient(server.url, "secret")
        assert await asyncio.to_thread(good.status) == {"phase": "running"}
        with pytest.raises(ControlError, match="no such service 'x'"):
            await asyncio.to_thread(good.scale, {"x": 2})
        with pytest.raises(ControlError, match="wrong or missing token"):
            await asyncio.to_thread(ControlClient(server.url, "guess").status)
        assert calls == [("GET", "/status", {}), ("POST", "/scale", {"counts": {"x": 2}})]
    finally:
        await server.stop()
    with pytest.raises(ControlError, match="does not answer"):
        await asyncio.to_thread(ControlClient(server.url, "secret", timeout=2).status)


def test_logs_of_a_service_by_replica_and_following_new_lines(tmp_path: Path) -> None:
    for name, text in {
        "web.1.log": "a1\na2\n", "web.2.log": "b1\n", "web.1.sidecar.log": "s1\n",
        "web-api.3.log": "other\n", "gateway.log": "g\n",
    }.items():  # fmt: skip
        (tmp_path / name).write_text(text)
    assert [p.name for p in find_logs(tmp_path, "web", None, False)] == ["web.1.log", "web.2.log"]
    assert [p.name for p in find_logs(tmp_path, "web", 2, False)] == ["web.2.log"]
    assert [p.name for p in find_logs(tmp_path, "web", None, True)] == ["web.1.sidecar.log"]
    assert [p.name for p in find_logs(tmp_path, "gateway", None, False)] == ["gateway.log"]
    assert known_services(tmp_path) == ["web", "web-api"]

    out = io.StringIO()
    follower = LogFollower(tmp_path, "web", None, False,
                           find_logs(tmp_path, "web", None, False), out)  # fmt: skip
    follower.print_existing(tail=1)
    assert out.getvalue() == "web.1 | a2\nweb.2 | b1\n"
    with (tmp_path / "web.1.log").open("a") as log:
        log.write("a3\npartial")
    (tmp_path / "web.4.log").write_text("d1\n")  # a replica started meanwhile
    follower.poll()
    assert out.getvalue().splitlines()[2:] == ["web.1 | a3", "web.4 | d1"]
    with (tmp_path / "web.1.log").open("a") as log:
        log.write(" line\n")
    follower.poll()
    assert out.getvalue().splitlines()[-1] == "web.1 | partial line"
