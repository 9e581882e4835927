"""What one proxy needs, fully resolved: the snapshot a sidecar or a gateway runs on.

The control plane compiles one snapshot per proxy identity (mesh, kind, name) from the App
Mesh configuration and the Cloud Map registry (:mod:`mapmesh.xds.compiler`). Everything App
Mesh leaves implicit is written out here, so the proxy never needs App Mesh's shapes or its
defaults: a route carries its retry policy and timeouts even when none was configured, a
cluster carries its circuit-breaker limits and its endpoints, a gateway route carries the
rewrites it will apply.

Rules that make snapshots cheap to compare, cache and ship:

- every model is frozen and hashable; equal configuration gives equal values, so a proxy can
  keep a cluster's pools and outlier history when an update leaves that cluster unchanged;
- durations are integer milliseconds (``*_ms``), ``0`` disables a timeout; no datetimes, no
  floats, no dicts — sequences are tuples in a documented, deterministic order;
- :func:`encode` gives canonical JSON (sorted keys, no whitespace): the same snapshot always
  encodes to the same bytes, so the control plane encodes once and sends those bytes to every
  replica of the proxy, and an unchanged digest means nothing to send;
- models that can hold defaults list, in ``defaulted``, the fields the compiler filled in
  from ``docs/defaults.md`` rather than from configuration — ``mapmesh explain`` shows them
  as ``default``. The proxy ignores ``defaulted``.

This module imports only the standard library (proxies import it: pydantic would cost each
sidecar about 10 MB); :mod:`mapmesh.model.plain` checks decoded values against the hints.
``docs/snapshot.md`` describes the format field by field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from mapmesh.model.plain import Record, RecordError, omit_none, record, to_json
from mapmesh.model.plain import decode as decode_record

__all__ = [
    "FORMAT_VERSION",
    "AccessLog",
    "AppProtocol",
    "ClientTls",
    "Cluster",
    "ConnectionPool",
    "Discovery",
    "EgressFilter",
    "Endpoint",
    "GatewayRoute",
    "HeaderMatch",
    "HealthCheck",
    "HealthState",
    "HostnameMatch",
    "IpPreference",
    "Listener",
    "ListenerTls",
    "OutlierDetection",
    "PathMatch",
    "Provider",
    "ProxyKind",
    "QueryMatch",
    "RateLimit",
    "Resolved",
    "RetryPolicy",
    "Rewrite",
    "Route",
    "RouteMatch",
    "RouteTable",
    "Snapshot",
    "SnapshotModel",
    "Source",
    "Timeouts",
    "TlsCertificate",
    "TlsValidation",
    "WeightedCluster",
    "decode",
    "encode",
]

FORMAT_VERSION = 1

ProxyKind = Literal["virtualNode", "virtualGateway"]
AppProtocol = Literal["http", "http2", "grpc", "tcp"]
EgressFilter = Literal["DROP_ALL", "ALLOW_ALL"]
HealthState = Literal["HEALTHY", "UNHEALTHY", "UNKNOWN"]
IpPreference = Literal["IPv6_PREFERRED", "IPv4_PREFERRED", "IPv4_ONLY", "IPv6_ONLY"]
Source = Literal["default", "configured"]


class SnapshotModel(Record):
    """Base of every snapshot model: frozen, hashable, unknown fields rejected."""

    __slots__ = ()


@record
class Resolved(SnapshotModel):
    """A model some of whose fields may come from defaults rather than configuration."""

    defaulted: tuple[str, ...] = ()

    def source(self, field: str) -> Source:
        return "default" if field in self.defaulted else "configured"


# -- policies shared by listeners and clusters -------------------------------------------


@record
class Timeouts(Resolved):
    """``request_ms`` bounds a whole request (None for tcp); ``idle_ms`` an idle connection
    or stream. ``0`` disables either."""

    request_ms: int | None
    idle_ms: int


@record
class ConnectionPool(Resolved):
    """Circuit-breaker limits: connections, requests waiting for one, requests in flight."""

    max_connections: int
    max_pending_requests: int
    max_requests: int


@record
class OutlierDetection(SnapshotModel):
    """Eject an endpoint after ``max_server_errors`` consecutive 5xx (as Envoy's
    consecutive_5xx: at once when the count is reached; ``interval_ms`` paces the decay of
    repeat ejections), for ``base_ejection_ms`` times the number of its ejections so far,
    never more than ``max_ejection_percent`` of the endpoints at once (at least one)."""

    max_server_errors: int
    interval_ms: int
    base_ejection_ms: int
    max_ejection_percent: int


@record
class HealthCheck(Resolved):
    """Active health check of an endpoint (or, on an inbound listener, the local app)."""

    protocol: AppProtocol
    path: str | None
    port: int
    interval_ms: int
    timeout_ms: int
    healthy_threshold: int
    unhealthy_threshold: int


@record
class TlsCertificate(SnapshotModel):
    """Where a certificate comes from: files, an SDS secret, or an ACM ARN (by reference)."""

    source: Literal["file", "sds", "acm"]
    certificate_chain: str | None = None
    private_key: str | None = None
    secret_name: str | None = None
    certificate_arn: str | None = None


@record
class TlsValidation(SnapshotModel):
    """How to validate the peer's certificate, and which subject alternative names to accept
    (empty: any)."""

    trust: Literal["file", "sds", "acm"]
    certificate_chain: str | None = None
    secret_name: str | None = None
    certificate_authority_arns: tuple[str, ...] = ()
    subject_alternative_names: tuple[str, ...] = ()


@record
class ListenerTls(SnapshotModel):
    mode: Literal["STRICT", "PERMISSIVE", "DISABLED"]
    certificate: TlsCertificate
    validation: TlsValidation | None = None


@record
class ClientTls(Resolved):
    """TLS towards a backend. ``ports`` empty means every port; ``enforce`` False means TLS
    is offered but plain text is accepted."""

    enforce: bool
    ports: tuple[int, ...]
    certificate: TlsCertificate | None
    validation: TlsValidation


@record
class RateLimit(Resolved):
    """A token bucket (a mapmesh extension, not App Mesh's): ``burst`` tokens at most, refilled
    continuously at ``requests`` per ``per_ms``; each request takes one or is answered 429.
    Every proxy process keeps its own bucket."""

    requests: int
    per_ms: int
    burst: int


@record
class AccessLog(Resolved):
    """``format`` default is mapmesh's own text line; ``text`` a pattern; ``json`` the
    ``json_fields`` (key, pattern) pairs in configured order."""

    path: str
    format: Literal["default", "text", "json"]
    text: str | None = None
    json_fields: tuple[tuple[str, str], ...] = ()


@record
class Listener(Resolved):
    """An inbound listener: a sidecar's (fronting the local app) or a gateway's."""

    port: int
    protocol: AppProtocol
    timeout: Timeouts
    connection_pool: ConnectionPool
    outlier_detection: OutlierDetection | None
    health_check: HealthCheck | None
    tls: ListenerTls | None
    # Left out of the encoding when None, so snapshots without one keep their bytes.
    rate_limit: RateLimit | None = omit_none()


# -- matching ------------------------------------------------------------------------------


@record
class PathMatch(SnapshotModel):
    """``prefix`` matches the path's beginning, ``exact`` the whole path (without the query),
    ``regex`` the whole path (Python ``re.fullmatch``)."""

    kind: Literal["prefix", "exact", "regex"]
    value: str


@record
class HeaderMatch(SnapshotModel):
    """One header condition. ``name`` is lower case. ``range`` accepts integers in
    [range_start, range_end); ``present`` only needs the header; ``invert`` negates."""

    name: str
    kind: Literal["exact", "prefix", "suffix", "regex", "range", "present"]
    value: str | None = None
    range_start: int | None = None
    range_end: int | None = None
    invert: bool = False


@record
class QueryMatch(SnapshotModel):
    """A query parameter equal to ``exact``, or merely present when ``exact`` is None."""

    name: str
    exact: str | None = None


@record
class HostnameMatch(SnapshotModel):
    """The request's host (lower case, without port) equals or ends with ``value``."""

    kind: Literal["exact", "suffix"]
    value: str


@record
class RouteMatch(SnapshotModel):
    """Every condition set must hold. gRPC service/method names arrive here as paths
    (``/pkg.Service/Method``) and gRPC metadata as headers."""

    path: PathMatch = PathMatch(kind="prefix", value="/")
    method: str | None = None
    scheme: str | None = None
    headers: tuple[HeaderMatch, ...] = ()
    query: tuple[QueryMatch, ...] = ()
    port: int | None = None
    hostname: HostnameMatch | None = None


# -- routes --------------------------------------------------------------------------------


@record
class WeightedCluster(Resolved):
    """A share of a route's traffic: ``weight`` out of the route's total weight. ``port`` is
    the target node's listener port (defaulted to its first listener when not configured)."""

    cluster: str
    weight: int
    port: int | None


@record
class RetryPolicy(Resolved):
    """Retry at most ``max_retries`` times, each attempt bounded by ``per_try_timeout_ms``,
    when an attempt ends in one of the events. HTTP events: ``server-error`` (5xx),
    ``gateway-error`` (502, 503, 504), ``client-error`` (409), ``stream-error`` (reset or
    refused stream); TCP: ``connection-error``; gRPC: status names (``unavailable``...)."""

    max_retries: int
    per_try_timeout_ms: int
    http_events: tuple[str, ...]
    tcp_events: tuple[str, ...]
    grpc_events: tuple[str, ...]


@record
class Route(Resolved):
    """One entry of a route table; ``retry`` is None for tcp routes."""

    name: str
    priority: int | None
    protocol: AppProtocol
    match: RouteMatch
    targets: tuple[WeightedCluster, ...]
    retry: RetryPolicy | None
    timeout: Timeouts


@record
class Provider(SnapshotModel):
    """What serves a virtual service: a router's routes, one node, or nothing (missing)."""

    kind: Literal["virtualRouter", "virtualNode", "none"]
    name: str | None = None


@record
class RouteTable(SnapshotModel):
    """The routes of one virtual service, reached by its name as host (``worker.corp``).

    ``routes`` are in match order: priority ascending (routes without one last), then name.
    An empty table answers 404 (the service or its provider is missing; the compiler warned).
    """

    virtual_service: str
    ports: tuple[int, ...]
    provider: Provider
    routes: tuple[Route, ...]
    client_tls: ClientTls | None
    client_policy_from: Literal["backend", "backendDefaults", "none"]


@record
class Rewrite(Resolved):
    """What a gateway route changes before handing the request to the route table.

    ``hostname``: the Host header to send (None keeps the client's). ``prefix``: replaces the
    matched path prefix (a doubled ``/`` at the seam collapses). ``path``: replaces the whole
    path. None means no change.
    """

    hostname: str | None
    prefix: str | None
    path: str | None


@record
class GatewayRoute(Resolved):
    """A gateway's route: match, rewrite, then the ``virtual_service`` route table."""

    name: str
    priority: int | None
    protocol: AppProtocol
    match: RouteMatch
    rewrite: Rewrite
    virtual_service: str
    port: int | None
    rate_limit: RateLimit | None = omit_none()


# -- clusters ------------------------------------------------------------------------------


@record
class Endpoint(SnapshotModel):
    """An upstream address. ``health`` comes from the registry: HEALTHY and UNKNOWN receive
    traffic, UNHEALTHY does not. For DNS discovery ``address`` is a hostname the proxy
    resolves.

    ``weight`` (1-128, Envoy's ``load_balancing_weight``) is the endpoint's share within its
    cluster; None means 1. It is left out of the encoding when None, so snapshots without
    weights keep the bytes (and digests) they had before the field existed.
    """

    address: str
    port: int
    health: HealthState
    instance_id: str | None = None
    weight: int | None = omit_none()

    def __post_init__(self) -> None:
        if self.weight is not None and not 1 <= self.weight <= 128:
            raise ValueError(f"endpoint weight must be 1 to 128, got {self.weight}")


@record
class Discovery(Resolved):
    """How the cluster's endpoints were found: Cloud Map (namespace, service, attribute
    filter), DNS (hostname), or none (the target node is missing or has none)."""

    kind: Literal["cloudMap", "dns", "none"]
    namespace: str | None = None
    service: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()
    hostname: str | None = None
    response_type: Literal["LOADBALANCER", "ENDPOINTS"] | None = None
    ip_preference: IpPreference


@record
class Cluster(Resolved):
    """One target virtual node on one port, named ``<mesh>/<node>:<port>``.

    The policies come from the target node's listener on that port; ``endpoints`` are sorted
    by (address, port, instance id).
    """

    name: str
    virtual_node: str
    port: int | None
    protocol: AppProtocol | None
    lb_policy: Literal["round_robin"]
    connection_pool: ConnectionPool
    outlier_detection: OutlierDetection | None
    health_check: HealthCheck | None
    discovery: Discovery
    endpoints: tuple[Endpoint, ...]


# -- the snapshot --------------------------------------------------------------------------


@record
class Snapshot(Resolved):
    """Everything one proxy (all replicas of one virtual node or virtual gateway) runs on.

    ``route_tables`` are sorted by virtual service name, ``gateway_routes`` in match order,
    ``clusters`` by name, ``listeners`` by port. Every route target names a cluster in
    ``clusters``; every gateway route names a route table in ``route_tables``.
    """

    format_version: int = FORMAT_VERSION
    mesh: str
    kind: ProxyKind
    name: str
    egress_filter: EgressFilter
    listeners: tuple[Listener, ...]
    route_tables: tuple[RouteTable, ...]
    gateway_routes: tuple[GatewayRoute, ...] = ()
    clusters: tuple[Cluster, ...]
    access_log: AccessLog | None = None
    # Where a sidecar registers its own instance (its node's service discovery); None for
    # gateways and for nodes without Cloud Map discovery.
    registration: Discovery | None = None

    def cluster(self, name: str) -> Cluster | None:
        return next((c for c in self.clusters if c.name == name), None)

    def route_table(self, virtual_service: str) -> RouteTable | None:
        return next((t for t in self.route_tables if t.virtual_service == virtual_service), None)


def encode(snapshot: Snapshot) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, UTF-8. Equal snapshots, equal bytes."""
    return json.dumps(
        to_json(snapshot),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode("utf-8")


def decode(data: bytes | str | Mapping[str, Any]) -> Snapshot:
    """The snapshot in ``data`` (encoded bytes, text, or an already parsed JSON object);
    :class:`~mapmesh.model.plain.RecordError` (a ValueError) naming the path when it does not
    fit the format."""
    if not isinstance(data, Mapping):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise RecordError(f"snapshot: invalid JSON: {exc}") from None
    return decode_record(Snapshot, data)
