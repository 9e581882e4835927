"""``mapmesh proxy`` (the sidecar) and ``mapmesh gateway``: the data plane's processes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["gateway", "proxy"]

ControlPlane = Annotated[
    str,
    typer.Option(
        "--control-plane", metavar="URL", envvar="MAPMESH_CONTROL_PLANE",
        help="URL of the control plane's API.",
    ),
]  # fmt: skip
Mesh = Annotated[str, typer.Option("--mesh", metavar="M", help="Mesh name.")]
StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir", help="Keep the last good snapshot here (serve from it on restart)."
    ),
]
AccessLog = Annotated[
    str | None,
    typer.Option(
        "--access-log",
        help="Write one JSON line per request to this file (- = stdout); a snapshot's own "
        "access log (path and format) takes precedence.",
    ),
]
LogLevel = Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")]


def _positive_seconds(value: float) -> float:
    if not value > 0:
        raise typer.BadParameter(f"must be more than 0 seconds, got {value:g}")
    return value


ConnectTimeout = Annotated[
    float,
    typer.Option(
        "--connect-timeout", metavar="SECONDS", callback=_positive_seconds,
        help="Seconds to open a connection to an upstream endpoint (every cluster); a connect "
        "that takes longer is a connect failure (503, flag UF).",
    ),
]  # fmt: skip


def _sampling(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise typer.BadParameter(f"must be from 0 to 1, got {value:g}")
    return value


def _rate_limit(value: float) -> float:
    if value < 0:
        raise typer.BadParameter(f"must be 0 (no limit) or more, got {value:g}")
    return value


def _otlp_endpoint(value: str | None) -> str | None:
    if value is not None and not value.startswith("http://"):
        raise typer.BadParameter(f"must be an http:// URL (OTLP/HTTP, JSON), got {value!r}")
    return value


TraceSampling = Annotated[
    float,
    typer.Option(
        "--trace-sampling", metavar="RATE", callback=_sampling,
        help="Share of requests arriving without a sampling decision that start a trace "
        "(0 to 1); requests with a sampled traceparent are always traced.",
    ),
]  # fmt: skip
TraceRateLimit = Annotated[
    float,
    typer.Option(
        "--trace-rate-limit", metavar="PER_SECOND", callback=_rate_limit,
        help="Traces this proxy starts per second at most, whatever its request rate "
        "(0: no limit); requests with a sampled traceparent are always traced.",
    ),
]  # fmt: skip
OtlpEndpoint = Annotated[
    str | None,
    typer.Option(
        "--otlp-endpoint", metavar="URL", callback=_otlp_endpoint,
        help="Also send spans to this OpenTelemetry collector (OTLP/HTTP JSON, "
        "POST URL/v1/traces), e.g. http://127.0.0.1:4318.",
    ),
]  # fmt: skip
ReportInterval = Annotated[
    float,
    typer.Option(
        "--report-interval", metavar="SECONDS", callback=_positive_seconds,
        help="Seconds between telemetry reports to the control plane.",
    ),
]  # fmt: skip


def _attribute(values: list[str]) -> dict[str, str]:
    attributes = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--attribute expects KEY=VALUE, got {value!r}")
        attributes[key] = val
    return attributes


BackendPorts = Annotated[
    list[str],
    typer.Option(
        "--backend-port", metavar="VIRTUAL_SERVICE=PORT",
        help="Also listen on 127.0.0.1:PORT for calls to one backend: every request there goes "
        "to that virtual service's routes, whatever its Host header. Repeatable.",
    ),
]  # fmt: skip


def _backend_ports(values: list[str], taken: dict[str, int]) -> dict[str, int]:
    from mapmesh.proxy.backend_port import parse_backend_ports

    try:
        ports = parse_backend_ports(values)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    for service, port in ports.items():
        for flag, used in taken.items():
            if port == used:
                raise typer.BadParameter(f"--backend-port {service}={port}: {flag} uses {port}")
    return ports


def proxy(
    control_plane: ControlPlane,
    mesh: Mesh,
    virtual_node: Annotated[str, typer.Option("--virtual-node", metavar="N", help="Virtual node.")],
    app_port: Annotated[int, typer.Option("--app-port", help="Port of the local application.")],
    inbound_port: Annotated[
        int, typer.Option("--inbound-port", help="Listener fronting the app.")
    ] = 15000,
    outbound_port: Annotated[
        int, typer.Option("--outbound-port", help="HTTP proxy port for the app's calls.")
    ] = 15001,
    admin_port: Annotated[int, typer.Option("--admin-port", help="Admin and metrics port.")] = 9901,
    advertise_address: Annotated[
        str, typer.Option("--advertise-address", help="Address registered in Cloud Map.")
    ] = "127.0.0.1",
    instance_id: Annotated[
        str, typer.Option("--instance-id", help="Cloud Map instance id (default: name-host-pid).")
    ] = "",
    attribute: Annotated[
        list[str], typer.Option("--attribute", help="Extra instance attribute KEY=VALUE.")
    ] = [],  # noqa: B006
    no_register: Annotated[
        bool, typer.Option("--no-register", help="Do not register in Cloud Map.")
    ] = False,
    drain_timeout: Annotated[
        float, typer.Option("--drain-timeout", help="Seconds to finish requests on SIGTERM.")
    ] = 10.0,
    backend_port: BackendPorts = [],  # noqa: B006
    connect_timeout: ConnectTimeout = 5.0,
    state_dir: StateDir = None,
    access_log: AccessLog = None,
    trace_sampling: TraceSampling = 0.05,  # telemetry.runtime.DEFAULT_SAMPLING
    trace_rate_limit: TraceRateLimit = 50.0,  # telemetry.tracing.DEFAULT_RATE_LIMIT
    otlp_endpoint: OtlpEndpoint = None,
    report_interval: ReportInterval = 2.0,
    log_level: LogLevel = "info",
) -> None:
    """Run the sidecar proxy of a virtual node: outbound HTTP proxy, inbound listener, admin."""
    from mapmesh.proxy.process import ProxyOptions

    taken = {"--inbound-port": inbound_port, "--outbound-port": outbound_port,
             "--admin-port": admin_port, "--app-port": app_port}  # fmt: skip
    _run(ProxyOptions(
        control_plane=control_plane, mesh=mesh, kind="virtualNode", name=virtual_node,
        app_port=app_port, inbound_port=inbound_port, outbound_port=outbound_port,
        admin_port=admin_port, advertise_address=advertise_address, instance_id=instance_id,
        attributes=_attribute(attribute), state_dir=state_dir, access_log=access_log,
        drain_timeout=drain_timeout, register=not no_register, connect_timeout=connect_timeout,
        backend_ports=_backend_ports(backend_port, taken), trace_sampling=trace_sampling,
        trace_rate_limit=trace_rate_limit or None, otlp_endpoint=otlp_endpoint,
        report_interval=report_interval,
    ), log_level)  # fmt: skip


def gateway(
    control_plane: ControlPlane,
    mesh: Mesh,
    virtual_gateway: Annotated[
        str, typer.Option("--virtual-gateway", metavar="G", help="Virtual gateway.")
    ],
    port: Annotated[int, typer.Option("--port", help="Listener port.")] = 8080,
    admin_port: Annotated[int, typer.Option("--admin-port", help="Admin and metrics port.")] = 9902,
    drain_timeout: Annotated[
        float, typer.Option("--drain-timeout", help="Seconds to finish requests on SIGTERM.")
    ] = 10.0,
    connect_timeout: ConnectTimeout = 5.0,
    state_dir: StateDir = None,
    access_log: AccessLog = None,
    trace_sampling: TraceSampling = 0.05,  # telemetry.runtime.DEFAULT_SAMPLING
    trace_rate_limit: TraceRateLimit = 50.0,  # telemetry.tracing.DEFAULT_RATE_LIMIT
    otlp_endpoint: OtlpEndpoint = None,
    report_interval: ReportInterval = 2.0,
    log_level: LogLevel = "info",
) -> None:
    """Run a virtual gateway: outside traffic in, routed by gateway routes."""
    from mapmesh.proxy.process import ProxyOptions

    _run(ProxyOptions(
        control_plane=control_plane, mesh=mesh, kind="virtualGateway", name=virtual_gateway,
        gateway_port=port, admin_port=admin_port, state_dir=state_dir, access_log=access_log,
        drain_timeout=drain_timeout, connect_timeout=connect_timeout,
        trace_sampling=trace_sampling, trace_rate_limit=trace_rate_limit or None,
        otlp_endpoint=otlp_endpoint, report_interval=report_interval,
    ), log_level)  # fmt: skip


def _run(options: object, log_level: str) -> None:
    from mapmesh.core import configure_logging
    from mapmesh.proxy.process import ProxyOptions, ProxyProcess

    assert isinstance(options, ProxyOptions)
    configure_logging(log_level)
    try:
        import uvloop

        uvloop.run(ProxyProcess(options).run_until_signalled())
    except OSError as exc:
        typer.echo(
            f"error: cannot start the proxy: {exc}. Choose other ports with the flags.", err=True
        )
        raise typer.Exit(1) from None
