"""App Mesh policy shapes → resolved snapshot policies, defaults applied and recorded.

One function per policy; each takes the typed App Mesh value (None when unset) and returns the
snapshot value with ``defaulted`` naming every field filled from :mod:`mapmesh.xds.defaults`.
Virtual node and virtual gateway shapes differ only in class, so functions accept either.
"""

from __future__ import annotations

from mapmesh.mesh import extensions as ext
from mapmesh.model import appmesh as am
from mapmesh.model.snapshot import (
    AccessLog,
    AppProtocol,
    ClientTls,
    ConnectionPool,
    HealthCheck,
    Listener,
    ListenerTls,
    OutlierDetection,
    RateLimit,
    Timeouts,
    TlsCertificate,
    TlsValidation,
)
from mapmesh.xds import defaults

__all__ = [
    "access_log",
    "client_tls",
    "connection_pool",
    "duration_ms",
    "gateway_listener",
    "health_check",
    "listener_timeouts",
    "listener_tls",
    "node_listener",
    "outlier_detection",
    "rate_limit",
    "timeouts",
]

_Pool = am.VirtualNodeConnectionPool | am.VirtualGatewayConnectionPool
_HealthCheck = am.HealthCheckPolicy | am.VirtualGatewayHealthCheckPolicy
_Timeout = am.HttpTimeout | am.GrpcTimeout | am.TcpTimeout
_ListenerTls = am.ListenerTls | am.VirtualGatewayListenerTls
_ClientTls = am.ClientPolicyTls | am.VirtualGatewayClientPolicyTls
_Logging = am.Logging | am.VirtualGatewayLogging


def duration_ms(duration: am.Duration | None) -> int | None:
    """Milliseconds, or None when no value is set (a value without a unit is in seconds)."""
    if duration is None or duration.value is None:
        return None
    unit = duration.unit or defaults.DURATION_UNIT
    return duration.value * 1000 if unit == "s" else duration.value


def idle_default(protocol: AppProtocol) -> int:
    return defaults.TCP_IDLE_TIMEOUT_MS if protocol == "tcp" else defaults.HTTP_IDLE_TIMEOUT_MS


def timeouts(protocol: AppProtocol, configured: _Timeout | None) -> Timeouts:
    """A route's or listener's timeouts; tcp has no per-request timeout."""
    defaulted: list[str] = []
    request: int | None = None
    if protocol != "tcp":
        per_request = getattr(configured, "per_request", None)
        request = duration_ms(per_request)
        if request is None:
            request = defaults.REQUEST_TIMEOUT_MS
            defaulted.append("request_ms")
    idle = duration_ms(configured.idle if configured is not None else None)
    if idle is None:
        idle = idle_default(protocol)
        defaulted.append("idle_ms")
    return Timeouts(request_ms=request, idle_ms=idle, defaulted=tuple(defaulted))


def listener_timeouts(protocol: AppProtocol, configured: am.ListenerTimeout | None) -> Timeouts:
    """The member of the listener's timeout union for its protocol (else any member set)."""
    member: _Timeout | None = None
    if configured is not None:
        member = getattr(configured, protocol, None) or next(
            (
                m
                for m in (configured.http, configured.http2, configured.grpc, configured.tcp)
                if m is not None
            ),
            None,
        )
    return timeouts(protocol, member)


def connection_pool(configured: _Pool | None) -> ConnectionPool:
    """Circuit-breaker limits from whichever pool member is set, the rest defaulted."""
    connections: int | None = None
    pending: int | None = None
    requests: int | None = None
    if configured is not None:
        if configured.http is not None:
            connections = configured.http.max_connections
            pending = configured.http.max_pending_requests
        elif configured.http2 is not None:
            requests = configured.http2.max_requests
        elif configured.grpc is not None:
            requests = configured.grpc.max_requests
        elif isinstance(configured, am.VirtualNodeConnectionPool) and configured.tcp is not None:
            connections = configured.tcp.max_connections
    defaulted: list[str] = []
    if connections is None:
        connections = defaults.MAX_CONNECTIONS
        defaulted.append("max_connections")
    if pending is None:
        pending = defaults.MAX_PENDING_REQUESTS
        defaulted.append("max_pending_requests")
    if requests is None:
        requests = defaults.MAX_REQUESTS
        defaulted.append("max_requests")
    return ConnectionPool(
        max_connections=connections,
        max_pending_requests=pending,
        max_requests=requests,
        defaulted=tuple(defaulted),
    )


def outlier_detection(configured: am.OutlierDetection | None) -> OutlierDetection | None:
    """None (off) unless configured; every field of App Mesh's shape is required."""
    if configured is None:
        return None
    return OutlierDetection(
        max_server_errors=configured.max_server_errors,
        interval_ms=duration_ms(configured.interval) or 0,
        base_ejection_ms=duration_ms(configured.base_ejection_duration) or 0,
        max_ejection_percent=configured.max_ejection_percent,
    )


def health_check(configured: _HealthCheck | None, listener_port: int) -> HealthCheck | None:
    """None (no active check) unless configured; path and port defaulted when missing."""
    if configured is None:
        return None
    defaulted: list[str] = []
    path = configured.path
    if path is None and configured.protocol in ("http", "http2"):
        path = defaults.HEALTH_CHECK_PATH
        defaulted.append("path")
    port = configured.port
    if port is None:
        port = listener_port
        defaulted.append("port")
    return HealthCheck(
        protocol=configured.protocol,
        path=path,
        port=port,
        interval_ms=configured.interval_millis,
        timeout_ms=configured.timeout_millis,
        healthy_threshold=configured.healthy_threshold,
        unhealthy_threshold=configured.unhealthy_threshold,
        defaulted=tuple(defaulted),
    )


