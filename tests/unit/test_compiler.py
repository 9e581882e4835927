"""The snapshot compiler on App Mesh's walkthrough: a frontend calling worker.corp, a router
splitting 90/10 between worker-v1 and worker-v2 (found in Cloud Map by version attribute),
and an ingress gateway routing /worker/ to the same service.

The two read models are plain in-memory stand-ins (:class:`FakeMesh`, :class:`FakeRegistry`);
the property tests import them too.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mapmesh.mesh.kinds import ResourceId
from mapmesh.mesh.records import MeshResource, ResourceMetadata
from mapmesh.mesh.view import MeshView
from mapmesh.model.plain import decode as decode_record
from mapmesh.model.plain import to_json
from mapmesh.model.registry import (
    HealthStatus,
    HttpProperties,
    Instance,
    Namespace,
    NamespaceProperties,
    NamespaceType,
    Service,
    ServiceType,
)
from mapmesh.model.snapshot import Snapshot, decode, encode
from mapmesh.registry.view import RegistryView
from mapmesh.xds import (
    CompileResult,
    ProxyId,
    UnknownProxy,
    WarningCode,
    affected_proxies,
    compile_snapshot,
    explain,
    render_text,
)
from mapmesh.xds import defaults as xds_defaults

NOW = datetime(2024, 1, 1, tzinfo=UTC)
ACCOUNT = "111122223333"
DOCS = Path(__file__).resolve().parents[2] / "docs"


# -- stand-ins for the two read models -------------------------------------------------------


def resource(
    kind: str, name: str, spec: dict[str, Any], *, mesh: str = "demo", parent: str | None = None
) -> MeshResource:
    rid = ResourceId(kind, mesh, parent, name)
    return MeshResource(
        kind=kind,
        mesh=mesh,
        parent=parent,
        name=name,
        spec=spec,
        metadata=ResourceMetadata(
            arn=rid.arn("us-east-1", ACCOUNT),
            uid=f"uid-{mesh}-{kind}-{name}",
            version=1,
            created_at=NOW,
            last_updated_at=NOW,
            mesh_owner=ACCOUNT,
            resource_owner=ACCOUNT,
        ),
    )


class FakeMesh:
    """MeshView's queries over a list, in the list's order (the compiler must not care)."""

    def __init__(self, resources: Iterable[MeshResource]) -> None:
        self.resources = list(resources)

    def get(self, rid: ResourceId) -> MeshResource | None:
        return next((r for r in self.resources if r.id == rid), None)

    def meshes(self) -> list[MeshResource]:
        return [r for r in self.resources if r.kind == "mesh"]

    def in_mesh(self, mesh: str, kind: str | None = None) -> list[MeshResource]:
        return [
            r
            for r in self.resources
            if r.mesh == mesh and r.kind != "mesh" and (kind is None or r.kind == kind)
        ]

    def children(self, kind: str, mesh: str, parent: str) -> list[MeshResource]:
        return [r for r in self.in_mesh(mesh, kind) if r.parent == parent]


class FakeRegistry:
    """RegistryView's queries over plain dicts."""

    def __init__(
        self,
        namespaces: Iterable[Namespace] = (),
        services: Iterable[Service] = (),
        instances: Iterable[Instance] = (),
    ) -> None:
        self.namespaces = {n.id: n for n in namespaces}
        self.services = {s.id: s for s in services}
        self.instances: dict[str, dict[str, Instance]] = {}
        for instance in instances:
            self.instances.setdefault(instance.service_id, {})[instance.id] = instance

    def namespace_by_http_name(self, name: str) -> Namespace | None:
        return next(
            (n for n in self.namespaces.values() if n.http_name.lower() == name.lower()), None
        )

    def service_by_name(self, namespace_id: str, name: str) -> Service | None:
        return next(
            (
                s
                for s in self.services.values()
                if s.namespace_id == namespace_id and s.name.lower() == name.lower()
            ),
            None,
        )

    def instances_of(self, service_id: str) -> dict[str, Instance]:
        return self.instances.get(service_id, {})


def _real_views_fit_the_protocols(view: MeshView, registry: RegistryView) -> None:
    """Never called: mypy checks that the control plane's read models fit the Protocols."""
    compile_snapshot(view, registry, "demo", "virtualNode", "frontend")
    affected_proxies(view, registry, changed_services=["srv-1"])


def namespace(namespace_id: str, name: str) -> Namespace:
    return Namespace(
        id=namespace_id,
        arn=f"arn:aws:servicediscovery:us-east-1:{ACCOUNT}:namespace/{namespace_id}",
        name=name,
        type=NamespaceType.HTTP,
        properties=NamespaceProperties(http_properties=HttpProperties(http_name=name)),
        create_date=NOW,
        resource_owner=ACCOUNT,
    )


def service(service_id: str, name: str, namespace_id: str) -> Service:
    return Service(
        id=service_id,
        arn=f"arn:aws:servicediscovery:us-east-1:{ACCOUNT}:service/{service_id}",
        name=name,
        namespace_id=namespace_id,
        type=ServiceType.HTTP,
        create_date=NOW,
        created_by_account=ACCOUNT,
        resource_owner=ACCOUNT,
    )


