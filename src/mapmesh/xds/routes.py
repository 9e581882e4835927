"""App Mesh route and gateway-route shapes → resolved matches, retries and rewrites.

Matching is reduced to one vocabulary the proxy implements once (:class:`RouteMatch`): gRPC
service and method names become paths (``/pkg.Service/Method``), gRPC metadata becomes
headers, a route without a path condition matches every path. Retry policies get App Mesh's
default when none is set. Gateway rewrites get App Mesh's default semantics: the Host becomes
the target virtual service's name and a matched prefix becomes ``/``.
"""

from __future__ import annotations

from mapmesh.model import appmesh as am
from mapmesh.model.snapshot import (
    AppProtocol,
    HeaderMatch,
    HostnameMatch,
    PathMatch,
    QueryMatch,
    RetryPolicy,
    Rewrite,
    RouteMatch,
)
from mapmesh.xds import defaults
from mapmesh.xds.policies import duration_ms

__all__ = [
    "DEFAULT_RETRY",
    "GatewayMember",
    "RouteMember",
    "gateway_match",
    "gateway_member",
    "gateway_rewrite",
    "retry_policy",
    "route_match",
    "route_member",
]

RouteMember = am.HttpRoute | am.GrpcRoute | am.TcpRoute
GatewayMember = am.HttpGatewayRoute | am.GrpcGatewayRoute

_RETRY_FIELDS = ("max_retries", "per_try_timeout_ms", "http_events", "tcp_events", "grpc_events")

DEFAULT_RETRY = RetryPolicy(
    max_retries=defaults.RETRY_MAX_RETRIES,
    per_try_timeout_ms=defaults.RETRY_PER_TRY_TIMEOUT_MS,
    http_events=defaults.RETRY_HTTP_EVENTS,
    tcp_events=defaults.RETRY_TCP_EVENTS,
    grpc_events=defaults.RETRY_GRPC_EVENTS,
    defaulted=_RETRY_FIELDS,
)

_MatchMethod = am.HeaderMatchMethod | am.GrpcRouteMetadataMatchMethod | am.GrpcMetadataMatchMethod


def route_member(spec: am.RouteSpec) -> tuple[AppProtocol, RouteMember] | None:
    """The one protocol member a route sets, or None when it sets zero or several."""
    candidates: tuple[tuple[AppProtocol, RouteMember | None], ...] = (
        ("http", spec.http_route),
        ("http2", spec.http2_route),
        ("grpc", spec.grpc_route),
        ("tcp", spec.tcp_route),
    )
    members = [(protocol, member) for protocol, member in candidates if member is not None]
    return members[0] if len(members) == 1 else None


def gateway_member(spec: am.GatewayRouteSpec) -> tuple[AppProtocol, GatewayMember] | None:
    candidates: tuple[tuple[AppProtocol, GatewayMember | None], ...] = (
        ("http", spec.http_route),
        ("http2", spec.http2_route),
        ("grpc", spec.grpc_route),
    )
    members = [(protocol, member) for protocol, member in candidates if member is not None]
    return members[0] if len(members) == 1 else None


# -- retries -------------------------------------------------------------------------------


def retry_policy(
    protocol: AppProtocol, configured: am.HttpRetryPolicy | am.GrpcRetryPolicy | None
) -> RetryPolicy | None:
    """The route's retry policy: as configured, App Mesh's default when unset, None for tcp."""
    if protocol == "tcp":
        return None
    if configured is None:
        return DEFAULT_RETRY
    per_try = duration_ms(configured.per_retry_timeout)
    grpc_events = getattr(configured, "grpc_retry_events", None) or ()
    return RetryPolicy(
        max_retries=configured.max_retries,
        per_try_timeout_ms=defaults.RETRY_PER_TRY_TIMEOUT_MS if per_try is None else per_try,
        http_events=tuple(sorted(set(configured.http_retry_events or ()))),
        tcp_events=tuple(sorted(set(configured.tcp_retry_events or ()))),
        grpc_events=tuple(sorted(set(grpc_events))),
        defaulted=("per_try_timeout_ms",) if per_try is None else (),
    )


# -- matches -------------------------------------------------------------------------------


def _header(name: str, invert: bool | None, method: _MatchMethod | None) -> HeaderMatch:
    lowered = name.lower()
    negate = bool(invert)
    if method is None:
        return HeaderMatch(name=lowered, kind="present", invert=negate)
    if method.range is not None:
        return HeaderMatch(
            name=lowered,
            kind="range",
            range_start=method.range.start,
            range_end=method.range.end,
            invert=negate,
        )
    for kind in ("exact", "prefix", "suffix", "regex"):
        value = getattr(method, kind)
        if value is not None:
            return HeaderMatch(name=lowered, kind=kind, value=value, invert=negate)
    return HeaderMatch(name=lowered, kind="present", invert=negate)


