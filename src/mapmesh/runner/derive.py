"""App file → the App Mesh resources and Cloud Map entries that run it (pure).

Users say "A calls B"; App Mesh needs four resource types to say it. The rules, one line each
(``docs/runner.md`` shows a worked example):

- the app is a **mesh** named ``app`` (egress filter ``egressFilter``, default DROP_ALL); the
  namespace is a Cloud Map **private DNS namespace**
  with one **Cloud Map service** per app service (DNS A and SRV records, custom health);
- each service — or each of its versions — is a **virtual node** (``worker`` / ``worker-v1``)
  discovered through Cloud Map (versions by the instance attribute ``version``), with one
  nominal HTTP listener on :data:`LISTENER_PORT` carrying the health check, connection pool
  and outlier detection, and the virtual services of its ``calls`` as backends;
- each service has a **virtual router** (same name) with one **route** ``default``: weighted
  targets from the version weights, the retry policy and the per-request timeout;
- each service is a **virtual service** ``<service>.<namespace>`` provided by its router —
  the host name apps call (``http://auth.social.local``);
- the gateway is a **virtual gateway** ``gateway`` with one **gateway route** per entry, in
  file order (priority 0, 1, …), each targeting a virtual service.

Every resource is tagged :data:`OWNER_TAG` = app, so resources the runner no longer derives can
be told apart from ones a person added to the mesh by hand.

:func:`derive` takes the nodes that have running replicas (``ready``) so a route never sends
traffic to a version that cannot answer yet: a rollout adds a new version's weight once its
first replica is registered. :func:`to_documents` checks the result against the App Mesh API
model through :func:`mapmesh.cli.meshfile.parse`, the same path ``mapmesh apply -f`` takes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from mapmesh.runner.appfile import AppFile, HealthCheck, Service, Version

__all__ = [
    "GATEWAY_NAME",
    "LISTENER_PORT",
    "OWNER_TAG",
    "ROUTE_NAME",
    "Derived",
    "derive",
    "duration",
    "refusal",
    "to_documents",
    "virtual_service",
]

LISTENER_PORT = 8080
"""The nominal port of every node and router listener; real ports are the instances'."""

GATEWAY_NAME = "gateway"
ROUTE_NAME = "default"
OWNER_TAG = "mapmesh:runner"

# App Mesh's ranges for a listener's health check; the runner's own checks use the file's
# values, the callers' proxies these clamped ones.
_INTERVAL_MS = (5_000, 300_000)
_TIMEOUT_MS = (2_000, 60_000)
_THRESHOLD = (2, 10)


@dataclass(frozen=True, slots=True)
class Derived:
    """What an app file asks of the control plane."""

    mesh: str
    namespace: str
    cloud_map_services: tuple[str, ...]
    documents: tuple[dict[str, Any], ...]  # mesh-file documents, in the file's order

    def names(self) -> set[tuple[str, str | None, str]]:
        """(kind, parent, name) of every document, to find the ones no longer derived."""
        return {(d["kind"], _parent(d), d["name"]) for d in self.documents}


def _parent(document: dict[str, Any]) -> str | None:
    parent = document.get("virtualRouter") or document.get("virtualGateway")
    return str(parent) if parent is not None else None


def virtual_service(service: str, namespace: str) -> str:
    """The host name apps call: ``auth.social.local``."""
    return f"{service}.{namespace}"