def instance(
    instance_id: str,
    service_id: str,
    health: HealthStatus = HealthStatus.HEALTHY,
    **attributes: str,
) -> Instance:
    return Instance(
        id=instance_id,
        service_id=service_id,
        attributes=attributes,
        created_by_account=ACCOUNT,
        registered_at=NOW,
        health_status=health,
    )


# -- the walkthrough -------------------------------------------------------------------------


def http_listener(port: int = 8080, **extra: Any) -> dict[str, Any]:
    return {"portMapping": {"port": port, "protocol": "http"}, **extra}


def cloud_map(service_name: str, **attributes: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"namespaceName": "corp", "serviceName": service_name}
    if attributes:
        spec["attributes"] = [{"key": k, "value": v} for k, v in attributes.items()]
    return {"awsCloudMap": spec}


def walkthrough_mesh(mesh: str = "demo") -> list[MeshResource]:
    return [
        resource("mesh", mesh, {}, mesh=mesh),
        resource(
            "virtualNode",
            "frontend",
            {
                "listeners": [
                    http_listener(
                        healthCheck={
                            "protocol": "http",
                            "path": "/ping",
                            "healthyThreshold": 2,
                            "unhealthyThreshold": 3,
                            "intervalMillis": 5000,
                            "timeoutMillis": 2000,
                        }
                    )
                ],
                "serviceDiscovery": cloud_map("frontend"),
                "backends": [{"virtualService": {"virtualServiceName": "worker.corp"}}],
            },
            mesh=mesh,
        ),
        resource(
            "virtualNode",
            "worker-v1",
            {
                "listeners": [
                    http_listener(
                        connectionPool={"http": {"maxConnections": 50}},
                        outlierDetection={
                            "maxServerErrors": 5,
                            "interval": {"unit": "s", "value": 10},
                            "baseEjectionDuration": {"unit": "s", "value": 30},
                            "maxEjectionPercent": 50,
                        },
                    )
                ],
                "serviceDiscovery": cloud_map("worker", version="v1"),
            },
            mesh=mesh,
        ),
        resource(
            "virtualNode",
            "worker-v2",
            {
                "listeners": [
                    http_listener(timeout={"http": {"perRequest": {"unit": "s", "value": 5}}})
                ],
                "serviceDiscovery": cloud_map("worker", version="v2"),
            },
            mesh=mesh,
        ),
        resource("virtualRouter", "worker-router", {"listeners": [http_listener()]}, mesh=mesh),
        resource(
            "route",
            "worker-route",
            {
                "httpRoute": {
                    "match": {"prefix": "/"},
                    "action": {
                        "weightedTargets": [
                            {"virtualNode": "worker-v1", "weight": 90},
                            {"virtualNode": "worker-v2", "weight": 10},
                        ]
                    },
                    "retryPolicy": {
                        "maxRetries": 3,
                        "perRetryTimeout": {"unit": "ms", "value": 2000},
                        "httpRetryEvents": ["server-error", "gateway-error"],
                        "tcpRetryEvents": ["connection-error"],
                    },
                }
            },
            mesh=mesh,
            parent="worker-router",
        ),
        resource(
            "virtualService",
            "worker.corp",
            {"provider": {"virtualRouter": {"virtualRouterName": "worker-router"}}},
            mesh=mesh,
        ),
        resource(
            "virtualGateway",
            "ingress",
            {"listeners": [{"portMapping": {"port": 8443, "protocol": "http"}}]},
            mesh=mesh,
        ),
        resource(
            "gatewayRoute",
            "to-worker",
            {
                "httpRoute": {
                    "match": {"prefix": "/worker/"},
                    "action": {"target": {"virtualService": {"virtualServiceName": "worker.corp"}}},
                }
            },
            mesh=mesh,
            parent="ingress",
        ),
    ]


def walkthrough_registry() -> FakeRegistry:
    return FakeRegistry(
        [namespace("ns-corp", "corp")],
        [
            service("srv-worker", "worker", "ns-corp"),
            service("srv-frontend", "frontend", "ns-corp"),
        ],
        [
            instance(
                "i-1",
                "srv-worker",
                version="v1",
                AWS_INSTANCE_IPV4="10.0.0.1",
                AWS_INSTANCE_PORT="8080",
            ),
            instance(
                "i-2",
                "srv-worker",
                HealthStatus.UNHEALTHY,
                version="v1",
                AWS_INSTANCE_IPV4="10.0.0.2",
                AWS_INSTANCE_PORT="8080",
            ),
            instance("i-5", "srv-worker", version="v1", AWS_INSTANCE_IPV4="10.0.0.5"),
            instance(
                "i-3",
                "srv-worker",
                HealthStatus.UNKNOWN,
                version="v2",
                AWS_INSTANCE_IPV4="10.0.0.3",
                AWS_INSTANCE_PORT="9090",
            ),
            instance(
                "i-4",
                "srv-worker",
                version="v3",
                AWS_INSTANCE_IPV4="10.0.0.4",
                AWS_INSTANCE_PORT="8080",
            ),
            instance("f-1", "srv-frontend", AWS_INSTANCE_IPV4="10.0.1.1"),
        ],
    )


