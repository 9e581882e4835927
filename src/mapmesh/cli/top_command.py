"""``mapmesh top``: the mesh's live traffic in a terminal, from ``GET /v1/topology``.

One table of edges (source → target: requests/s, error %, p50, p99, response flags) and one
of nodes (instances healthy/total, snapshot version, inbound traffic), redrawn every second.
``--once`` prints one frame and exits (scripts, tests). Heavy imports (rich, the HTTP client)
happen inside the command so ``mapmesh --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import RenderableType

__all__ = ["render", "top"]

_DEFAULT_CONTROL_PLANE = "http://127.0.0.1:7070"


class _TopProblem(Exception):
    """Why no topology could be fetched, said with the fix."""


def _label(node_id: str) -> str:
    kind, _, name = node_id.partition("/")
    if not name:
        return kind
    return f"{name} (gateway)" if kind == "virtualGateway" else name


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _flags(flags: dict[str, int]) -> str:
    return " ".join(f"{name}:{count}" for name, count in sorted(flags.items())) or "-"


def _error_cell(rate: float) -> str:
    text = f"{rate * 100:.1f}"
    if rate >= 0.05:
        return f"[red]{text}[/red]"
    return f"[yellow]{text}[/yellow]" if rate > 0 else text


def render(topology: dict[str, Any], problem: str | None = None) -> RenderableType:
    """One frame: the edges table and the nodes table (``problem`` shown under them)."""
    import datetime

    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    at = datetime.datetime.fromtimestamp(float(topology.get("generatedAt") or 0))
    window = topology.get("window")
    edges = Table(
        title=f"mesh {topology.get('mesh')} · last {window:g} s · {at:%H:%M:%S}"
        if isinstance(window, int | float)
        else f"mesh {topology.get('mesh')}",
        title_justify="left",
        expand=False,
    )
    for column, justify in (
        ("EDGE", "left"), ("RPS", "right"), ("ERR %", "right"), ("P50 MS", "right"),
        ("P99 MS", "right"), ("FLAGS", "left"),
    ):  # fmt: skip
        edges.add_column(column, justify=justify, no_wrap=column == "EDGE")  # type: ignore[arg-type]
    rows = sorted(topology.get("edges", []), key=lambda e: (-float(e.get("rps", 0)), e["source"]))
    for edge in rows:
        edges.add_row(
            f"{_label(edge['source'])} → {_label(edge['target'])}",
            f"{float(edge.get('rps', 0)):.1f}",
            _error_cell(float(edge.get("errorRate", 0))),
            _ms(edge.get("p50Ms")),
            _ms(edge.get("p99Ms")),
            _flags(edge.get("flags") or {}),
        )
    if not rows:
        edges.add_row("no traffic in this window", "", "", "", "", "")
    nodes = Table(title="nodes", title_justify="left")
    for column in ("NODE", "KIND", "INSTANCES", "VERSION", "IN RPS", "IN ERR %", "IN P99 MS"):
        nodes.add_column(column, justify="left" if column in ("NODE", "KIND") else "right")
    for node in topology.get("nodes", []):
        inbound = node.get("inbound") or {}
        instances = f"{node.get('healthy', 0)}/{node.get('instances', 0)}"
        if node.get("healthy", 0) < node.get("instances", 0):
            instances = f"[yellow]{instances}[/yellow]"
        nodes.add_row(
            str(node.get("name")),
            str(node.get("kind")),
            instances,
            str(node.get("version") if node.get("version") is not None else "-"),
            f"{float(inbound['rps']):.1f}" if inbound else "-",
            _error_cell(float(inbound["errorRate"])) if inbound else "-",
            _ms(inbound.get("p99Ms")) if inbound else "-",
        )
    parts: list[RenderableType] = [edges, nodes]
    if problem:
        parts.append(Text(problem, style="red"))
    return Group(*parts)


def _fetch(control_plane: str, mesh: str, window: float) -> dict[str, Any]:
    import json
    import urllib.parse
    import urllib.request

    from mapmesh.cli.client import EndpointUnreachable, HttpEndpoint

    class Client(HttpEndpoint):
        def get(self, path: str) -> tuple[int, bytes]:
            return self._send(urllib.request.Request(self.endpoint + path, method="GET"))

    try:
        client = Client(control_plane, timeout=5.0)
    except ValueError as exc:
        raise _TopProblem(f"--control-plane: {exc}") from None
    query = urllib.parse.urlencode({"mesh": mesh, "window": f"{window:g}"})
    try:
        status, body = client.get(f"/v1/topology?{query}")
    except EndpointUnreachable as exc:
        raise _TopProblem(
            f"cannot reach the control plane at {exc.endpoint} ({exc.reason}). Start it with "
            "`mapmesh server` or pass --control-plane URL."
        ) from None
    try:
        payload = json.loads(body) if body else {}
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise _TopProblem(
            f"{client.endpoint} answered HTTP {status} without JSON. Is it a mapmesh control "
            "plane? Pass its URL with --control-plane."
        )
    if status == 404:
        raise _TopProblem(
            f"mesh '{mesh}' not found at {client.endpoint}. List meshes with "
            f"`mapmesh get mesh --endpoint {client.endpoint}`."
        )
    if status >= 400:
        message = payload.get("message") or f"HTTP {status}"
        raise _TopProblem(f"the control plane refused the request: {message}")
    return payload


def top(
    mesh: Annotated[str, typer.Option("--mesh", metavar="M", help="Mesh name.")],
    control_plane: Annotated[
        str,
        typer.Option(
            "--control-plane",
            "--endpoint",
            metavar="URL",
            envvar="MAPMESH_ENDPOINT",
            help="The control plane's API.",
        ),
    ] = _DEFAULT_CONTROL_PLANE,
    window: Annotated[
        float,
        typer.Option(
            "--window", min=1, max=900, metavar="SECONDS", help="Rates over the last SECONDS."
        ),
    ] = 60.0,
    once: Annotated[
        bool, typer.Option("--once", help="Print one table and exit (no live redraw).")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.2, metavar="SECONDS", help="Seconds per redraw.")
    ] = 1.0,
) -> None:
    """Live traffic of a mesh: requests/s, error rate and latency per edge, instances per node."""
    import time

    from rich.console import Console
    from rich.live import Live

    try:
        topology = _fetch(control_plane, mesh, window)
    except _TopProblem as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    if once:
        console.print(render(topology))
        return
    try:
        with Live(render(topology), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                try:
                    topology = _fetch(control_plane, mesh, window)
                    live.update(render(topology), refresh=True)
                except _TopProblem as exc:
                    live.update(render(topology, f"{exc} Retrying."), refresh=True)
    except KeyboardInterrupt:
        return
