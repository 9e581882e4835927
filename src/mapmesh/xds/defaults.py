"""Every default the snapshot compiler applies, in one place.

App Mesh left most of these implicit in the Envoy configuration it generated, and users found
out about them in production. mapmesh writes each one into the snapshot, marks it
``defaulted`` (so ``mapmesh explain`` shows it as ``default``), and lists it in
:data:`DEFAULTS` — which ``docs/defaults.md`` renders as one table (a unit test keeps the two
in step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "DEFAULTS",
    "DNS_RESPONSE_TYPE",
    "DURATION_UNIT",
    "EGRESS_FILTER",
    "GATEWAY_HOSTNAME_REWRITE",
    "GATEWAY_PREFIX_REWRITE",
    "HEALTH_CHECK_PATH",
    "HTTP_IDLE_TIMEOUT_MS",
    "IP_PREFERENCE",
    "LB_POLICY",
    "MAX_CONNECTIONS",
    "MAX_PENDING_REQUESTS",
    "MAX_REQUESTS",
    "RATE_LIMIT_BURST",
    "REQUEST_TIMEOUT_MS",
    "RETRY_GRPC_EVENTS",
    "RETRY_HTTP_EVENTS",
    "RETRY_MAX_RETRIES",
    "RETRY_PER_TRY_TIMEOUT_MS",
    "RETRY_TCP_EVENTS",
    "TCP_IDLE_TIMEOUT_MS",
    "TLS_ENFORCE",
    "UNPRIORITIZED",
    "Default",
]

# Retry policy of an http/http2/grpc route that sets none (App Mesh's default retry policy).
RETRY_MAX_RETRIES: Final = 2
RETRY_PER_TRY_TIMEOUT_MS: Final = 15_000
RETRY_HTTP_EVENTS: Final[tuple[str, ...]] = ("gateway-error",)
RETRY_TCP_EVENTS: Final[tuple[str, ...]] = ("connection-error",)
RETRY_GRPC_EVENTS: Final[tuple[str, ...]] = ()

# Timeouts of routes and listeners that set none.
REQUEST_TIMEOUT_MS: Final = 15_000
HTTP_IDLE_TIMEOUT_MS: Final = 300_000
TCP_IDLE_TIMEOUT_MS: Final = 3_600_000
DURATION_UNIT: Final[Literal["s", "ms"]] = "s"

# Circuit breaker of a listener without a connection pool (Envoy's own defaults).
MAX_CONNECTIONS: Final = 1024
MAX_PENDING_REQUESTS: Final = 1024
MAX_REQUESTS: Final = 1024

LB_POLICY: Final[Literal["round_robin"]] = "round_robin"
EGRESS_FILTER: Final[Literal["DROP_ALL"]] = "DROP_ALL"
IP_PREFERENCE: Final[Literal["IPv4_PREFERRED"]] = "IPv4_PREFERRED"
DNS_RESPONSE_TYPE: Final[Literal["LOADBALANCER"]] = "LOADBALANCER"
HEALTH_CHECK_PATH: Final = "/"
TLS_ENFORCE: Final = True

# Gateway routes: the Host becomes the target virtual service's name; a matched prefix
# becomes "/" (App Mesh: prefix "/chapter", request "/chapter/1" → "/1").
GATEWAY_HOSTNAME_REWRITE: Final[Literal["ENABLED"]] = "ENABLED"
GATEWAY_PREFIX_REWRITE: Final = "/"

# Rate limits (a mapmesh extension) without a burst take one unit's worth of requests at once.
RATE_LIMIT_BURST: Final = "requestsPerUnit"

# Routes without a priority are matched after every route that has one (App Mesh allows
# priorities 0..1000, 0 first); ties are broken by route name.
UNPRIORITIZED: Final = 1001


@dataclass(frozen=True, slots=True)
class Default:
    """One row of docs/defaults.md: the setting, the value used, and when it applies."""

    setting: str
    value: str
    applies: str


DEFAULTS: Final[tuple[Default, ...]] = (
    Default(
        "route retry: max retries",
        str(RETRY_MAX_RETRIES),
        "http, http2 and grpc routes without a retryPolicy (also a node's catch-all route)",
    ),
    Default(
        "route retry: per-try timeout",
        f"{RETRY_PER_TRY_TIMEOUT_MS} ms",
        "same",
    ),
    Default("route retry: HTTP events", ", ".join(RETRY_HTTP_EVENTS), "same"),
    Default("route retry: TCP events", ", ".join(RETRY_TCP_EVENTS), "same"),
    Default("route retry: gRPC events", "none", "same"),
    Default(
        "per-request timeout",
        f"{REQUEST_TIMEOUT_MS} ms",
        "routes and listeners (http, http2, grpc) without timeout.perRequest",
    ),
    Default(
        "idle timeout (http, http2, grpc)",
        f"{HTTP_IDLE_TIMEOUT_MS} ms",
        "routes and listeners without timeout.idle",
    ),
    Default(
        "idle timeout (tcp)",
        f"{TCP_IDLE_TIMEOUT_MS} ms",
        "tcp routes and listeners without timeout.idle",
    ),
    Default("duration unit", DURATION_UNIT, "a Duration with a value but no unit"),
    Default(
        "max connections",
        str(MAX_CONNECTIONS),
        "listeners and clusters without connectionPool (or http2/grpc pools, which set none)",
    ),
    Default(
        "max pending requests",
        str(MAX_PENDING_REQUESTS),
        "without connectionPool.http.maxPendingRequests",
    ),
    Default(
        "max requests",
        str(MAX_REQUESTS),
        "without connectionPool.http2/grpc.maxRequests",
    ),
    Default("outlier detection", "off", "listeners without outlierDetection"),
    Default("active health check", "off", "listeners without healthCheck"),
    Default("health check path", HEALTH_CHECK_PATH, "http/http2 health checks without a path"),
    Default("health check port", "the listener's port", "health checks without a port"),
    Default("load balancing", LB_POLICY, "every cluster"),
    Default("egress filter", EGRESS_FILTER, "meshes without egressFilter"),
    Default(
        "IP preference",
        IP_PREFERENCE,
        "nodes and meshes without serviceDiscovery.ipPreference",
    ),
    Default("DNS response type", DNS_RESPONSE_TYPE, "DNS service discovery without responseType"),
    Default("client TLS enforce", "true", "client policies without tls.enforce"),
    Default("client TLS ports", "every port", "client policies without tls.ports"),
    Default(
        "gateway hostname rewrite",
        "target virtual service name",
        "gateway routes without rewrite.hostname",
    ),
    Default(
        "gateway prefix rewrite",
        GATEWAY_PREFIX_REWRITE,
        "gateway routes matching a prefix, without rewrite.prefix",
    ),
    Default("route priority", "after all prioritized routes", "routes without priority"),
    Default(
        "weighted target port",
        "the target node's first listener",
        "weighted targets without port",
    ),
    Default(
        "endpoint port",
        "the cluster's listener port",
        "Cloud Map instances without AWS_INSTANCE_PORT",
    ),
    Default("access log format", "default", "file access logs without format"),
    Default(
        "rate limit burst",
        RATE_LIMIT_BURST,
        "rateLimit extensions (gateway routes, node listeners) without burst",
    ),
)