def compile_node(
    name: str = "frontend",
    resources: list[MeshResource] | None = None,
    registry: FakeRegistry | None = None,
    kind: str = "virtualNode",
) -> CompileResult:
    return compile_snapshot(
        FakeMesh(walkthrough_mesh() if resources is None else resources),
        walkthrough_registry() if registry is None else registry,
        "demo",
        kind,
        name,
    )


def replace(resources: list[MeshResource], *replacements: MeshResource) -> list[MeshResource]:
    ids = {r.id for r in replacements}
    return [r for r in resources if r.id not in ids] + list(replacements)


# -- the sidecar -----------------------------------------------------------------------------


def test_frontend_gets_its_identity_listener_and_one_route_table() -> None:
    result = compile_node()
    snapshot = result.snapshot
    assert (snapshot.mesh, snapshot.kind, snapshot.name) == ("demo", "virtualNode", "frontend")
    assert snapshot.egress_filter == "DROP_ALL"
    assert snapshot.source("egress_filter") == "default"
    assert result.warnings == ()

    (listener,) = snapshot.listeners
    assert (listener.port, listener.protocol) == (8080, "http")
    assert (listener.timeout.request_ms, listener.timeout.idle_ms) == (15_000, 300_000)
    assert set(listener.timeout.defaulted) == {"request_ms", "idle_ms"}
    assert listener.connection_pool.max_connections == 1024
    assert listener.outlier_detection is None
    assert "outlier_detection" in listener.defaulted
    assert listener.health_check is not None
    assert (listener.health_check.path, listener.health_check.port) == ("/ping", 8080)
    assert listener.health_check.defaulted == ("port",)

    assert [t.virtual_service for t in snapshot.route_tables] == ["worker.corp"]


def test_route_splits_90_10_with_the_configured_retry_and_default_timeouts() -> None:
    table = compile_node().snapshot.route_table("worker.corp")
    assert table is not None
    assert table.ports == (8080,)
    assert (table.provider.kind, table.provider.name) == ("virtualRouter", "worker-router")
    (route,) = table.routes
    assert route.name == "worker-route"
    assert (route.match.path.kind, route.match.path.value) == ("prefix", "/")
    assert [(t.cluster, t.weight, t.port) for t in route.targets] == [
        ("demo/worker-v1:8080", 90, 8080),
        ("demo/worker-v2:8080", 10, 8080),
    ]
    assert all(t.source("port") == "default" for t in route.targets)
    assert route.retry is not None
    assert route.retry.max_retries == 3
    assert route.retry.per_try_timeout_ms == 2000
    assert route.retry.http_events == ("gateway-error", "server-error")
    assert route.retry.tcp_events == ("connection-error",)
    assert route.retry.defaulted == ()
    assert (route.timeout.request_ms, route.timeout.idle_ms) == (15_000, 300_000)
    assert route.source("priority") == "default"


def test_clusters_carry_the_target_listener_policies_and_registry_endpoints() -> None:
    snapshot = compile_node().snapshot
    assert [c.name for c in snapshot.clusters] == ["demo/worker-v1:8080", "demo/worker-v2:8080"]
    v1 = snapshot.cluster("demo/worker-v1:8080")
    assert v1 is not None
    assert v1.connection_pool.max_connections == 50
    assert v1.connection_pool.source("max_connections") == "configured"
    assert v1.connection_pool.source("max_pending_requests") == "default"
    assert v1.outlier_detection is not None
    assert (v1.outlier_detection.interval_ms, v1.outlier_detection.base_ejection_ms) == (
        10_000,
        30_000,
    )
    assert v1.lb_policy == "round_robin"
    assert v1.discovery.kind == "cloudMap"
    assert v1.discovery.attributes == (("version", "v1"),)
    # i-4 (version v3) is filtered out; i-5 has no AWS_INSTANCE_PORT and gets the listener's.
    assert [(e.address, e.port, e.health, e.instance_id) for e in v1.endpoints] == [
        ("10.0.0.1", 8080, "HEALTHY", "i-1"),
        ("10.0.0.2", 8080, "UNHEALTHY", "i-2"),
        ("10.0.0.5", 8080, "HEALTHY", "i-5"),
    ]
    v2 = snapshot.cluster("demo/worker-v2:8080")
    assert v2 is not None
    assert [(e.address, e.port, e.health) for e in v2.endpoints] == [("10.0.0.3", 9090, "UNKNOWN")]
    assert v2.outlier_detection is None
    assert "outlier_detection" in v2.defaulted


