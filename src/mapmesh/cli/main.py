"""The ``mapmesh`` command line."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import typer

from mapmesh.cli import mesh_commands, proxy_commands, runner_commands, top_command
from mapmesh.cli.explain_command import explain
from mapmesh.cli.registry_commands import discover, instance_app, namespace_app, service_app
from mapmesh.core import configure_logging

__all__ = ["app", "main"]

app = typer.Typer(
    name="mapmesh",
    help="Service discovery and service mesh, wire-compatible with AWS Cloud Map and App Mesh.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command()
def server(
    data_dir: Path = typer.Option(Path(".mapmesh"), "--data-dir", help="Where the store lives."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address of the API and DNS listeners."),
    port: int = typer.Option(7070, "--port", help="HTTP port of the Cloud Map API."),
    dns_port: int = typer.Option(8053, "--dns-port", help="DNS port (UDP and TCP)."),
    account_id: str = typer.Option(
        "111122223333", "--account-id", envvar="MAPMESH_ACCOUNT_ID", help="Account id in ARNs."
    ),
    region: str = typer.Option(
        "us-east-1", "--region", help="Region used in ARNs when a request is not SigV4-signed."
    ),
    health_interval: float = typer.Option(
        10.0, "--health-interval", help="Seconds between active health checks of an instance."
    ),
    health_timeout: float = typer.Option(
        2.0, "--health-timeout", help="Seconds one health check may take."
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Run the control plane: the Cloud Map API, DNS and health checks."""
    from mapmesh.controlplane import ControlPlane, ControlPlaneConfig

    configure_logging(log_level)
    if not 0 < health_timeout < health_interval:
        raise typer.BadParameter("--health-timeout must be positive and below --health-interval")
    config = ControlPlaneConfig(
        data_dir=data_dir,
        host=host,
        port=port,
        dns_port=dns_port,
        account_id=account_id,
        region=region,
        health_interval=health_interval,
        health_timeout=health_timeout,
    )
    try:
        _run(ControlPlane(config).run_until_signalled())
    except OSError as exc:
        typer.echo(
            f"error: cannot start the control plane: {exc}. Is another server using port "
            f"{port} or DNS port {dns_port}? Choose others with --port / --dns-port.",
            err=True,
        )
        raise typer.Exit(1) from None


app.add_typer(namespace_app, name="namespace")
app.add_typer(service_app, name="service")
app.add_typer(instance_app, name="instance")
app.command("discover")(discover)
app.command("apply")(mesh_commands.apply)
app.command("diff")(mesh_commands.diff)
app.command("delete")(mesh_commands.delete)
app.command("get")(mesh_commands.get)
app.command("explain")(explain)
_PASS_ON = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def _data_plane(command: str) -> None:
    """List ``command`` in this app's help; its flags are parsed by proxy_commands (which
    ``mapmesh.cli.entry`` calls directly)."""

    def run(ctx: typer.Context) -> None:
        raise typer.Exit(proxy_commands.main([command, *ctx.args]))

    run.__doc__ = proxy_commands.COMMANDS[command] + f" Flags: mapmesh {command} --help."
    app.command(command, context_settings=_PASS_ON, add_help_option=False)(run)


_data_plane("proxy")
_data_plane("gateway")
app.command("up")(runner_commands.up)
app.command("ps")(runner_commands.ps)
app.command("logs")(runner_commands.logs)
app.command("scale")(runner_commands.scale)
app.command("down")(runner_commands.down)
app.command("top")(top_command.top)


def _run(coro: object) -> None:
    try:
        import uvloop

        uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover - uvloop is a dependency
        asyncio.run(coro)  # type: ignore[arg-type]


def main() -> None:
    sys.exit(app())
