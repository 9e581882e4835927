"""``mapmesh up|ps|logs|scale|down``: run a whole app file on this machine.

``up`` runs the supervisor (:mod:`mapmesh.runner.supervisor`) in the foreground, or in the
background with ``--detach``; when a supervisor already runs for the state directory it hands
it the file instead, which rolls out what changed. The other commands find the supervisor
through ``runner.json`` in the state directory and talk to its control endpoint; ``logs``
reads the log files directly, so it also works after the runner stopped.

Exit codes: 0 done; 1 a failure (nothing running, a rollout gave up, a port in use);
2 the app file or the command line is wrong.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from mapmesh.runner.appfile import AppFile
    from mapmesh.runner.control import ControlClient
    from mapmesh.runner.state import RunnerState

__all__ = ["down", "logs", "ps", "scale", "up"]

EXIT_FAILURE = 1
EXIT_USAGE = 2

FileOption = Annotated[
    Path,
    typer.Option("--file", "-f", metavar="FILE", help="The app file (YAML)."),
]
StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        metavar="DIR",
        help="Where the runner keeps its store, logs and runner.json "
        "(default: $MAPMESH_STATE_DIR, else .mapmesh next to the app file).",
    ),
]
OutputOption = Annotated[
    str, typer.Option("--output", "-o", metavar="table|json", help="table for people; json.")
]


class _Failure(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def _fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _say(message: str) -> None:
    typer.echo(f"{time.strftime('%H:%M:%S')} {message}")


def _state_dir(flag: Path | None, file: Path | None) -> Path:
    from mapmesh.runner.state import resolve_state_dir

    return resolve_state_dir(flag, file)


def _load(file: Path) -> AppFile:
    from mapmesh.runner.appfile import AppFileError, load_file
    from mapmesh.runner.derive import refusal

    try:
        app = load_file(file)
    except AppFileError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    problem = refusal(app, str(file))
    if problem is not None:
        raise _fail(problem, EXIT_USAGE)
    return app


def _not_running(state_dir: Path) -> str:
    return (
        f"no runner is running in {state_dir}. Start one with `mapmesh up -f app.yaml`, or "
        "point at a running one with --state-dir DIR (or MAPMESH_STATE_DIR) or -f FILE"
    )


def _client(state_dir: Path) -> ControlClient:
    from mapmesh.runner.control import ControlClient
    from mapmesh.runner.state import find_runner

    live, _ = find_runner(state_dir)
    if live is None:
        raise _fail(_not_running(state_dir))
    return ControlClient(live.control_url, live.token)


def _call(action: Any) -> Any:
    from mapmesh.runner.control import ControlError

    try:
        return action()
    except ControlError as exc:
        raise _fail(str(exc)) from None


# -- up -----------------------------------------------------------------------------------


def up(
    file: FileOption = Path("app.yaml"),
    state_dir: StateDirOption = None,
    control_plane: Annotated[
        str | None,
        typer.Option(
            "--control-plane",
            metavar="URL",
            help="Use this control plane instead of starting one (`mapmesh server`).",
        ),
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Run in the background; stop with `down`.")
    ] = False,
    api_port: Annotated[
        int, typer.Option("--api-port", help="API port of the control plane it starts (0: any).")
    ] = 7070,
    dns_port: Annotated[
        int, typer.Option("--dns-port", help="DNS port of the control plane it starts (0: any).")
    ] = 8053,
    gateway_port: Annotated[
        int | None, typer.Option("--gateway-port", help="Override the file's gateway.port.")
    ] = None,
    timeout: Annotated[
        float,
        typer.Option("--timeout", help="Seconds to wait for --detach or a rollout to finish."),
    ] = 120.0,
    access_log: Annotated[
        bool,
        typer.Option("--access-log/--no-access-log", help="Proxies log every request."),
    ] = True,
    log_level: Annotated[
        str, typer.Option("--log-level", help="Log level of the children: debug, info, warning.")
    ] = "info",
) -> None:
    """Start the app file's mesh here (or roll out a change to a running one)."""
    from mapmesh.runner.state import find_runner, remove_state

    app = _load(file)
    directory = _state_dir(state_dir, file)
    live, dead = find_runner(directory)
    if live is not None:
        _hand_over(live, file, timeout)
        return
    if dead is not None:
        from mapmesh.runner.processes import kill_leftovers

        left = kill_leftovers(dead.children)
        remove_state(directory)
        if left:
            _say(f"stopped {left} process(es) left by a runner that was killed")
    _check_ports(control_plane, api_port, dns_port, gateway_port or _gateway_port(app))
    if control_plane is not None:
        _check_control_plane(control_plane)
    if detach:
        _detach(file, directory, timeout, sys.argv[1:])
        return
    code = _foreground(
        app, file, directory, control_plane, api_port, dns_port, gateway_port, access_log,
        log_level,
    )  # fmt: skip
    raise typer.Exit(code)


def _gateway_port(app: AppFile) -> int | None:
    return app.gateway.port if app.gateway is not None else None