def test_a_route_without_retry_policy_gets_app_mesh_default_retry() -> None:
    resources = walkthrough_mesh()
    plain = resource(
        "route",
        "worker-route",
        {
            "httpRoute": {
                "match": {"prefix": "/"},
                "action": {"weightedTargets": [{"virtualNode": "worker-v1", "weight": 1}]},
            }
        },
        parent="worker-router",
    )
    table = compile_node(resources=replace(resources, plain)).snapshot.route_table("worker.corp")
    assert table is not None
    retry = table.routes[0].retry
    assert retry is not None
    assert (retry.max_retries, retry.per_try_timeout_ms) == (2, 15_000)
    assert retry.http_events == ("gateway-error",)
    assert retry.tcp_events == ("connection-error",)
    assert set(retry.defaulted) == {
        "max_retries",
        "per_try_timeout_ms",
        "http_events",
        "tcp_events",
        "grpc_events",
    }


def test_routes_are_ordered_by_priority_then_name_unprioritized_last() -> None:
    def route(name: str, priority: int | None, prefix: str) -> MeshResource:
        spec: dict[str, Any] = {
            "httpRoute": {
                "match": {"prefix": prefix},
                "action": {"weightedTargets": [{"virtualNode": "worker-v1", "weight": 1}]},
            }
        }
        if priority is not None:
            spec["priority"] = priority
        return resource("route", name, spec, parent="worker-router")

    resources = replace(
        walkthrough_mesh(),
        route("worker-route", None, "/"),
        route("b-api", 10, "/api"),
        route("a-api", 10, "/api/v1"),
        route("first", 0, "/health"),
        route("a-catch", None, "/x"),
    )
    table = compile_node(resources=resources).snapshot.route_table("worker.corp")
    assert table is not None
    assert [r.name for r in table.routes] == ["first", "a-api", "b-api", "a-catch", "worker-route"]


def test_matches_on_headers_method_scheme_query_and_port_are_resolved() -> None:
    route = resource(
        "route",
        "worker-route",
        {
            "httpRoute": {
                "match": {
                    "path": {"exact": "/orders"},
                    "method": "POST",
                    "scheme": "https",
                    "port": 8080,
                    "headers": [
                        {"name": "X-Canary", "match": {"exact": "yes"}},
                        {"name": "x-user", "match": {"range": {"start": 1, "end": 100}}},
                        {"name": "x-debug", "invert": True},
                        {"name": "x-region", "match": {"suffix": "-1"}},
                    ],
                    "queryParameters": [
                        {"name": "v", "match": {"exact": "2"}},
                        {"name": "trace"},
                    ],
                },
                "action": {"weightedTargets": [{"virtualNode": "worker-v2", "weight": 1}]},
            }
        },
        parent="worker-router",
    )
    table = compile_node(resources=replace(walkthrough_mesh(), route)).snapshot.route_table(
        "worker.corp"
    )
    assert table is not None
    match = table.routes[0].match
    assert (match.path.kind, match.path.value) == ("exact", "/orders")
    assert (match.method, match.scheme, match.port) == ("POST", "https", 8080)
    assert [(h.name, h.kind, h.value, h.invert) for h in match.headers] == [
        ("x-canary", "exact", "yes", False),
        ("x-user", "range", None, False),
        ("x-debug", "present", None, True),
        ("x-region", "suffix", "-1", False),
    ]
    assert (match.headers[1].range_start, match.headers[1].range_end) == (1, 100)
    assert [(q.name, q.exact) for q in match.query] == [("v", "2"), ("trace", None)]


def test_grpc_route_becomes_path_and_header_matches() -> None:
    resources = replace(
        walkthrough_mesh(),
        resource(
            "virtualRouter",
            "worker-router",
            {"listeners": [{"portMapping": {"port": 8080, "protocol": "grpc"}}]},
        ),
        resource(
            "route",
            "worker-route",
            {
                "grpcRoute": {
                    "match": {
                        "serviceName": "corp.Worker",
                        "methodName": "Run",
                        "metadata": [{"name": "Tenant", "match": {"prefix": "acme"}}],
                    },
                    "action": {"weightedTargets": [{"virtualNode": "worker-v1", "weight": 1}]},
                    "retryPolicy": {
                        "maxRetries": 1,
                        "perRetryTimeout": {"unit": "s", "value": 1},
                        "grpcRetryEvents": ["unavailable", "cancelled"],
                    },
                }
            },
            parent="worker-router",
        ),
    )
    table = compile_node(resources=resources).snapshot.route_table("worker.corp")
    assert table is not None
    route = table.routes[0]
    assert route.protocol == "grpc"
    assert (route.match.path.kind, route.match.path.value) == ("exact", "/corp.Worker/Run")
    assert [(h.name, h.kind, h.value) for h in route.match.headers] == [
        ("tenant", "prefix", "acme")
    ]
    assert route.retry is not None
    assert route.retry.grpc_events == ("cancelled", "unavailable")
    assert route.retry.per_try_timeout_ms == 1000


