"""Which proxies an input change may affect, so only their snapshots are recompiled.

- A mesh configuration change recompiles every proxy of that mesh (cheap and safe: meshes
  change rarely, and an unchanged snapshot costs one compile and no push).
- A Cloud Map change (a service's instances, health, or the service or namespace itself)
  recompiles only the proxies whose snapshot can contain a cluster discovered from it: the
  nodes discovering from that service → the virtual services routed to them (provided by the
  node, or by a router with a route targeting it) → the sidecars with such a backend and the
  gateways with a gateway route to such a service. Other meshes and services are untouched.
- A registry id the registry no longer knows (a deleted service or namespace) cannot be named,
  so every proxy reaching any Cloud Map-discovered node is included.

Pure: reads the two sources, returns identities.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from pydantic import ValidationError

from mapmesh.mesh.records import MeshResource
from mapmesh.model import appmesh as am
from mapmesh.xds.sources import MeshSource, RegistryIndex
from mapmesh.xds.streams import ProxyId

__all__ = ["affected_proxies"]

_Spec = TypeVar("_Spec", bound=am.AppMeshModel)

# (namespace HTTP name, service name or None for every service in it), lower case.
_Key = tuple[str, str | None]


def affected_proxies(
    meshes: MeshSource,
    registry: RegistryIndex,
    *,
    changed_meshes: Iterable[str] = (),
    changed_services: Iterable[str] = (),
    changed_namespaces: Iterable[str] = (),
) -> frozenset[ProxyId]:
    """Proxies whose snapshot may change; services and namespaces are registry ids."""
    whole = set(changed_meshes)
    found: set[ProxyId] = set()
    for mesh in whole:
        found |= _all_proxies(meshes, mesh)
    keys, unknown = _registry_keys(registry, changed_services, changed_namespaces)
    if not keys and not unknown:
        return frozenset(found)
    for resource in meshes.meshes():
        if resource.name in whole:
            continue
        nodes = {
            node.name
            for node in meshes.in_mesh(resource.name, "virtualNode")
            if _discovers_from(node, keys, unknown)
        }
        if nodes:
            found |= _reaching(meshes, resource.name, nodes)
    return frozenset(found)


def _registry_keys(
    registry: RegistryIndex, services: Iterable[str], namespaces: Iterable[str]
) -> tuple[set[_Key], bool]:
    keys: set[_Key] = set()
    unknown = False
    for service_id in services:
        service = registry.services.get(service_id)
        namespace = registry.namespaces.get(service.namespace_id) if service else None
        if service is None or namespace is None:
            unknown = True
        else:
            keys.add((namespace.http_name.lower(), service.name.lower()))
    for namespace_id in namespaces:
        namespace = registry.namespaces.get(namespace_id)
        if namespace is None:
            unknown = True
        else:
            keys.add((namespace.http_name.lower(), None))
    return keys, unknown


def _spec(resource: MeshResource, model: type[_Spec]) -> _Spec | None:
    try:
        return model.model_validate(resource.spec)
    except ValidationError:
        return None


def _discovers_from(node: MeshResource, keys: set[_Key], unknown: bool) -> bool:
    spec = _spec(node, am.VirtualNodeSpec)
    discovery = spec.service_discovery if spec is not None else None
    cloud_map = discovery.aws_cloud_map if discovery is not None else None
    if cloud_map is None:
        return False
    namespace = cloud_map.namespace_name.lower()
    return (
        unknown
        or (namespace, cloud_map.service_name.lower()) in keys
        or (
            namespace,
            None,
        )
        in keys
    )


def _all_proxies(meshes: MeshSource, mesh: str) -> set[ProxyId]:
    return {
        ProxyId(mesh, kind, resource.name)
        for kind in ("virtualNode", "virtualGateway")
        for resource in meshes.in_mesh(mesh, kind)
    }


def _reaching(meshes: MeshSource, mesh: str, nodes: set[str]) -> set[ProxyId]:
    """Proxies of ``mesh`` with a route that can end at one of ``nodes``."""
    services = _services_reaching(meshes, mesh, nodes)
    found: set[ProxyId] = set()
    for resource in meshes.in_mesh(mesh, "virtualNode"):
        spec = _spec(resource, am.VirtualNodeSpec)
        backends = {
            b.virtual_service.virtual_service_name
            for b in (spec.backends or () if spec is not None else ())
            if b.virtual_service is not None
        }
        if backends & services:
            found.add(ProxyId(mesh, "virtualNode", resource.name))
    for resource in meshes.in_mesh(mesh, "gatewayRoute"):
        route = _spec(resource, am.GatewayRouteSpec)
        member = route and (route.http_route or route.http2_route or route.grpc_route)
        if member and member.action.target.virtual_service.virtual_service_name in services:
            found.add(ProxyId(mesh, "virtualGateway", resource.parent or ""))
    return found


def _services_reaching(meshes: MeshSource, mesh: str, nodes: set[str]) -> set[str]:
    routers: set[str] = set()
    for resource in meshes.in_mesh(mesh, "route"):
        spec = _spec(resource, am.RouteSpec)
        member = spec and (spec.http_route or spec.http2_route or spec.grpc_route or spec.tcp_route)
        if member and any(t.virtual_node in nodes for t in member.action.weighted_targets):
            routers.add(resource.parent or "")
    services: set[str] = set()
    for resource in meshes.in_mesh(mesh, "virtualService"):
        service = _spec(resource, am.VirtualServiceSpec)
        provider = service.provider if service is not None else None
        if provider is None:
            continue
        by_node = provider.virtual_node
        by_router = provider.virtual_router
        if (by_node is not None and by_node.virtual_node_name in nodes) or (
            by_router is not None and by_router.virtual_router_name in routers
        ):
            services.add(resource.name)
    return services