def _check_ports(control_plane: str | None, api: int, dns: int, gateway: int | None) -> None:
    from mapmesh.runner.ports import port_free

    wanted: list[tuple[int, str, str]] = []
    if control_plane is None:
        hint = "pass --{flag} 0 for any free port, or --control-plane URL to use a running one"
        wanted.append((api, "the control plane's API port", hint.format(flag="api-port")))
        wanted.append((dns, "the control plane's DNS port", hint.format(flag="dns-port")))
    if gateway is not None:
        wanted.append((gateway, "the gateway port", "set gateway.port or pass --gateway-port"))
    for port, what, fix in wanted:
        if port and not port_free(port):
            raise _fail(f"port {port} ({what}) is in use on 127.0.0.1; {fix}")


def _check_control_plane(url: str) -> None:
    from mapmesh.cli.client import ClientError, CloudMapClient

    try:
        CloudMapClient(url, timeout=5.0).call("ListNamespaces", MaxResults=1)
    except ValueError as exc:
        raise _fail(f"--control-plane: {exc}", EXIT_USAGE) from None
    except ClientError as exc:
        raise _fail(
            f"the control plane at {url} does not answer ({exc}). Start it with `mapmesh "
            "server`, or drop --control-plane to let `up` start one"
        ) from None


def _foreground(
    app: AppFile,
    file: Path,
    directory: Path,
    control_plane: str | None,
    api_port: int,
    dns_port: int,
    gateway_port: int | None,
    access_log: bool,
    log_level: str,
) -> int:
    import asyncio

    from mapmesh.core import configure_logging
    from mapmesh.runner.supervisor import Supervisor, SupervisorOptions

    configure_logging("warning")
    options = SupervisorOptions(
        app_file=file.resolve(),
        state_dir=directory,
        control_plane=control_plane,
        api_port=api_port,
        dns_port=dns_port,
        gateway_port=gateway_port,
        log_level=log_level,
        access_log=access_log,
    )
    _say(f"starting {app.app} from {file} (state in {directory})")
    return asyncio.run(Supervisor(options, app, _say).run())


def _detach(file: Path, directory: Path, timeout: float, args: list[str]) -> None:
    """Start ``mapmesh up`` (without --detach) in its own session; wait until it is ready."""
    import subprocess

    from mapmesh.runner.daemons import log_tail
    from mapmesh.runner.state import read_state

    argv = [a for a in args if a not in ("--detach", "-d")]
    argv += ["--state-dir", str(directory)]
    log_path = directory / "logs" / "runner.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mapmesh", *argv],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            raise _fail(f"the runner exited with code {code}:\n{log_tail(log_path)}")
        state = read_state(directory)
        if state is not None and state.pid == process.pid and state.phase == "running":
            where = f" at {state.gateway_url}" if state.gateway_url else ""
            typer.echo(f"{file} is running{where} (runner pid {process.pid})")
            typer.echo(f"control plane {state.control_plane}; see `mapmesh ps`, stop with "
                       "`mapmesh down`")  # fmt: skip
            return
        time.sleep(0.1)
    raise _fail(
        f"not ready within {timeout:g}s; it keeps trying in the background (pid "
        f"{process.pid}). See `mapmesh ps` and {log_path}, or stop it with `mapmesh down`"
    )


def _hand_over(live: RunnerState, file: Path, timeout: float) -> None:
    """Give the running supervisor the (changed) file and follow the rollout."""
    from mapmesh.runner.control import ControlClient

    client = ControlClient(live.control_url, live.token)
    answer = _call(lambda: client.apply(str(file.resolve())))
    generation = int(answer["generation"])
    replacing = answer.get("replacing") or []
    what = f"replacing {', '.join(replacing)}" if replacing else "no replica to replace"
    typer.echo(f"a runner is already running {file}: rolling out the change ({what})")
    _wait_for(client, generation, timeout, "rollout")
    typer.echo("rolled out")