def test_a_node_provided_service_gets_one_catch_all_route_with_defaults() -> None:
    resources = replace(
        walkthrough_mesh(),
        resource(
            "virtualService",
            "worker.corp",
            {"provider": {"virtualNode": {"virtualNodeName": "worker-v2"}}},
        ),
    )
    table = compile_node(resources=resources).snapshot.route_table("worker.corp")
    assert table is not None
    assert (table.provider.kind, table.provider.name, table.ports) == (
        "virtualNode",
        "worker-v2",
        (8080,),
    )
    (route,) = table.routes
    assert route.name == "worker-v2"
    assert route.match.path.value == "/"
    assert [(t.cluster, t.weight) for t in route.targets] == [("demo/worker-v2:8080", 100)]
    assert route.retry is not None
    assert route.retry.source("max_retries") == "default"


def test_client_tls_comes_from_the_backend_or_else_backend_defaults() -> None:
    tls = {
        "validation": {"trust": {"file": {"certificateChain": "/certs/ca.pem"}}},
        "ports": [8080],
    }
    frontend = resource(
        "virtualNode",
        "frontend",
        {
            "listeners": [http_listener()],
            "serviceDiscovery": cloud_map("frontend"),
            "backendDefaults": {"clientPolicy": {"tls": {**tls, "enforce": False}}},
            "backends": [
                {
                    "virtualService": {
                        "virtualServiceName": "worker.corp",
                        "clientPolicy": {"tls": tls},
                    }
                },
                {"virtualService": {"virtualServiceName": "other.corp"}},
            ],
        },
    )
    snapshot = compile_node(resources=replace(walkthrough_mesh(), frontend)).snapshot
    worker = snapshot.route_table("worker.corp")
    other = snapshot.route_table("other.corp")
    assert worker is not None and other is not None
    assert worker.client_policy_from == "backend"
    assert worker.client_tls is not None
    assert worker.client_tls.enforce is True
    assert worker.client_tls.source("enforce") == "default"
    assert worker.client_tls.validation.certificate_chain == "/certs/ca.pem"
    assert other.client_policy_from == "backendDefaults"
    assert other.client_tls is not None and other.client_tls.enforce is False


# -- dangling references compile, with warnings ----------------------------------------------


def test_a_missing_backend_gives_an_empty_route_table_and_a_warning() -> None:
    frontend = resource(
        "virtualNode",
        "frontend",
        {
            "listeners": [http_listener()],
            "serviceDiscovery": cloud_map("frontend"),
            "backends": [
                {"virtualService": {"virtualServiceName": "worker.corp"}},
                {"virtualService": {"virtualServiceName": "ghost.corp"}},
            ],
        },
    )
    result = compile_node(resources=replace(walkthrough_mesh(), frontend))
    ghost = result.snapshot.route_table("ghost.corp")
    assert ghost is not None
    assert (ghost.routes, ghost.provider.kind) == ((), "none")
    assert [w.code for w in result.warnings] == [WarningCode.VIRTUAL_SERVICE_NOT_FOUND]
    assert result.warnings[0].subject == "virtualService demo/ghost.corp"


def test_a_missing_target_node_gets_an_empty_cluster_and_a_warning() -> None:
    resources = [r for r in walkthrough_mesh() if r.name != "worker-v2"]
    result = compile_node(resources=resources)
    cluster = result.snapshot.cluster("demo/worker-v2:8080")
    missing = result.snapshot.cluster("demo/worker-v2")
    assert cluster is None and missing is not None
    assert missing.endpoints == ()
    assert missing.discovery.kind == "none"
    assert [w.code for w in result.warnings] == [WarningCode.TARGET_NODE_NOT_FOUND]


def test_a_target_without_instances_warns_no_endpoints() -> None:
    registry = walkthrough_registry()
    registry.instances["srv-worker"] = {
        k: v for k, v in registry.instances["srv-worker"].items() if v.attributes["version"] != "v2"
    }
    result = compile_node(registry=registry)
    cluster = result.snapshot.cluster("demo/worker-v2:8080")
    assert cluster is not None and cluster.endpoints == ()
    assert [(w.code, w.subject) for w in result.warnings] == [
        (WarningCode.NO_ENDPOINTS, "virtualNode demo/worker-v2")
    ]


def test_an_invalid_stored_spec_is_ignored_with_a_warning() -> None:
    broken = resource("route", "worker-route", {"httpRoute": {"match": {}}}, parent="worker-router")
    result = compile_node(resources=replace(walkthrough_mesh(), broken))
    codes = {w.code for w in result.warnings}
    assert WarningCode.INVALID_SPEC in codes
    assert WarningCode.NO_ROUTES in codes
    table = result.snapshot.route_table("worker.corp")
    assert table is not None and table.routes == ()


def test_an_unknown_proxy_raises() -> None:
    with pytest.raises(UnknownProxy, match="virtualNode 'nobody' not found in mesh 'demo'"):
        compile_node("nobody")
    with pytest.raises(UnknownProxy):
        compile_node("nobody", kind="virtualGateway")
    with pytest.raises(ValueError):
        compile_node(kind="virtualRouter")


# -- discovery variants ----------------------------------------------------------------------


