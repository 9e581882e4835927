"""Invariants of snapshot compilation over random meshes and registries.

1. Deterministic: compiling the same input twice, or the same input listed in any order (mesh
   resources, namespaces, services, instances), gives byte-identical encoded snapshots and the
   same warnings.
2. Closed: every reference inside a snapshot resolves — each route target names a cluster in
   the snapshot, each gateway route names a route table in it, names are unique, and what the
   snapshot lists is sorted as documented.

The generated meshes are deliberately messy: targets name missing nodes, services have no
provider or a missing one, nodes have zero, one or several listeners, instances lack ports.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mapmesh.mesh.records import MeshResource
from mapmesh.model.registry import HealthStatus, Instance
from mapmesh.model.snapshot import Snapshot, encode
from mapmesh.xds import CompileResult, compile_snapshot, defaults
from tests.unit.test_compiler import (
    FakeMesh,
    FakeRegistry,
    instance,
    namespace,
    resource,
    service,
)

NODES = ("a", "b", "c", "d")
ROUTERS = ("r1", "r2")
SERVICES = ("x.corp", "y.corp", "z.corp")
PORTS = (8080, 9090)
PROTOCOLS = ("http", "http2", "grpc", "tcp")

names = st.sampled_from
maybe_port = st.none() | names(PORTS)


@st.composite
def listeners(draw: st.DrawFn, protocols: tuple[str, ...] = PROTOCOLS) -> list[dict[str, Any]]:
    ports = draw(st.lists(names(PORTS), max_size=2, unique=True))
    return [{"portMapping": {"port": p, "protocol": draw(names(protocols))}} for p in ports]


@st.composite
def discovery(draw: st.DrawFn) -> dict[str, Any] | None:
    choice = draw(names(("cloudMap", "cloudMap", "cloudMap", "dns", "none")))
    if choice == "dns":
        return {"dns": {"hostname": draw(names(("h1.internal", "h2.internal")))}}
    if choice == "none":
        return None
    spec: dict[str, Any] = {"namespaceName": "corp", "serviceName": draw(names(("s1", "s2")))}
    version = draw(st.none() | names(("v1", "v2")))
    if version is not None:
        spec["attributes"] = [{"key": "version", "value": version}]
    return {"awsCloudMap": spec}


@st.composite
def node(draw: st.DrawFn, name: str) -> MeshResource:
    spec: dict[str, Any] = {"listeners": draw(listeners())}
    found = draw(discovery())
    if found is not None:
        spec["serviceDiscovery"] = found
    backends = draw(st.lists(names((*SERVICES, "ghost.corp")), min_size=1, max_size=3))
    spec["backends"] = [{"virtualService": {"virtualServiceName": b}} for b in backends]
    return resource("virtualNode", name, spec)


@st.composite
def route(draw: st.DrawFn, router: str, name: str) -> MeshResource:
    protocol = draw(names(PROTOCOLS))
    targets = []
    for _ in range(draw(st.integers(1, 3))):
        target = {
            "virtualNode": draw(names((*NODES, "ghost"))),
            "weight": draw(st.integers(0, 100)),
        }
        port = draw(maybe_port)
        if port is not None:
            target["port"] = port
        targets.append(target)
    member: dict[str, Any] = {"action": {"weightedTargets": targets}}
    if protocol == "tcp":
        member["match"] = {"port": draw(maybe_port)} if draw(st.booleans()) else {}
    elif protocol == "grpc":
        member["match"] = {"serviceName": draw(names(("svc.A", "svc.B")))}
    else:
        member["match"] = {"prefix": draw(names(("/", "/api", "/api/v1")))}
        if draw(st.booleans()):
            member["match"]["headers"] = [{"name": "X-Canary", "match": {"exact": "yes"}}]
    if protocol != "tcp" and draw(st.booleans()):
        member["retryPolicy"] = {
            "maxRetries": draw(st.integers(0, 5)),
            "perRetryTimeout": {"unit": "ms", "value": draw(st.integers(1, 5000))},
            "httpRetryEvents": draw(st.lists(names(("server-error", "gateway-error")), min_size=1)),
        }
    spec: dict[str, Any] = {f"{protocol}Route": member}
    priority = draw(st.none() | st.integers(0, 3))
    if priority is not None:
        spec["priority"] = priority
    return resource("route", name, spec, parent=router)


@st.composite
def gateway_route(draw: st.DrawFn, name: str) -> MeshResource:
    target: dict[str, Any] = {
        "virtualService": {"virtualServiceName": draw(names((*SERVICES, "ghost.corp")))}
    }
    spec: dict[str, Any] = {
        "httpRoute": {
            "match": {"prefix": draw(names(("/", "/x/", "/y/")))},
            "action": {"target": target},
        }
    }
    priority = draw(st.none() | st.integers(0, 3))
    if priority is not None:
        spec["priority"] = priority
    return resource("gatewayRoute", name, spec, parent="g")


@st.composite
def meshes(draw: st.DrawFn) -> list[MeshResource]:
    found = [resource("mesh", "demo", {})]
    found += [draw(node(n)) for n in NODES if draw(st.booleans())]
    for router in ROUTERS:
        if draw(st.booleans()):
            router_spec = {
                "listeners": draw(listeners())
                or [{"portMapping": {"port": 8080, "protocol": "http"}}]
            }
            found.append(resource("virtualRouter", router, router_spec))
        # Routes may outlive their router in a store that lost one write; compile anyway.
        found += [draw(route(router, f"route{i}")) for i in range(draw(st.integers(0, 4)))]
    for name in SERVICES:
        provider = draw(names(("node", "router", "router", "none", "absent")))
        if provider == "absent":
            continue
        spec: dict[str, Any] = {}
        if provider == "node":
            spec["provider"] = {"virtualNode": {"virtualNodeName": draw(names((*NODES, "ghost")))}}
        elif provider == "router":
            spec["provider"] = {
                "virtualRouter": {"virtualRouterName": draw(names((*ROUTERS, "ghost")))}
            }
        found.append(resource("virtualService", name, spec))
    listener = {"portMapping": {"port": 8443, "protocol": "http"}}
    found.append(resource("virtualGateway", "g", {"listeners": [listener]}))
    found += [draw(gateway_route(f"gr{i}")) for i in range(draw(st.integers(0, 3)))]
    return found


@st.composite
def instances(draw: st.DrawFn) -> list[Instance]:
    found = []
    for i in range(draw(st.integers(0, 8))):
        attributes: dict[str, str] = {"version": draw(names(("v1", "v2")))}
        if draw(st.integers(0, 3)):
            attributes["AWS_INSTANCE_IPV4"] = f"10.0.0.{draw(st.integers(1, 9))}"
        if draw(st.booleans()):
            attributes["AWS_INSTANCE_IPV6"] = f"fd00::{draw(st.integers(1, 9))}"
        if draw(st.booleans()):
            attributes["AWS_INSTANCE_PORT"] = str(draw(names(PORTS)))
        health = draw(names(tuple(HealthStatus)))
        found.append(instance(f"i-{i}", draw(names(("srv-1", "srv-2"))), health, **attributes))
    return found


def registry(found: list[Instance]) -> FakeRegistry:
    return FakeRegistry(
        [namespace("ns-corp", "corp")],
        [service("srv-1", "s1", "ns-corp"), service("srv-2", "s2", "ns-corp")],
        found,
    )


def proxies(resources: list[MeshResource]) -> list[tuple[str, str]]:
    return sorted(
        (r.kind, r.name) for r in resources if r.kind in ("virtualNode", "virtualGateway")
    )


def compile_all(resources: list[MeshResource], found: list[Instance]) -> list[CompileResult]:
    mesh, reg = FakeMesh(resources), registry(found)
    return [compile_snapshot(mesh, reg, "demo", kind, name) for kind, name in proxies(resources)]


SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(meshes(), instances(), st.data())
def test_compile_is_deterministic_whatever_the_input_order(
    resources: list[MeshResource], found: list[Instance], data: st.DataObject
) -> None:
    first = compile_all(resources, found)
    again = compile_all(resources, found)
    shuffled = compile_all(
        data.draw(st.permutations(resources), label="resources"),
        data.draw(st.permutations(found), label="instances"),
    )
    for a, b, c in zip(first, again, shuffled, strict=True):
        assert encode(a.snapshot) == encode(b.snapshot) == encode(c.snapshot)
        assert a.snapshot == c.snapshot and hash(a.snapshot) == hash(c.snapshot)
        assert a.warnings == b.warnings == c.warnings


def check_closed(snapshot: Snapshot) -> None:
    clusters = [c.name for c in snapshot.clusters]
    tables = [t.virtual_service for t in snapshot.route_tables]
    assert clusters == sorted(set(clusters)), "cluster names are unique and sorted"
    assert tables == sorted(set(tables)), "route tables are unique and sorted"
    for table in snapshot.route_tables:
        assert [r.name for r in table.routes] == [
            r.name
            for r in sorted(
                table.routes,
                key=lambda r: (
                    defaults.UNPRIORITIZED if r.priority is None else r.priority,
                    r.name,
                ),
            )
        ]
        for route in table.routes:
            assert route.targets, f"route {route.name} has no target"
            for target in route.targets:
                assert target.cluster in clusters, f"{target.cluster} is not in the snapshot"
            if route.protocol == "tcp":
                assert route.retry is None and route.timeout.request_ms is None
            else:
                assert route.retry is not None and route.timeout.request_ms is not None
    for gateway_route in snapshot.gateway_routes:
        assert gateway_route.virtual_service in tables
    referenced = {
        t.cluster for table in snapshot.route_tables for r in table.routes for t in r.targets
    }
    assert referenced == set(clusters), "every cluster is used by some route"
    for cluster in snapshot.clusters:
        keys = [(e.address, e.port, e.instance_id or "") for e in cluster.endpoints]
        assert keys == sorted(keys)
    for model in (snapshot, *snapshot.clusters, *snapshot.listeners):
        assert set(model.defaulted) <= set(model.field_names()), model.defaulted


@SETTINGS
@given(meshes(), instances())
def test_every_reference_inside_a_snapshot_resolves(
    resources: list[MeshResource], found: list[Instance]
) -> None:
    for result in compile_all(resources, found):
        check_closed(result.snapshot)
        if result.snapshot.kind == "virtualNode":
            assert result.snapshot.gateway_routes == ()
