"""``mapmesh up --detach`` and ``down`` on a one-service app, and the runner's CLI errors.

``down`` must leave nothing behind: every process the runner started has exited and every
port it listened on is free again.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support import ServerProcess, free_port

APP = """\
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello from " + os.environ["MAPMESH_SERVICE"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def mapmesh(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mapmesh", *args], cwd=cwd, capture_output=True, text=True,
        timeout=90, env={**os.environ, **(env or {})},
    )  # fmt: skip


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_detached_runner_and_down_leave_no_process_or_port_behind(tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text(APP)
    gateway_port = free_port()
    (tmp_path / "hello.yaml").write_text(
        f"app: hello\ngateway: {{port: {gateway_port}, routes: [{{prefix: /, service: web}}]}}\n"
        "services:\n  web: {command: python hello.py, health: {tcp: true, interval: 1s}}\n"
    )
    state = tmp_path / "state"
    env = {"MAPMESH_STATE_DIR": str(state)}
    started = mapmesh("up", "-f", "hello.yaml", "--detach", "--api-port", "0", "--dns-port", "0",
                      cwd=tmp_path, env=env)  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert f"is running at http://127.0.0.1:{gateway_port}" in started.stdout
    assert httpx.get(f"http://127.0.0.1:{gateway_port}/").text == "hello from web"

    # What runs now, and on which ports (the state directory comes from MAPMESH_STATE_DIR).
    ps = mapmesh("ps", "-o", "json", cwd=tmp_path, env=env)
    assert ps.returncode == 0, ps.stderr
    status = json.loads(ps.stdout)
    (replica,) = status["replicas"]
    pids = [status["pid"], status["control_plane_pid"], status["gateway"]["pid"],
            replica["pid"], replica["sidecar_pid"]]  # fmt: skip
    ports = [gateway_port, int(status["control_plane"].rsplit(":", 1)[1]), status["dns_port"],
             int(status["control_url"].rsplit(":", 1)[1]), replica["app_port"],
             replica["inbound_port"], replica["outbound_port"], replica["admin_port"]]  # fmt: skip
    assert all(alive(pid) for pid in pids)

    stopped = mapmesh("down", cwd=tmp_path, env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped" in stopped.stdout
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in pids if alive(pid)] == []
    assert [port for port in ports if listening(port)] == []
    assert not (state / "runner.json").exists()
    # The logs stay for a post-mortem.
    logs = mapmesh("logs", "web", "--sidecar", cwd=tmp_path, env=env)
    assert logs.returncode == 0 and "web.1 | " in logs.stdout

    again = mapmesh("down", cwd=tmp_path, env=env)
    assert (again.returncode, again.stderr.strip()) == (
        0, f"no runner is running in {state}; nothing to stop",
    )  # fmt: skip


def test_up_on_a_running_control_plane_leaves_it_running(
    server: ServerProcess, unique: str, tmp_path: Path
) -> None:
    (tmp_path / "hello.py").write_text(APP)
    port = free_port()
    (tmp_path / "app.yaml").write_text(
        f"app: {unique}\ngateway: {{port: {port}, routes: [{{prefix: /, service: web}}]}}\n"
        "services:\n  web: {command: python hello.py, replicas: 2}\n"
    )
    started = mapmesh("up", "--detach", "--control-plane", server.url, cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    assert httpx.get(f"http://127.0.0.1:{port}/").text == "hello from web"
    found = mapmesh("discover", "--namespace", f"{unique}.local", "--service", "web",
                    "--endpoint", server.url, "-o", "json", cwd=tmp_path)  # fmt: skip
    instances = json.loads(found.stdout)["Instances"]
    assert sorted(i["InstanceId"] for i in instances) == ["web-1", "web-2"]

    assert mapmesh("down", cwd=tmp_path).returncode == 0
    assert httpx.get(f"{server.url}/healthz").status_code == 200  # not the runner's to stop
    found = mapmesh("discover", "--namespace", f"{unique}.local", "--service", "web",
                    "--endpoint", server.url, "-o", "json", cwd=tmp_path)  # fmt: skip
    assert json.loads(found.stdout)["Instances"] == []


def test_an_invalid_app_file_names_the_field(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text(
        "app: shop\nservices:\n  web:\n    command: python web.py\n    replicas: two\n"
    )
    done = mapmesh("up", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: app.yaml:5: services.web.replicas: must be a whole number >= 0, got 'two'"
    )


def test_a_taken_port_is_reported_with_the_fix(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "app.yaml").write_text(
            f"app: shop\ngateway: {{port: {port}, routes: [{{prefix: /, service: web}}]}}\n"
            "services:\n  web: {command: python web.py}\n"
        )
        done = mapmesh("up", "--api-port", "0", "--dns-port", "0", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: port {port} (the gateway port) is in use on 127.0.0.1; set gateway.port or "
        "pass --gateway-port"
    )


def test_commands_without_a_runner_say_how_to_start_one(tmp_path: Path) -> None:
    for command in (["ps"], ["scale", "web=2"]):
        done = mapmesh(*command, cwd=tmp_path)
        assert done.returncode == 1
        assert done.stderr.strip() == (
            f"error: no runner is running in {tmp_path / '.mapmesh'}. Start one with "
            "`mapmesh up -f app.yaml`, or point at a running one with --state-dir DIR (or "
            "MAPMESH_STATE_DIR) or -f FILE"
        )
    logs = mapmesh("logs", "web", cwd=tmp_path)
    assert logs.returncode == 1
    assert logs.stderr.startswith(f"error: no logs in {tmp_path / '.mapmesh'}: nothing ran there")
    (tmp_path / "app.yaml").write_text("app: shop\nservices:\n  web: {command: python web.py}\n")
    unreachable = mapmesh("up", "--control-plane", f"http://127.0.0.1:{free_port()}", cwd=tmp_path)
    assert unreachable.returncode == 1
    assert "does not answer (cannot reach" in unreachable.stderr
    assert "Start it with `mapmesh server`, or drop --control-plane" in unreachable.stderr
    bad = mapmesh("scale", "web", cwd=tmp_path)
    assert (bad.returncode, bad.stderr.strip()) == (
        2, "error: expected SERVICE=N (e.g. frontend=3), got 'web'",
    )  # fmt: skip
