"""Mesh rules beyond the wire model: references, weights, ports and protocols.

Pure functions over typed specs and a lookup of the current configuration. Each problem names
the field it is about (``spec.httpRoute.action.weightedTargets[1].virtualNode: ...``), so the
API can answer BadRequestException with a message that points at the mistake.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mapmesh.mesh.kinds import ResourceId
from mapmesh.mesh.records import MeshResource
from mapmesh.model.appmesh import (
    GatewayRouteSpec,
    Listener,
    RouteSpec,
    VirtualGatewaySpec,
    VirtualNodeSpec,
    VirtualRouterSpec,
    VirtualServiceSpec,
    WeightedTarget,
)

__all__ = ["Lookup", "check_spec", "references", "referrers"]

Lookup = Callable[[ResourceId], MeshResource | None]

_ROUTE_PROTOCOLS = {
    "httpRoute": "http",
    "http2Route": "http2",
    "grpcRoute": "grpc",
    "tcpRoute": "tcp",
}


def _route_kind(spec: RouteSpec | GatewayRouteSpec) -> tuple[str, object] | None:
    set_members = [
        (alias, value)
        for alias, value in (
            ("httpRoute", spec.http_route),
            ("http2Route", spec.http2_route),
            ("grpcRoute", spec.grpc_route),
            ("tcpRoute", getattr(spec, "tcp_route", None)),
        )
        if value is not None
    ]
    return set_members[0] if len(set_members) == 1 else None


def _weighted_targets(spec: RouteSpec) -> tuple[str, tuple[WeightedTarget, ...]] | None:
    found = _route_kind(spec)
    if found is None:
        return None
    alias, route = found
    action = getattr(route, "action", None)
    return (alias, action.weighted_targets) if action is not None else None


def references(resource: MeshResource) -> Iterator[tuple[str, ResourceId]]:
    """(field, target) for every resource this one requires to exist."""
    mesh = resource.mesh
    spec = resource.typed_spec()
    if isinstance(spec, RouteSpec):
        targets = _weighted_targets(spec)
        if targets is not None:
            alias, weighted = targets
            for i, target in enumerate(weighted):
                yield (
                    f"spec.{alias}.action.weightedTargets[{i}].virtualNode",
                    ResourceId("virtualNode", mesh, None, target.virtual_node),
                )
    elif isinstance(spec, VirtualServiceSpec) and spec.provider is not None:
        if spec.provider.virtual_node is not None:
            name = spec.provider.virtual_node.virtual_node_name
            yield "spec.provider.virtualNode", ResourceId("virtualNode", mesh, None, name)
        if spec.provider.virtual_router is not None:
            name = spec.provider.virtual_router.virtual_router_name
            yield "spec.provider.virtualRouter", ResourceId("virtualRouter", mesh, None, name)
    elif isinstance(spec, GatewayRouteSpec):
        found = _route_kind(spec)
        if found is not None:
            alias, route = found
            target = route.action.target  # type: ignore[attr-defined]
            yield (
                f"spec.{alias}.action.target.virtualService.virtualServiceName",
                ResourceId(
                    "virtualService", mesh, None, target.virtual_service.virtual_service_name
                ),
            )


def referrers(target: ResourceId, resources: list[MeshResource]) -> list[ResourceId]:
    """Resources that point at ``target`` (which therefore cannot be deleted)."""
    found = [r.id for r in resources if any(ref == target for _, ref in references(r))]
    if target.kind in ("virtualRouter", "virtualGateway"):
        child = "route" if target.kind == "virtualRouter" else "gatewayRoute"
        found += [r.id for r in resources if r.kind == child and r.parent == target.name]
    if target.kind == "mesh":
        found = [r.id for r in resources if r.kind != "mesh"]
    return sorted(found)


def check_spec(resource: MeshResource, lookup: Lookup) -> list[str]:
    """Every problem with ``resource`` against the current configuration."""
    spec = resource.typed_spec()
    problems = [
        f"{field}: {ref.kind} {ref.name!r} not found in mesh {ref.mesh!r}"
        for field, ref in references(resource)
        if lookup(ref) is None
    ]
    if isinstance(spec, VirtualNodeSpec):
        problems += _check_node(spec)
    elif isinstance(spec, VirtualRouterSpec):
        problems += _check_listener_ports(
            [listener.port_mapping.port for listener in spec.listeners or ()]
        )
        if not spec.listeners:
            problems.append("spec.listeners: a virtual router needs a listener")
    elif isinstance(spec, VirtualGatewaySpec):
        problems += _check_listener_ports(
            [listener.port_mapping.port for listener in spec.listeners]
        )
    elif isinstance(spec, RouteSpec):
        problems += _check_route(resource, spec, lookup)
    elif isinstance(spec, GatewayRouteSpec):
        problems += _check_gateway_route(resource, spec, lookup)
    return problems


def _ports(listeners: Iterable[Any]) -> list[int]:
    return [int(listener.port_mapping.port) for listener in listeners]


def _check_listener_ports(ports: list[int]) -> list[str]:
    duplicates = sorted({p for p in ports if ports.count(p) > 1})
    return [f"spec.listeners: port {p} appears more than once" for p in duplicates]


def _check_node(spec: VirtualNodeSpec) -> list[str]:
    listeners = spec.listeners or ()
    problems = _check_listener_ports([listener.port_mapping.port for listener in listeners])
    if listeners and spec.service_discovery is None:
        problems.append("spec.serviceDiscovery: required when the node has listeners")
    for i, listener in enumerate(listeners):
        problems += _check_listener_protocols(i, listener)
    return problems


def _check_listener_protocols(index: int, listener: Listener) -> list[str]:
    protocol = listener.port_mapping.protocol
    where = f"spec.listeners[{index}]"
    problems = []
    for section, value in (
        ("timeout", listener.timeout),
        ("connectionPool", listener.connection_pool),
    ):
        if value is None:
            continue
        set_protocols = [k for k, v in value.wire().items() if v is not None]
        wrong = [p for p in set_protocols if p != protocol]
        if wrong:
            problems.append(
                f"{where}.{section}.{wrong[0]}: does not match the listener's protocol {protocol}"
            )
    return problems


def _check_route(resource: MeshResource, spec: RouteSpec, lookup: Lookup) -> list[str]:
    found = _route_kind(spec)
    if found is None:
        return ["spec: exactly one of httpRoute, http2Route, grpcRoute, tcpRoute is required"]
    alias, route = found
    problems: list[str] = []
    targets = _weighted_targets(spec)
    if targets is not None:
        total = sum(t.weight for t in targets[1])
        if not 1 <= total <= 100:
            problems.append(
                f"spec.{alias}.action.weightedTargets: weights total {total}; "
                "the total must be between 1 and 100"
            )
        for i, target in enumerate(targets[1]):
            node = lookup(ResourceId("virtualNode", resource.mesh, None, target.virtual_node))
            if node is None or target.port is None:
                continue
            node_spec = node.typed_spec()
            assert isinstance(node_spec, VirtualNodeSpec)
            ports = [listener.port_mapping.port for listener in node_spec.listeners or ()]
            if target.port not in ports:
                problems.append(
                    f"spec.{alias}.action.weightedTargets[{i}].port: virtual node "
                    f"{target.virtual_node!r} has no listener on port {target.port}"
                )
    router = lookup(ResourceId("virtualRouter", resource.mesh, None, resource.parent or ""))
    if router is not None:
        router_spec = router.typed_spec()
        assert isinstance(router_spec, VirtualRouterSpec)
        listeners = [listener.port_mapping for listener in router_spec.listeners or ()]
        protocols = {m.protocol for m in listeners}
        if _ROUTE_PROTOCOLS[alias] not in protocols:
            problems.append(
                f"spec.{alias}: the virtual router listens for {', '.join(sorted(protocols))}, "
                f"not {_ROUTE_PROTOCOLS[alias]}"
            )
        match = getattr(route, "match", None)
        port = getattr(match, "port", None)
        if port is not None and port not in {m.port for m in listeners}:
            problems.append(
                f"spec.{alias}.match.port: the virtual router has no listener on {port}"
            )
        if port is None and len(listeners) > 1:
            problems.append(
                f"spec.{alias}.match.port: required when the virtual router has several listeners"
            )
    return problems


def _check_gateway_route(
    resource: MeshResource, spec: GatewayRouteSpec, lookup: Lookup
) -> list[str]:
    found = _route_kind(spec)
    if found is None:
        return ["spec: exactly one of httpRoute, http2Route, grpcRoute is required"]
    alias, _ = found
    gateway = lookup(ResourceId("virtualGateway", resource.mesh, None, resource.parent or ""))
    if gateway is None:
        return []
    gateway_spec = gateway.typed_spec()
    assert isinstance(gateway_spec, VirtualGatewaySpec)
    protocols = {listener.port_mapping.protocol for listener in gateway_spec.listeners}
    if _ROUTE_PROTOCOLS[alias] not in protocols:
        return [
            f"spec.{alias}: the virtual gateway listens for {', '.join(sorted(protocols))}, "
            f"not {_ROUTE_PROTOCOLS[alias]}"
        ]
    return []
