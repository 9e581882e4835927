"""``mapmesh proxy`` (the sidecar) and ``mapmesh gateway``: the data plane's processes.

Parsed with argparse, not typer: a sidecar runs beside every workload, so its memory and
start-up count many times over, and typer's option parsing loads pydantic (with typer, about
8 MB and 60 ms more per sidecar). ``mapmesh.cli.entry`` sends these two commands here before
anything else is imported; the full app lists them and passes their arguments on. The flags
shown first in docs/cli.md are a contract.

Bad values exit with status 2 and ``mapmesh proxy: error: argument --flag: what to fix``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["COMMANDS", "main"]

COMMANDS = {
    "proxy": "Run the sidecar proxy of a virtual node: outbound HTTP proxy, inbound listener, "
    "admin.",
    "gateway": "Run a virtual gateway: outside traffic in, routed by gateway routes.",
}

# The defaults below are also the process's own (proxy.process, telemetry): the CLI must not
# import those modules to show its help, so they are repeated here and checked by a test.
DEFAULT_SAMPLING = 0.05
DEFAULT_RATE_LIMIT = 50.0


def _checked(convert: Callable[[str], Any], test: Callable[[Any], bool], problem: str) -> Any:
    """An argparse type: ``convert``, then ``test``; else ``problem`` (formatted with the
    value) becomes the error message."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(problem.format(value))
        return value

    return parse


_PORT = _checked(int, lambda v: 0 <= v <= 65535, "must be a port (0-65535), got {}")
_SECONDS = _checked(float, lambda v: v > 0, "must be more than 0 seconds, got {:g}")
_SAMPLING = _checked(float, lambda v: 0.0 <= v <= 1.0, "must be from 0 to 1, got {:g}")
_RATE_LIMIT = _checked(float, lambda v: v >= 0, "must be 0 (no limit) or more, got {:g}")


def _otlp_endpoint(value: str) -> str:
    if not value.startswith("http://"):
        raise argparse.ArgumentTypeError(f"must be an http:// URL (OTLP/HTTP, JSON), got {value!r}")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--control-plane", metavar="URL", default=os.environ.get("MAPMESH_CONTROL_PLANE"),
        required="MAPMESH_CONTROL_PLANE" not in os.environ,
        help="URL of the control plane's API (env MAPMESH_CONTROL_PLANE).",
    )  # fmt: skip
    parser.add_argument("--mesh", metavar="M", required=True, help="Mesh name.")


def _tail(parser: argparse.ArgumentParser) -> None:
    """The flags both commands share after their own."""
    parser.add_argument(
        "--drain-timeout", type=_SECONDS, default=10.0, metavar="SECONDS",
        help="Seconds to finish requests on SIGTERM (default 10).",
    )  # fmt: skip
    parser.add_argument(
        "--connect-timeout", type=_SECONDS, default=5.0, metavar="SECONDS",
        help="Seconds to open a connection to an upstream endpoint (every cluster); a connect "
        "that takes longer is a connect failure (503, flag UF). Default 5.",
    )  # fmt: skip
    parser.add_argument(
        "--state-dir", type=Path, metavar="DIR",
        help="Keep the last good snapshot here (serve from it on restart).",
    )  # fmt: skip
    parser.add_argument(
        "--access-log", metavar="FILE",
        help="Write one JSON line per request to this file (- = stdout); a snapshot's own "
        "access log (path and format) takes precedence.",
    )  # fmt: skip
    parser.add_argument(
        "--trace-sampling", type=_SAMPLING, default=DEFAULT_SAMPLING, metavar="RATE",
        help="Share of requests arriving without a sampling decision that start a trace "
        f"(0 to 1, default {DEFAULT_SAMPLING:g}); requests with a sampled traceparent are "
        "always traced.",
    )  # fmt: skip
    parser.add_argument(
        "--trace-rate-limit", type=_RATE_LIMIT, default=DEFAULT_RATE_LIMIT,
        metavar="PER_SECOND",
        help="Traces this proxy starts per second at most, whatever its request rate "
        f"(0: no limit; default {DEFAULT_RATE_LIMIT:g}).",
    )  # fmt: skip
    parser.add_argument(
        "--otlp-endpoint", type=_otlp_endpoint, metavar="URL",
        help="Also send spans to this OpenTelemetry collector (OTLP/HTTP JSON, "
        "POST URL/v1/traces), e.g. http://127.0.0.1:4318.",
    )  # fmt: skip
    parser.add_argument(
        "--report-interval", type=_SECONDS, default=2.0, metavar="SECONDS",
        help="Seconds between telemetry reports to the control plane (default 2).",
    )  # fmt: skip
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error"),
        help="Default info.",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mapmesh", description="The data plane's commands.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    proxy = commands.add_parser("proxy", help=COMMANDS["proxy"], description=COMMANDS["proxy"])
    proxy.set_defaults(command_parser=proxy)  # for errors found after parsing
    _common(proxy)
    proxy.add_argument("--virtual-node", metavar="N", required=True, help="Virtual node.")
    proxy.add_argument(
        "--app-port", type=_PORT, required=True, metavar="P",
        help="Port of the local application.",
    )  # fmt: skip
    proxy.add_argument(
        "--inbound-port",
        type=_PORT,
        default=15000,
        metavar="PORT",
        help="Listener fronting the app (15000).",
    )
    proxy.add_argument(
        "--outbound-port", type=_PORT, default=15001, metavar="PORT",
        help="HTTP proxy port for the app's calls (15001).",
    )  # fmt: skip
    proxy.add_argument(
        "--admin-port",
        type=_PORT,
        default=9901,
        metavar="PORT",
        help="Admin and metrics port (9901).",
    )
    proxy.add_argument(
        "--advertise-address",
        default="127.0.0.1",
        metavar="IP",
        help="Address registered in Cloud Map.",
    )
    proxy.add_argument(
        "--instance-id",
        default="",
        metavar="ID",
        help="Cloud Map instance id (default: name-host-pid).",
    )
    proxy.add_argument(
        "--attribute", action="append", default=[], metavar="KEY=VALUE",
        help="Extra instance attribute. Repeatable.",
    )  # fmt: skip
    proxy.add_argument("--no-register", action="store_true", help="Do not register in Cloud Map.")
    proxy.add_argument(
        "--backend-port", action="append", default=[], metavar="VIRTUAL_SERVICE=PORT",
        help="Also listen on 127.0.0.1:PORT for calls to one backend: every request there goes "
        "to that virtual service's routes, whatever its Host header. Repeatable.",
    )  # fmt: skip
    _tail(proxy)

    gateway = commands.add_parser(
        "gateway", help=COMMANDS["gateway"], description=COMMANDS["gateway"]
    )
    gateway.set_defaults(command_parser=gateway)
    _common(gateway)
    gateway.add_argument("--virtual-gateway", metavar="G", required=True, help="Virtual gateway.")
    gateway.add_argument(
        "--port", type=_PORT, default=8080, metavar="PORT", help="Listener port (8080)."
    )
    gateway.add_argument(
        "--admin-port",
        type=_PORT,
        default=9902,
        metavar="PORT",
        help="Admin and metrics port (9902).",
    )
    _tail(gateway)
    return parser