def _certificate(
    configured: am.ListenerTlsCertificate
    | am.VirtualGatewayListenerTlsCertificate
    | am.ClientTlsCertificate
    | am.VirtualGatewayClientTlsCertificate,
) -> TlsCertificate:
    acm = getattr(configured, "acm", None)
    if acm is not None:
        return TlsCertificate(source="acm", certificate_arn=acm.certificate_arn)
    if configured.sds is not None:
        return TlsCertificate(source="sds", secret_name=configured.sds.secret_name)
    file = configured.file
    return TlsCertificate(
        source="file",
        certificate_chain=file.certificate_chain if file else None,
        private_key=file.private_key if file else None,
    )


def _validation(
    configured: am.TlsValidationContext
    | am.ListenerTlsValidationContext
    | am.VirtualGatewayTlsValidationContext
    | am.VirtualGatewayListenerTlsValidationContext,
) -> TlsValidation:
    names = configured.subject_alternative_names
    sans = names.match.exact if names is not None else ()
    trust = configured.trust
    acm = getattr(trust, "acm", None)
    if acm is not None:
        return TlsValidation(
            trust="acm",
            certificate_authority_arns=acm.certificate_authority_arns,
            subject_alternative_names=sans,
        )
    if trust.sds is not None:
        return TlsValidation(
            trust="sds", secret_name=trust.sds.secret_name, subject_alternative_names=sans
        )
    chain = trust.file.certificate_chain if trust.file is not None else None
    return TlsValidation(trust="file", certificate_chain=chain, subject_alternative_names=sans)


def listener_tls(configured: _ListenerTls | None) -> ListenerTls | None:
    """Inbound TLS as configured (None: plain text)."""
    if configured is None:
        return None
    return ListenerTls(
        mode=configured.mode,
        certificate=_certificate(configured.certificate),
        validation=_validation(configured.validation) if configured.validation else None,
    )


def client_tls(configured: _ClientTls | None) -> ClientTls | None:
    """Outbound TLS as configured (None: plain text); ``enforce`` defaults to true."""
    if configured is None:
        return None
    defaulted: list[str] = []
    enforce = configured.enforce
    if enforce is None:
        enforce = defaults.TLS_ENFORCE
        defaulted.append("enforce")
    if not configured.ports:
        defaulted.append("ports")
    return ClientTls(
        enforce=enforce,
        ports=tuple(sorted(set(configured.ports or ()))),
        certificate=_certificate(configured.certificate) if configured.certificate else None,
        validation=_validation(configured.validation),
        defaulted=tuple(defaulted),
    )


def access_log(configured: _Logging | None) -> AccessLog | None:
    """The file access log, if any."""
    log = configured.access_log if configured is not None else None
    file = log.file if log is not None else None
    if file is None:
        return None
    form = file.format
    if form is not None and form.json_ is not None:
        pairs = tuple((ref.key, ref.value) for ref in form.json_)
        return AccessLog(path=file.path, format="json", json_fields=pairs)
    if form is not None and form.text is not None:
        return AccessLog(path=file.path, format="text", text=form.text)
    return AccessLog(path=file.path, format="default", defaulted=("format",))


def rate_limit(configured: ext.RateLimit | None) -> RateLimit | None:
    """A rateLimit extension as the proxy runs it (None: unlimited); ``burst`` defaults to
    ``requestsPerUnit`` (one unit's worth at once)."""
    if configured is None:
        return None
    burst = configured.burst
    defaulted: tuple[str, ...] = ()
    if burst is None:
        burst, defaulted = configured.requests_per_unit, ("burst",)
    return RateLimit(
        requests=configured.requests_per_unit,
        per_ms=1000 if configured.unit == "second" else 60_000,
        burst=burst,
        defaulted=defaulted,
    )


def node_listener(configured: am.Listener, limit: RateLimit | None = None) -> Listener:
    """A virtual node's listener, as its sidecar's inbound side runs it; ``limit`` comes from
    the node's rateLimit extension for this port."""
    port = configured.port_mapping.port
    protocol = configured.port_mapping.protocol
    outlier = outlier_detection(configured.outlier_detection)
    check = health_check(configured.health_check, port)
    tls = listener_tls(configured.tls)
    return Listener(
        port=port,
        protocol=protocol,
        timeout=listener_timeouts(protocol, configured.timeout),
        connection_pool=connection_pool(configured.connection_pool),
        outlier_detection=outlier,
        health_check=check,
        tls=tls,
        defaulted=_unset(outlier_detection=outlier, health_check=check, tls=tls),
        rate_limit=limit,
    )


def gateway_listener(configured: am.VirtualGatewayListener) -> Listener:
    """A virtual gateway's listener (App Mesh gives gateways no timeouts or outlier
    detection to configure, so those are always defaults)."""
    port = configured.port_mapping.port
    protocol = configured.port_mapping.protocol
    check = health_check(configured.health_check, port)
    tls = listener_tls(configured.tls)
    return Listener(
        port=port,
        protocol=protocol,
        timeout=timeouts(protocol, None),
        connection_pool=connection_pool(configured.connection_pool),
        outlier_detection=None,
        health_check=check,
        tls=tls,
        defaulted=_unset(outlier_detection=None, health_check=check, tls=tls),
    )


def _unset(**values: object) -> tuple[str, ...]:
    """Names of optional policies left off (off by default)."""
    return tuple(name for name, value in values.items() if value is None)