def test_dns_discovery_gives_the_hostname_on_the_listener_port() -> None:
    worker = resource(
        "virtualNode",
        "worker-v1",
        {
            "listeners": [http_listener(9000)],
            "serviceDiscovery": {"dns": {"hostname": "worker-v1.internal"}},
        },
    )
    route = resource(
        "route",
        "worker-route",
        {
            "httpRoute": {
                "match": {"prefix": "/"},
                "action": {"weightedTargets": [{"virtualNode": "worker-v1", "weight": 1}]},
            }
        },
        parent="worker-router",
    )
    snapshot = compile_node(resources=replace(walkthrough_mesh(), worker, route)).snapshot
    cluster = snapshot.cluster("demo/worker-v1:9000")
    assert cluster is not None
    assert (cluster.discovery.kind, cluster.discovery.response_type) == ("dns", "LOADBALANCER")
    assert [(e.address, e.port) for e in cluster.endpoints] == [("worker-v1.internal", 9000)]


def test_ip_preference_from_the_mesh_picks_ipv6() -> None:
    registry = walkthrough_registry()
    registry.instances["srv-worker"]["i-1"] = instance(
        "i-1",
        "srv-worker",
        version="v1",
        AWS_INSTANCE_IPV4="10.0.0.1",
        AWS_INSTANCE_IPV6="fd00::1",
        AWS_INSTANCE_PORT="8080",
    )
    mesh = resource("mesh", "demo", {"serviceDiscovery": {"ipPreference": "IPv6_ONLY"}})
    result = compile_node(resources=replace(walkthrough_mesh(), mesh), registry=registry)
    cluster = result.snapshot.cluster("demo/worker-v1:8080")
    assert cluster is not None
    assert cluster.discovery.ip_preference == "IPv6_ONLY"
    assert [e.address for e in cluster.endpoints] == ["fd00::1"]
    assert WarningCode.INSTANCE_SKIPPED in {w.code for w in result.warnings}


# -- the gateway -----------------------------------------------------------------------------


def test_gateway_route_gets_app_mesh_default_rewrites_and_its_route_table() -> None:
    result = compile_node("ingress", kind="virtualGateway")
    snapshot = result.snapshot
    assert snapshot.kind == "virtualGateway"
    assert result.warnings == ()
    (listener,) = snapshot.listeners
    assert (listener.port, listener.protocol) == (8443, "http")
    (route,) = snapshot.gateway_routes
    assert route.name == "to-worker"
    assert (route.match.path.kind, route.match.path.value) == ("prefix", "/worker/")
    assert route.virtual_service == "worker.corp"
    assert (route.rewrite.hostname, route.rewrite.prefix, route.rewrite.path) == (
        "worker.corp",
        "/",
        None,
    )
    assert set(route.rewrite.defaulted) == {"hostname", "prefix"}
    table = snapshot.route_table("worker.corp")
    assert table is not None and len(table.routes) == 1
    assert [c.name for c in snapshot.clusters] == ["demo/worker-v1:8080", "demo/worker-v2:8080"]


def test_a_gateway_listener_pool_bounds_its_upstream_clusters() -> None:
    pool = {"http": {"maxConnections": 7, "maxPendingRequests": 3}}
    gateway = resource(
        "virtualGateway",
        "ingress",
        {
            "listeners": [
                {"portMapping": {"port": 8443, "protocol": "http"}, "connectionPool": pool}
            ]
        },
        mesh="demo",
    )
    snapshot = compile_node(
        "ingress", resources=replace(walkthrough_mesh(), gateway), kind="virtualGateway"
    ).snapshot
    limits = {
        c.name: (c.connection_pool.max_connections, c.connection_pool.max_pending_requests)
        for c in snapshot.clusters
    }
    assert limits == {"demo/worker-v1:8080": (7, 3), "demo/worker-v2:8080": (7, 3)}
    # Without one, the gateway's clusters keep the target listeners' pools, as a sidecar's.
    plain = compile_node("ingress", kind="virtualGateway").snapshot
    sidecar = compile_node().snapshot
    assert plain.cluster("demo/worker-v1:8080") == sidecar.cluster("demo/worker-v1:8080")


def test_gateway_rewrites_and_hostname_matches_as_configured() -> None:
    route = resource(
        "gatewayRoute",
        "to-worker",
        {
            "priority": 5,
            "httpRoute": {
                "match": {"prefix": "/w/", "hostname": {"suffix": ".Example.com"}},
                "action": {
                    "target": {"virtualService": {"virtualServiceName": "worker.corp"}},
                    "rewrite": {
                        "hostname": {"defaultTargetHostname": "DISABLED"},
                        "prefix": {"value": "/api/"},
                    },
                },
            },
        },
        parent="ingress",
    )
    snapshot = compile_node(
        "ingress", resources=replace(walkthrough_mesh(), route), kind="virtualGateway"
    ).snapshot
    (compiled,) = snapshot.gateway_routes
    assert compiled.priority == 5
    assert compiled.match.hostname is not None
    assert (compiled.match.hostname.kind, compiled.match.hostname.value) == (
        "suffix",
        ".example.com",
    )
    assert (compiled.rewrite.hostname, compiled.rewrite.prefix) == (None, "/api/")
    assert compiled.rewrite.defaulted == ()


