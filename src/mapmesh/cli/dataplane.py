"""The data plane's commands alone (``mapmesh proxy``, ``mapmesh gateway``).

A sidecar runs beside every workload, so its memory and start-up time count many times
over: run through this app it imports typer and the proxy, not the control plane's client
commands, YAML, rich tables or boto3-shaped models (about 4 MB and 60 ms less).
"""

from __future__ import annotations

import typer

from mapmesh.cli import proxy_commands

__all__ = ["app"]

app = typer.Typer(
    name="mapmesh",
    help="Service discovery and service mesh, wire-compatible with AWS Cloud Map and App Mesh.",
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("proxy")(proxy_commands.proxy)
app.command("gateway")(proxy_commands.gateway)