def duration(seconds: float) -> dict[str, Any]:
    """App Mesh's Duration: whole seconds as ``s``, anything finer as ``ms``."""
    millis = round(seconds * 1000)
    if millis % 1000 == 0:
        return {"unit": "s", "value": millis // 1000}
    return {"unit": "ms", "value": millis}


def derive(app: AppFile, ready: Collection[str] | None = None) -> Derived:
    """The resources of ``app``; ``ready`` (node names) limits route targets, None: all."""
    tags = {OWNER_TAG: app.app}
    mesh = app.app
    documents: list[dict[str, Any]] = [
        {"kind": "Mesh", "name": mesh, "spec": {"egressFilter": {"type": app.egress}}, "tags": tags}
    ]

    def add(kind: str, name: str, spec: dict[str, Any], **parent: str) -> None:
        documents.append(
            {"kind": kind, "mesh": mesh, **parent, "name": name, "spec": spec, "tags": tags}
        )

    for service in app.services:
        for version in service.versions:
            add("VirtualNode", version.node, _node_spec(app, service, version))
    for service in app.services:
        add("VirtualRouter", service.name, {"listeners": [_http_listener(LISTENER_PORT)]})
        add("Route", ROUTE_NAME, _route_spec(service, ready), virtualRouter=service.name)
        add(
            "VirtualService",
            virtual_service(service.name, app.namespace),
            {"provider": {"virtualRouter": {"virtualRouterName": service.name}}},
        )
    if app.gateway is not None:
        add("VirtualGateway", GATEWAY_NAME, {"listeners": [_http_listener(app.gateway.port)]})
        for name, priority, spec in _gateway_routes(app):
            add("GatewayRoute", name, {**spec, "priority": priority}, virtualGateway=GATEWAY_NAME)
    return Derived(
        mesh=mesh,
        namespace=app.namespace,
        cloud_map_services=tuple(s.name for s in app.services),
        documents=tuple(documents),
    )


def _http_listener(port: int) -> dict[str, Any]:
    return {"portMapping": {"port": port, "protocol": "http"}}


def _node_spec(app: AppFile, service: Service, version: Version) -> dict[str, Any]:
    listener = _http_listener(LISTENER_PORT)
    listener["healthCheck"] = _health_check(service.health)
    if service.connection_pool is not None:
        pool: dict[str, Any] = {"maxConnections": service.connection_pool.max_connections}
        if service.connection_pool.max_pending_requests is not None:
            pool["maxPendingRequests"] = service.connection_pool.max_pending_requests
        listener["connectionPool"] = {"http": pool}
    if service.outlier_detection is not None:
        outlier = service.outlier_detection
        listener["outlierDetection"] = {
            "maxServerErrors": outlier.max_server_errors,
            "interval": duration(outlier.interval),
            "baseEjectionDuration": duration(outlier.base_ejection_duration),
            "maxEjectionPercent": outlier.max_ejection_percent,
        }
    if service.timeout is not None:
        # The inbound listener must wait as long as the route lets callers wait.
        listener["timeout"] = {"http": {"perRequest": duration(service.timeout)}}
    cloud_map: dict[str, Any] = {"namespaceName": app.namespace, "serviceName": service.name}
    if version.name is not None:
        cloud_map["attributes"] = [{"key": "version", "value": version.name}]
    spec: dict[str, Any] = {
        "listeners": [listener],
        "serviceDiscovery": {"awsCloudMap": cloud_map},
    }
    if service.calls:
        spec["backends"] = [
            {"virtualService": {"virtualServiceName": virtual_service(c, app.namespace)}}
            for c in service.calls
        ]
    return spec


def _health_check(health: HealthCheck) -> dict[str, Any]:
    check: dict[str, Any] = {
        "protocol": "tcp" if health.tcp else "http",
        "intervalMillis": _clamp(round(health.interval * 1000), _INTERVAL_MS),
        "timeoutMillis": _clamp(round(health.timeout * 1000), _TIMEOUT_MS),
        "healthyThreshold": _clamp(health.healthy_threshold, _THRESHOLD),
        "unhealthyThreshold": _clamp(health.unhealthy_threshold, _THRESHOLD),
    }
    if health.path is not None:
        check["path"] = health.path
    return check


def _clamp(value: int, bounds: tuple[int, int]) -> int:
    return max(bounds[0], min(bounds[1], value))


def _route_spec(service: Service, ready: Collection[str] | None) -> dict[str, Any]:
    targets = [v for v in service.versions if v.weight > 0]
    if ready is not None and any(v.node in ready for v in targets):
        targets = [v for v in targets if v.node in ready]
    route: dict[str, Any] = {
        "match": {"prefix": "/"},
        "action": {
            "weightedTargets": [{"virtualNode": v.node, "weight": v.weight} for v in targets]
        },
    }
    if service.retries is not None:
        retries = service.retries
        policy: dict[str, Any] = {
            "maxRetries": retries.max_retries,
            "perRetryTimeout": duration(retries.per_retry_timeout),
        }
        if retries.http_events:
            policy["httpRetryEvents"] = list(retries.http_events)
        if retries.tcp_events:
            policy["tcpRetryEvents"] = list(retries.tcp_events)
        route["retryPolicy"] = policy
    if service.timeout is not None:
        route["timeout"] = {"perRequest": duration(service.timeout)}
    return {"httpRoute": route}


def _gateway_routes(app: AppFile) -> Iterable[tuple[str, int, dict[str, Any]]]:
    assert app.gateway is not None
    used: dict[str, int] = {}
    for priority, entry in enumerate(app.gateway.routes):
        base = f"to-{entry.service}"
        used[base] = used.get(base, 0) + 1
        name = base if used[base] == 1 else f"{base}-{used[base]}"
        action: dict[str, Any] = {
            "target": {
                "virtualService": {
                    "virtualServiceName": virtual_service(entry.service, app.namespace)
                }
            }
        }
        if entry.rewrite is None:
            action["rewrite"] = {"prefix": {"defaultPrefix": "DISABLED"}}
        elif entry.rewrite != "/":
            action["rewrite"] = {"prefix": {"value": entry.rewrite}}
        yield name, priority, {"httpRoute": {"match": {"prefix": entry.prefix}, "action": action}}


def to_documents(derived: Derived, source: str) -> list[Any]:
    """The derived resources as mesh-file :class:`~mapmesh.cli.meshfile.Document` values,
    checked against the App Mesh API model (``source`` names them in errors)."""
    from mapmesh.cli.meshfile import check_unique, dump_documents, parse

    documents = parse(dump_documents(derived.documents), source)
    check_unique(documents)
    return documents


def refusal(app: AppFile, source: str) -> str | None:
    """Why the App Mesh API would refuse the app's resources, if it would."""
    from mapmesh.cli.meshfile import MeshFileError

    try:
        to_documents(derive(app), f"{source} (derived)")
    except MeshFileError as exc:
        return f"the app file derives a resource App Mesh would refuse: {exc.message}"
    return None