# -- encoding --------------------------------------------------------------------------------


def test_encode_is_canonical_json_and_decodes_to_an_equal_snapshot() -> None:
    snapshot = compile_node().snapshot
    data = encode(snapshot)
    assert data == json.dumps(json.loads(data), sort_keys=True, separators=(",", ":")).encode()
    assert b" " not in data.replace(b"round_robin", b"")  # no whitespace between tokens
    back = decode(data)
    assert back == snapshot
    assert hash(back) == hash(snapshot)
    assert decode(json.loads(data)) == snapshot
    assert encode(compile_node().snapshot) == data


def test_snapshot_models_are_frozen() -> None:
    snapshot = compile_node().snapshot
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.name = "other"  # type: ignore[misc]
    assert isinstance(hash(snapshot.clusters[0]), int)


# -- explain ---------------------------------------------------------------------------------


def test_explain_marks_every_value_default_or_configured() -> None:
    result = compile_node()
    explanation = explain(result.snapshot, result.warnings)
    json.dumps(explanation)  # JSON-able
    assert explanation["egress_filter"] == {"value": "DROP_ALL", "source": "default"}
    route = explanation["backends"][0]["routes"][0]
    assert route["retry"]["max_retries"] == {"value": 3, "source": "configured"}
    assert route["timeout"]["request_ms"] == {"value": 15_000, "source": "default"}
    v1 = route["targets"][0]
    assert v1["cluster"] == "demo/worker-v1:8080"
    upstream = v1["upstream"]
    assert upstream["connection_pool"]["max_connections"] == {"value": 50, "source": "configured"}
    assert upstream["connection_pool"]["max_requests"] == {"value": 1024, "source": "default"}
    assert upstream["lb_policy"] == {"value": "round_robin", "source": "default"}
    assert upstream["outlier_detection"]["max_server_errors"]["source"] == "configured"
    assert [e["receives_traffic"] for e in upstream["endpoints"]] == [True, False, True]
    v2 = route["targets"][1]["upstream"]
    assert v2["outlier_detection"] == {"value": None, "source": "default"}


def test_render_text_shows_defaults_and_warnings() -> None:
    resources = [r for r in walkthrough_mesh() if r.name != "worker-v2"]
    result = compile_node(resources=resources)
    text = render_text(explain(result.snapshot, result.warnings))
    assert text.startswith("virtualNode demo/frontend\n")
    assert "egress filter: DROP_ALL (default)" in text
    assert "route worker-route (priority none) http prefix /" in text
    assert "retry: max retries 3, per try timeout 2 s" in text
    assert "(all configured)" in text
    assert "timeout: request 15 s, idle 5 min (all default)" in text
    assert "→ demo/worker-v1:8080 weight 90" in text
    assert "10.0.0.2:8080 UNHEALTHY (i-2) — no traffic" in text
    assert "outlier detection: off (default)" in text
    assert "TARGET_NODE_NOT_FOUND" in text


def test_render_text_for_a_gateway() -> None:
    result = compile_node("ingress", kind="virtualGateway")
    text = render_text(explain(result.snapshot))
    assert "gateway route to-worker (priority none) http prefix /worker/ → worker.corp" in text
    assert "rewrite: hostname worker.corp, prefix / (all default)" in text


# -- which proxies a change affects ----------------------------------------------------------


def two_meshes() -> FakeMesh:
    other = walkthrough_mesh("other")
    lonely = resource(
        "virtualNode",
        "lonely",
        {"listeners": [http_listener()], "serviceDiscovery": cloud_map("frontend")},
    )
    return FakeMesh([*walkthrough_mesh(), lonely, *other])


def test_a_mesh_change_affects_every_proxy_of_that_mesh_only() -> None:
    found = affected_proxies(two_meshes(), walkthrough_registry(), changed_meshes=["demo"])
    assert found == {
        ProxyId("demo", "virtualNode", name)
        for name in ("frontend", "worker-v1", "worker-v2", "lonely")
    } | {ProxyId("demo", "virtualGateway", "ingress")}


def test_an_instance_change_affects_only_proxies_routing_to_that_service() -> None:
    meshes = two_meshes()
    meshes.resources = [r for r in meshes.resources if r.mesh == "demo"] + [
        resource("mesh", "other", {}, mesh="other"),
        resource(
            "virtualNode",
            "elsewhere",
            {"listeners": [http_listener()], "serviceDiscovery": cloud_map("unrelated")},
            mesh="other",
        ),
    ]
    found = affected_proxies(meshes, walkthrough_registry(), changed_services=["srv-worker"])
    assert found == {
        ProxyId("demo", "virtualNode", "frontend"),
        ProxyId("demo", "virtualGateway", "ingress"),
    }
    # Nobody routes to the frontend service's nodes, so its instances affect no proxy.
    assert affected_proxies(meshes, walkthrough_registry(), changed_services=["srv-frontend"]) == (
        frozenset()
    )