def _wait_for(client: ControlClient, generation: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _call(client.status)
        if status["generation"] != generation:
            raise _fail(f"another change arrived before this {what} finished; see `mapmesh ps`")
        if status["converged_generation"] >= generation:
            if status["errors"]:
                raise _fail("; ".join(status["errors"]))
            return
        time.sleep(0.2)
    raise _fail(f"the {what} did not finish within {timeout:g}s; see `mapmesh ps`")


# -- ps -----------------------------------------------------------------------------------


def ps(
    file: Annotated[Path | None, typer.Option("--file", "-f", metavar="FILE")] = None,
    state_dir: StateDirOption = None,
    output: OutputOption = "table",
) -> None:
    """List the replicas: state, pids, ports, restarts and health."""
    from mapmesh.cli.render import emit_json

    if output not in ("table", "json"):
        raise _fail(f"--output must be table or json, got {output!r}", EXIT_USAGE)
    status = _call(_client(_state_dir(state_dir, file)).status)
    if output == "json":
        emit_json(status)
        return
    _print_status(status)


def _print_status(status: dict[str, Any]) -> None:
    gateway = status.get("gateway") or {}
    typer.echo(
        f"app {status['app']} ({status['phase']}), namespace {status['namespace']}, "
        f"control plane {status['control_plane']}"
        + (f", gateway {gateway['url']}" if gateway.get("url") else "")
    )
    rows = [["SERVICE", "VERSION", "REPLICA", "STATE", "PID", "APP PORT",
             "SIDECAR IN/OUT/ADMIN", "RESTARTS", "HEALTH"]]  # fmt: skip
    for r in status["replicas"]:
        sidecar = "-"
        if r["inbound_port"]:
            sidecar = f"{r['inbound_port']}/{r['outbound_port']}/{r['admin_port']}"
        rows.append([
            r["service"], r["version"] or "-", str(r["replica"]), r["state"],
            str(r["pid"] or "-"), str(r["app_port"] or "-"), sidecar, str(r["restarts"]),
            r["health"],
        ])  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        typer.echo("  ".join(cells).rstrip())
    for error in status.get("errors") or []:
        typer.echo(f"error: {error}", err=True)


# -- logs ---------------------------------------------------------------------------------


def logs(
    service: Annotated[
        str, typer.Argument(help="A service, or `gateway` / `control-plane` / `runner`.")
    ],
    replica: Annotated[
        int | None, typer.Option("--replica", metavar="N", help="Only this replica.")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep printing new lines until the runner stops.")
    ] = False,
    sidecar: Annotated[
        bool, typer.Option("--sidecar", help="The replicas' sidecar logs instead of the app's.")
    ] = False,
    tail: Annotated[
        int | None, typer.Option("--tail", metavar="N", help="Only the last N lines of each.")
    ] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", metavar="FILE")] = None,
    state_dir: StateDirOption = None,
) -> None:
    """Print a service's logs (every replica's, each line prefixed with service.replica)."""
    from mapmesh.runner.logfiles import LogFollower, find_logs, known_services

    directory = _state_dir(state_dir, file)
    found = find_logs(directory / "logs", service, replica, sidecar)
    if not found:
        known = known_services(directory / "logs")
        if not (directory / "logs").is_dir():
            raise _fail(
                f"no logs in {directory}: nothing ran there. Start an app with `mapmesh up -f "
                "app.yaml`, or point at its state with --state-dir DIR (or MAPMESH_STATE_DIR) "
                "or -f FILE"
            )
        which = f" replica {replica}" if replica is not None else ""
        raise _fail(
            f"no logs for {service}{which} in {directory / 'logs'}; logs exist for: "
            f"{', '.join(known) or 'nothing yet'}"
        )
    follower = LogFollower(directory / "logs", service, replica, sidecar, found, sys.stdout)
    follower.print_existing(tail)
    if not follow:
        return
    from mapmesh.runner.state import find_runner

    try:
        while find_runner(directory)[0] is not None:
            follower.poll()
            time.sleep(0.2)
        follower.poll()
    except KeyboardInterrupt:
        pass


# -- scale --------------------------------------------------------------------------------


def scale(
    counts: Annotated[
        list[str], typer.Argument(metavar="SERVICE=N...", help="e.g. frontend=3 worker-v2=0")
    ],
    file: Annotated[Path | None, typer.Option("--file", "-f", metavar="FILE")] = None,
    state_dir: StateDirOption = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the replicas.")
    ] = 120.0,
) -> None:
    """Change how many replicas run (until the next `up`); versions by node: worker-v1=3."""
    wanted: dict[str, int] = {}
    for item in counts:
        name, sep, value = item.partition("=")
        if not sep or not name or not value.strip().isdigit():
            raise _fail(f"expected SERVICE=N (e.g. frontend=3), got {item!r}", EXIT_USAGE)
        wanted[name] = int(value)
    client = _client(_state_dir(state_dir, file))
    answer = _call(lambda: client.scale(wanted))
    _wait_for(client, int(answer["generation"]), timeout, "scale")
    typer.echo("scaled " + ", ".join(f"{n} to {c}" for n, c in answer["counts"].items()))


# -- down ---------------------------------------------------------------------------------


def down(
    file: Annotated[Path | None, typer.Option("--file", "-f", metavar="FILE")] = None,
    state_dir: StateDirOption = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for everything to stop.")
    ] = 60.0,
) -> None:
    """Stop the runner: gateway, replicas (deregistered first), control plane."""
    from mapmesh.runner.control import ControlClient
    from mapmesh.runner.processes import kill_leftovers
    from mapmesh.runner.state import find_runner, pid_alive, remove_state

    directory = _state_dir(state_dir, file)
    live, dead = find_runner(directory)
    if live is None:
        if dead is not None:
            left = kill_leftovers(dead.children)
            remove_state(directory)
            typer.echo(f"the runner in {directory} was not running; stopped {left} process(es) "
                       "it left behind")  # fmt: skip
            return
        typer.echo(f"no runner is running in {directory}; nothing to stop", err=True)
        return
    client = ControlClient(live.control_url, live.token)
    _call(client.down)
    deadline = time.monotonic() + timeout
    while pid_alive(live.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(live.pid):
        raise _fail(f"the runner (pid {live.pid}) is still stopping after {timeout:g}s")
    typer.echo(f"stopped {live.app_file}")