def _query(parameters: tuple[am.HttpQueryParameter, ...] | None) -> tuple[QueryMatch, ...]:
    return tuple(
        QueryMatch(name=p.name, exact=p.match.exact if p.match is not None else None)
        for p in parameters or ()
    )


def _path(prefix: str | None, path: am.HttpPathMatch | None) -> PathMatch:
    if path is not None and path.exact is not None:
        return PathMatch(kind="exact", value=path.exact)
    if path is not None and path.regex is not None:
        return PathMatch(kind="regex", value=path.regex)
    return PathMatch(kind="prefix", value=prefix if prefix is not None else "/")


def _grpc_path(service: str | None, method: str | None) -> PathMatch:
    if service is None:
        return PathMatch(kind="prefix", value="/")
    if method is None:
        return PathMatch(kind="prefix", value=f"/{service}/")
    return PathMatch(kind="exact", value=f"/{service}/{method}")


def route_match(member: RouteMember) -> RouteMatch:
    """A virtual router route's match in the snapshot's vocabulary."""
    if isinstance(member, am.TcpRoute):
        return RouteMatch(port=member.match.port if member.match is not None else None)
    if isinstance(member, am.GrpcRoute):
        grpc = member.match
        return RouteMatch(
            path=_grpc_path(grpc.service_name, grpc.method_name),
            headers=tuple(_header(m.name, m.invert, m.match) for m in grpc.metadata or ()),
            port=grpc.port,
        )
    http = member.match
    return RouteMatch(
        path=_path(http.prefix, http.path),
        method=http.method,
        scheme=http.scheme,
        headers=tuple(_header(h.name, h.invert, h.match) for h in http.headers or ()),
        query=_query(http.query_parameters),
        port=http.port,
    )


def _hostname(configured: am.GatewayRouteHostnameMatch | None) -> HostnameMatch | None:
    if configured is None:
        return None
    if configured.exact is not None:
        return HostnameMatch(kind="exact", value=configured.exact.lower())
    if configured.suffix is not None:
        return HostnameMatch(kind="suffix", value=configured.suffix.lower())
    return None


def gateway_match(member: GatewayMember) -> RouteMatch:
    """A gateway route's match in the snapshot's vocabulary."""
    if isinstance(member, am.GrpcGatewayRoute):
        grpc = member.match
        return RouteMatch(
            path=_grpc_path(grpc.service_name, None),
            headers=tuple(_header(m.name, m.invert, m.match) for m in grpc.metadata or ()),
            port=grpc.port,
            hostname=_hostname(grpc.hostname),
        )
    http = member.match
    return RouteMatch(
        path=_path(http.prefix, http.path),
        method=http.method,
        headers=tuple(_header(h.name, h.invert, h.match) for h in http.headers or ()),
        query=_query(http.query_parameters),
        port=http.port,
        hostname=_hostname(http.hostname),
    )


# -- gateway rewrites ----------------------------------------------------------------------


def _hostname_rewrite(
    configured: am.GatewayRouteHostnameRewrite | None, target: str, defaulted: list[str]
) -> str | None:
    if configured is None or configured.default_target_hostname is None:
        defaulted.append("hostname")
        return target
    return target if configured.default_target_hostname == "ENABLED" else None


def _prefix_rewrite(
    configured: am.HttpGatewayRoutePrefixRewrite | None, defaulted: list[str]
) -> str | None:
    if configured is None or (configured.value is None and configured.default_prefix is None):
        defaulted.append("prefix")
        return defaults.GATEWAY_PREFIX_REWRITE
    if configured.value is not None:
        return configured.value
    return defaults.GATEWAY_PREFIX_REWRITE if configured.default_prefix == "ENABLED" else None


def gateway_rewrite(member: GatewayMember, virtual_service: str) -> Rewrite:
    """What the gateway changes before routing: Host, matched prefix, or whole path."""
    defaulted: list[str] = []
    rewrite = member.action.rewrite
    hostname = _hostname_rewrite(
        rewrite.hostname if rewrite is not None else None, virtual_service, defaulted
    )
    prefix: str | None = None
    path: str | None = None
    if isinstance(member, am.HttpGatewayRoute):
        http_rewrite = member.action.rewrite
        if member.match.prefix is not None and member.match.path is None:
            prefix = _prefix_rewrite(
                http_rewrite.prefix if http_rewrite is not None else None, defaulted
            )
        if http_rewrite is not None and http_rewrite.path is not None:
            path = http_rewrite.path.exact
    return Rewrite(hostname=hostname, prefix=prefix, path=path, defaulted=tuple(defaulted))