def test_a_change_affects_each_mesh_that_discovers_from_the_service() -> None:
    found = affected_proxies(two_meshes(), walkthrough_registry(), changed_services=["srv-worker"])
    assert {(p.mesh, p.name) for p in found} == {
        ("demo", "frontend"),
        ("demo", "ingress"),
        ("other", "frontend"),
        ("other", "ingress"),
    }


def test_an_unknown_registry_id_over_approximates() -> None:
    found = affected_proxies(two_meshes(), walkthrough_registry(), changed_services=["srv-gone"])
    assert ProxyId("demo", "virtualNode", "frontend") in found
    assert ProxyId("demo", "virtualNode", "lonely") not in found  # reaches no node at all


# -- defaults documentation ------------------------------------------------------------------


def test_docs_defaults_lists_every_default() -> None:
    text = (DOCS / "defaults.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    for default in xds_defaults.DEFAULTS:
        assert any(
            re.search(
                rf"\|\s*{re.escape(default.setting)}\s*\|\s*{re.escape(default.value)}\s*\|", row
            )
            for row in rows
        ), f"docs/defaults.md lacks the row for {default.setting!r} = {default.value!r}"


def test_snapshot_roundtrip_through_json_values() -> None:
    snapshot = compile_node("ingress", kind="virtualGateway").snapshot
    assert decode_record(Snapshot, to_json(snapshot)) == snapshot


def test_tcp_routes_have_no_retry_or_request_timeout_and_a_one_hour_idle() -> None:
    resources = replace(
        walkthrough_mesh(),
        resource(
            "virtualNode",
            "worker-v1",
            {
                "listeners": [
                    {
                        "portMapping": {"port": 5432, "protocol": "tcp"},
                        "connectionPool": {"tcp": {"maxConnections": 10}},
                    }
                ],
                "serviceDiscovery": {"dns": {"hostname": "db.internal"}},
            },
        ),
        resource(
            "virtualRouter",
            "worker-router",
            {"listeners": [{"portMapping": {"port": 5432, "protocol": "tcp"}}]},
        ),
        resource(
            "route",
            "worker-route",
            {
                "tcpRoute": {
                    "action": {"weightedTargets": [{"virtualNode": "worker-v1", "weight": 1}]},
                    "timeout": {"idle": {"unit": "s", "value": 30}},
                }
            },
            parent="worker-router",
        ),
    )
    result = compile_node(resources=resources)
    table = result.snapshot.route_table("worker.corp")
    assert table is not None
    (route,) = table.routes
    assert (route.protocol, route.retry, route.timeout.request_ms) == ("tcp", None, None)
    assert (route.timeout.idle_ms, route.timeout.defaulted) == (30_000, ())
    cluster = result.snapshot.cluster("demo/worker-v1:5432")
    assert cluster is not None
    assert cluster.connection_pool.max_connections == 10
    assert render_text(explain(result.snapshot)).count("route worker-route") == 1


def test_listener_timeouts_tls_and_access_log_are_taken_as_configured() -> None:
    frontend = resource(
        "virtualNode",
        "frontend",
        {
            "listeners": [
                http_listener(
                    timeout={"http": {"idle": {"unit": "ms", "value": 500}}},
                    tls={
                        "mode": "STRICT",
                        "certificate": {"sds": {"secretName": "frontend-cert"}},
                        "validation": {
                            "trust": {"file": {"certificateChain": "/ca.pem"}},
                            "subjectAlternativeNames": {"match": {"exact": ["worker.corp"]}},
                        },
                    },
                )
            ],
            "serviceDiscovery": cloud_map("frontend"),
            "logging": {
                "accessLog": {
                    "file": {
                        "path": "/dev/stdout",
                        "format": {"json": [{"key": "status", "value": "%RESPONSE_CODE%"}]},
                    }
                }
            },
        },
    )
    snapshot = compile_node(resources=replace(walkthrough_mesh(), frontend)).snapshot
    (listener,) = snapshot.listeners
    assert (listener.timeout.request_ms, listener.timeout.idle_ms) == (15_000, 500)
    assert listener.timeout.defaulted == ("request_ms",)
    assert listener.tls is not None
    assert (listener.tls.mode, listener.tls.certificate.source) == ("STRICT", "sds")
    assert listener.tls.certificate.secret_name == "frontend-cert"
    assert listener.tls.validation is not None
    assert listener.tls.validation.subject_alternative_names == ("worker.corp",)
    assert snapshot.access_log is not None
    assert snapshot.access_log.format == "json"
    assert snapshot.access_log.json_fields == (("status", "%RESPONSE_CODE%"),)
    assert snapshot.route_tables == ()


def test_a_namespace_change_affects_proxies_reaching_any_of_its_services() -> None:
    found = affected_proxies(two_meshes(), walkthrough_registry(), changed_namespaces=["ns-corp"])
    assert ProxyId("demo", "virtualNode", "frontend") in found
    assert ProxyId("other", "virtualGateway", "ingress") in found
    assert ProxyId("demo", "virtualNode", "lonely") not in found
    assert affected_proxies(two_meshes(), walkthrough_registry()) == frozenset()