def _attributes(parser: argparse.ArgumentParser, values: list[str]) -> dict[str, str]:
    attributes = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            parser.error(f"argument --attribute: expects KEY=VALUE, got {value!r}")
        attributes[key] = val
    return attributes


def _backend_ports(
    parser: argparse.ArgumentParser, values: list[str], taken: dict[str, int]
) -> dict[str, int]:
    from mapmesh.proxy.backend_port import parse_backend_ports

    try:
        ports = parse_backend_ports(values)
    except ValueError as exc:
        parser.error(f"argument --backend-port: {exc}")
    for service, port in ports.items():
        for flag, used in taken.items():
            if port == used:
                parser.error(f"argument --backend-port: {service}={port}: {flag} uses {port}")
    return ports


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mapmesh proxy|gateway ARGS`` (``argv`` without the program name)."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from mapmesh.proxy.process import ProxyOptions

    common: dict[str, Any] = {
        "control_plane": args.control_plane,
        "mesh": args.mesh,
        "admin_port": args.admin_port,
        "state_dir": args.state_dir,
        "access_log": args.access_log,
        "drain_timeout": args.drain_timeout,
        "connect_timeout": args.connect_timeout,
        "trace_sampling": args.trace_sampling,
        "trace_rate_limit": args.trace_rate_limit or None,
        "otlp_endpoint": args.otlp_endpoint,
        "report_interval": args.report_interval,
    }
    if args.command == "proxy":
        sub: argparse.ArgumentParser = args.command_parser
        taken = {"--inbound-port": args.inbound_port, "--outbound-port": args.outbound_port,
                 "--admin-port": args.admin_port, "--app-port": args.app_port}  # fmt: skip
        options = ProxyOptions(
            kind="virtualNode", name=args.virtual_node, app_port=args.app_port,
            inbound_port=args.inbound_port, outbound_port=args.outbound_port,
            advertise_address=args.advertise_address, instance_id=args.instance_id,
            attributes=_attributes(sub, args.attribute), register=not args.no_register,
            backend_ports=_backend_ports(sub, args.backend_port, taken), **common,
        )  # fmt: skip
    else:
        options = ProxyOptions(
            kind="virtualGateway", name=args.virtual_gateway, gateway_port=args.port, **common
        )
    return _run(options, args.log_level)


def _run(options: Any, log_level: str) -> int:
    from mapmesh.core import configure_logging
    from mapmesh.proxy.process import ProxyProcess
    from mapmesh.proxy.timer_loop import new_event_loop

    configure_logging(log_level)
    try:
        import uvloop

        uvloop.run(ProxyProcess(options).run_until_signalled(), loop_factory=new_event_loop)
    except OSError as exc:
        print(f"error: cannot start the proxy: {exc}. Choose other ports with the flags.",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0
