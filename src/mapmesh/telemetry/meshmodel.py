"""What the service map needs from the mesh configuration and the registry.

The map shows a mesh before any traffic flows, so its nodes come from the configuration:
every virtual node and gateway, with the instances its service discovery finds. Discovery is
:func:`mapmesh.xds.endpoints.discover` — the same function that fills the proxies' clusters,
so the map counts exactly the endpoints proxies would use. Routes are read from the routers'
weighted targets and the gateways' gateway routes. Pure: reads the two sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from pydantic import ValidationError

from mapmesh.mesh.records import MeshResource
from mapmesh.model import appmesh as am
from mapmesh.model.snapshot import Discovery, Endpoint
from mapmesh.xds.endpoints import discover
from mapmesh.xds.sources import MeshSource, RegistrySource

__all__ = [
    "MeshModel",
    "NodeInfo",
    "RouteTo",
    "UnknownMesh",
    "node_of_cluster",
    "read_mesh",
]

_Spec = TypeVar("_Spec", bound=am.AppMeshModel)


class UnknownMesh(LookupError):
    def __init__(self, mesh: str) -> None:
        super().__init__(f"mesh {mesh!r} not found")
        self.mesh = mesh


@dataclass(frozen=True, slots=True)
class RouteTo:
    """One way traffic reaches a node or a gateway's target."""

    kind: str  # "route" | "provider" | "gatewayRoute"
    router: str | None  # the virtual router, or the virtual gateway for gateway routes
    route: str | None
    weight: int | None
    total_weight: int | None
    virtual_services: tuple[str, ...]

    def wire(self) -> dict[str, object]:
        out: dict[str, object] = {"kind": self.kind, "virtualServices": list(self.virtual_services)}
        if self.kind == "gatewayRoute":
            out.update(virtualGateway=self.router, gatewayRoute=self.route)
        elif self.kind == "route":
            share = self.weight / self.total_weight if self.weight and self.total_weight else 0.0
            out.update(
                virtualRouter=self.router,
                route=self.route,
                weight=self.weight,
                totalWeight=self.total_weight,
                share=round(share, 4),
            )
        return out


@dataclass(frozen=True, slots=True)
class NodeInfo:
    kind: str  # "virtualNode" | "virtualGateway"
    name: str
    discovery: Discovery | None
    endpoints: tuple[Endpoint, ...]
    routes: tuple[RouteTo, ...]

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def healthy(self) -> int:
        return sum(1 for e in self.endpoints if e.health != "UNHEALTHY")


@dataclass(frozen=True, slots=True)
class MeshModel:
    mesh: str
    nodes: tuple[NodeInfo, ...]  # virtual nodes, then gateways, each by name
    virtual_services: frozenset[str]


def node_of_cluster(mesh: str, cluster: str | None) -> str | None:
    """The virtual node of a ``<mesh>/<node>:<port>`` cluster name; None for anything else."""
    if cluster is None or not cluster.startswith(mesh + "/"):
        return None
    return cluster[len(mesh) + 1 :].partition(":")[0] or None


def _spec(resource: MeshResource, model: type[_Spec]) -> _Spec | None:
    try:
        return model.model_validate(resource.spec)
    except ValidationError:
        return None


def read_mesh(meshes: MeshSource, registry: RegistrySource, mesh: str) -> MeshModel:
    """Nodes, gateways and virtual services of ``mesh``; raises :class:`UnknownMesh`."""
    found = next((m for m in meshes.meshes() if m.name == mesh), None)
    if found is None:
        raise UnknownMesh(mesh)
    mesh_spec = _spec(found, am.MeshSpec)
    mesh_discovery = mesh_spec.service_discovery if mesh_spec is not None else None
    services = meshes.in_mesh(mesh, "virtualService")
    to_nodes = _routes_to_nodes(meshes, mesh, services)
    nodes: list[NodeInfo] = []
    for resource in meshes.in_mesh(mesh, "virtualNode"):
        spec = _spec(resource, am.VirtualNodeSpec)
        if spec is None:
            continue
        listeners = spec.listeners or ()
        port = listeners[0].port_mapping.port if listeners else None
        discovery: Discovery | None = None
        endpoints: tuple[Endpoint, ...] = ()
        if spec.service_discovery is not None:
            found_endpoints = discover(
                registry, spec.service_discovery, port, mesh_discovery, resource.name
            )
            discovery, endpoints = found_endpoints.discovery, found_endpoints.endpoints
        nodes.append(
            NodeInfo(
                "virtualNode",
                resource.name,
                discovery,
                endpoints,
                tuple(to_nodes.get(resource.name, ())),
            )
        )
    for resource in meshes.in_mesh(mesh, "virtualGateway"):
        routes = _gateway_routes(meshes, mesh, resource.name)
        nodes.append(NodeInfo("virtualGateway", resource.name, None, (), routes))
    return MeshModel(mesh, tuple(nodes), frozenset(s.name for s in services))


def _routes_to_nodes(
    meshes: MeshSource, mesh: str, services: Sequence[MeshResource]
) -> dict[str, list[RouteTo]]:
    by_router: dict[str, list[str]] = {}
    out: dict[str, list[RouteTo]] = {}
    for resource in services:
        spec = _spec(resource, am.VirtualServiceSpec)
        provider = spec.provider if spec is not None else None
        if provider is None:
            continue
        if provider.virtual_router is not None:
            by_router.setdefault(provider.virtual_router.virtual_router_name, []).append(
                resource.name
            )
        elif provider.virtual_node is not None:
            node = provider.virtual_node.virtual_node_name
            out.setdefault(node, []).append(
                RouteTo("provider", None, None, None, None, (resource.name,))
            )
    for resource in meshes.in_mesh(mesh, "route"):
        route = _spec(resource, am.RouteSpec)
        member = route and (
            route.http_route or route.http2_route or route.grpc_route or route.tcp_route
        )
        if not member:
            continue
        targets = member.action.weighted_targets
        total = sum(t.weight for t in targets)
        router = resource.parent or ""
        provided = tuple(sorted(by_router.get(router, ())))
        for target in targets:
            out.setdefault(target.virtual_node, []).append(
                RouteTo("route", router, resource.name, target.weight, total, provided)
            )
    return out


def _gateway_routes(meshes: MeshSource, mesh: str, gateway: str) -> tuple[RouteTo, ...]:
    routes = []
    for resource in meshes.children("gatewayRoute", mesh, gateway):
        spec = _spec(resource, am.GatewayRouteSpec)
        member = spec and (spec.http_route or spec.http2_route or spec.grpc_route)
        if not member:
            continue
        target = member.action.target.virtual_service.virtual_service_name
        routes.append(RouteTo("gatewayRoute", gateway, resource.name, None, None, (target,)))
    return tuple(sorted(routes, key=lambda r: r.route or ""))
