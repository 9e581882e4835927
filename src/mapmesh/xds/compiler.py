"""Compile the snapshot of one proxy from the mesh configuration and the registry.

Theory of operation
-------------------
A proxy is a sidecar (virtual node) or a gateway (virtual gateway). Its snapshot is what that
proxy needs and nothing more, walked outward from the proxy in request order:

    sidecar:  listeners · backends → virtual service → route table → weighted targets
    gateway:  listeners · gateway routes → virtual service → route table → weighted targets
    both:     every weighted target → one cluster per (virtual node, port) → endpoints

A virtual service's route table comes from its provider: a virtual router's routes (ordered
by priority, then name), or — when a node provides it directly — one catch-all route per node
listener. Every route, listener and cluster comes out with its defaults filled in and
recorded (:mod:`mapmesh.xds.defaults`).

The compiler is a pure function of its two inputs: no I/O, no clock, no randomness; every
sequence it emits is sorted, so the same configuration gives byte-identical
:func:`~mapmesh.model.snapshot.encode` output whatever order the sources list things in.

It raises only when the proxy itself is unknown (:class:`UnknownProxy`). Anything dangling
beyond it — a deleted backend, a route to a missing node, a node with no registered
instances — still compiles (to an empty route table or a cluster without endpoints, which
answer 404/503 on the data plane) and is reported as a :class:`CompileWarning`.

Cost: O(resources reached + instances of the clusters reached); each cluster and each
virtual service's routes are resolved once per compile.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, TypeVar

from pydantic import ValidationError

from mapmesh.mesh.kinds import ResourceId
from mapmesh.mesh.records import MeshResource
from mapmesh.model import appmesh as am
from mapmesh.model.snapshot import (
    AccessLog,
    AppProtocol,
    ClientTls,
    Cluster,
    Discovery,
    GatewayRoute,
    Listener,
    Provider,
    ProxyKind,
    Route,
    RouteMatch,
    RouteTable,
    Snapshot,
    WeightedCluster,
)
from mapmesh.xds import defaults
from mapmesh.xds.diagnostics import CompileWarning, WarningCode
from mapmesh.xds.endpoints import discover
from mapmesh.xds.policies import (
    access_log,
    client_tls,
    connection_pool,
    gateway_listener,
    health_check,
    node_listener,
    outlier_detection,
    rate_limit,
    timeouts,
)
from mapmesh.xds.routes import (
    gateway_match,
    gateway_member,
    gateway_rewrite,
    retry_policy,
    route_match,
    route_member,
)
from mapmesh.xds.sources import MeshSource, RegistrySource

__all__ = [
    "PROXY_KINDS",
    "CompileResult",
    "UnknownProxy",
    "cluster_name",
    "compile_snapshot",
]

PROXY_KINDS: tuple[ProxyKind, ...] = ("virtualNode", "virtualGateway")

_Spec = TypeVar("_Spec", bound=am.AppMeshModel)
_PolicySource = Literal["backend", "backendDefaults"]
_Policy = tuple[ClientTls | None, _PolicySource]  # client TLS, and where it came from
_ServiceRoutes = tuple[tuple[int, ...], Provider, tuple[Route, ...]]


class UnknownProxy(LookupError):
    """The virtual node or virtual gateway to compile for does not exist (or its stored spec
    no longer parses, which the API's validation should make impossible)."""

    def __init__(self, mesh: str, kind: str, name: str, reason: str = "not found") -> None:
        super().__init__(f"{kind} {name!r} {reason} in mesh {mesh!r}")
        self.mesh = mesh
        self.kind = kind
        self.name = name


@dataclass(frozen=True, slots=True)
class CompileResult:
    """The snapshot, and every gap found on the way (sorted, without duplicates)."""

    snapshot: Snapshot
    warnings: tuple[CompileWarning, ...]


def cluster_name(mesh: str, node: str, port: int | None) -> str:
    """``<mesh>/<node>:<port>`` (``<mesh>/<node>`` when the node has no port to offer)."""
    return f"{mesh}/{node}" if port is None else f"{mesh}/{node}:{port}"


def compile_snapshot(
    meshes: MeshSource, registry: RegistrySource, mesh: str, node_kind: str, name: str
) -> CompileResult:
    """The snapshot for proxy (``mesh``, ``node_kind``, ``name``); see the module docstring.

    Raises :class:`UnknownProxy` when that virtual node / virtual gateway does not exist, and
    ValueError when ``node_kind`` is neither ``virtualNode`` nor ``virtualGateway``.
    """
    if node_kind == "virtualNode":
        return _Compiler(meshes, registry, mesh).sidecar(name)
    if node_kind == "virtualGateway":
        return _Compiler(meshes, registry, mesh).gateway(name)
    raise ValueError(f"node_kind must be virtualNode or virtualGateway, not {node_kind!r}")


def _order(priority: int | None, name: str) -> tuple[int, str]:
    return (defaults.UNPRIORITIZED if priority is None else priority, name)


class _Compiler:
    """One compile: the sources, what was resolved so far, and the warnings."""

    def __init__(self, meshes: MeshSource, registry: RegistrySource, mesh: str) -> None:
        self._meshes = meshes
        self._registry = registry
        self._mesh = mesh
        self._warnings: set[CompileWarning] = set()
        self._invalid: set[ResourceId] = set()
        self._parsed: dict[ResourceId, am.AppMeshModel | None] = {}
        self._clusters: dict[str, Cluster] = {}
        self._services: dict[str, _ServiceRoutes] = {}
        self._mesh_spec = self._load_mesh()

    # -- the two kinds of proxy ----------------------------------------------------------

    def sidecar(self, name: str) -> CompileResult:
        rid = ResourceId("virtualNode", self._mesh, None, name)
        spec = self._spec(rid, am.VirtualNodeSpec)
        if spec is None:
            raise self._unknown(rid)
        listeners = self._node_listeners(rid, spec)
        fallback = _client_policy(spec.backend_defaults, "backendDefaults")
        tables: dict[str, RouteTable] = {}
        for backend in spec.backends or ():
            service = backend.virtual_service
            if service is None or service.virtual_service_name in tables:
                continue
            policy = _client_policy(service, "backend")
            table = self._route_table(
                service.virtual_service_name, policy if policy[0] is not None else fallback
            )
            tables[table.virtual_service] = table
        return self._result(
            "virtualNode",
            name,
            listeners,
            tables,
            (),
            access_log(spec.logging),
            self._registration(spec, name),
        )

    def _node_listeners(self, rid: ResourceId, spec: am.VirtualNodeSpec) -> list[Listener]:
        """The node's listeners, each with the rate limit its extensions give its port."""
        resource = self._meshes.get(rid)
        extensions = resource.extensions if resource is not None else None
        listeners = []
        for listener in spec.listeners or ():
            port = listener.port_mapping.port
            configured = extensions.listener(port) if extensions is not None else None
            limit = rate_limit(configured.rate_limit if configured is not None else None)
            listeners.append(node_listener(listener, limit))
        ports = {listener.port for listener in listeners}
        for configured in extensions.listeners if extensions is not None else ():
            if configured.port not in ports:
                self._warn(
                    str(rid),
                    WarningCode.PORT_NOT_FOUND,
                    f"the rateLimit extension names port {configured.port}, where the node has "
                    "no listener; ignored",
                )
        return listeners

    def _registration(self, spec: am.VirtualNodeSpec, name: str) -> Discovery | None:
        """The node's own Cloud Map service, where its sidecar registers its instance."""
        if spec.service_discovery is None or spec.service_discovery.aws_cloud_map is None:
            return None
        discovered = discover(
            self._registry, spec.service_discovery, None, self._mesh_spec.service_discovery, name
        )
        return discovered.discovery

    def gateway(self, name: str) -> CompileResult:
        rid = ResourceId("virtualGateway", self._mesh, None, name)
        spec = self._spec(rid, am.VirtualGatewaySpec)
        if spec is None:
            raise self._unknown(rid)
        listeners = [gateway_listener(listener) for listener in spec.listeners]
        policy = _client_policy(spec.backend_defaults, "backendDefaults")
        routes = []
        for resource in self._meshes.children("gatewayRoute", self._mesh, name):
            route_spec = self._parse(resource, am.GatewayRouteSpec)
            if route_spec is not None:
                route = self._gateway_route(resource, route_spec)
                if route is not None:
                    routes.append(route)
        routes.sort(key=lambda r: _order(r.priority, r.name))
        tables = {
            service: self._route_table(service, policy)
            for service in sorted({r.virtual_service for r in routes})
        }
        self._gateway_pool(spec)
        return self._result(
            "virtualGateway", name, listeners, tables, tuple(routes), access_log(spec.logging)
        )

    def _gateway_pool(self, spec: am.VirtualGatewaySpec) -> None:
        """A gateway listener's connection pool bounds the gateway's connections to every
        upstream cluster (App Mesh: "outbound TCP connections Envoy can establish
        concurrently with all hosts in upstream cluster"); without one, each cluster keeps
        its target listener's, as a sidecar's would."""
        configured = next((x.connection_pool for x in spec.listeners if x.connection_pool), None)
        if configured is None:
            return
        pool = connection_pool(configured)
        for name, cluster in self._clusters.items():
            self._clusters[name] = dataclasses.replace(cluster, connection_pool=pool)

    def _result(
        self,
        kind: ProxyKind,
        name: str,
        listeners: list[Listener],
        tables: dict[str, RouteTable],
        gateway_routes: tuple[GatewayRoute, ...],
        log: AccessLog | None,
        registration: Discovery | None = None,
    ) -> CompileResult:
        egress = self._mesh_spec.egress_filter
        snapshot = Snapshot(
            mesh=self._mesh,
            kind=kind,
            name=name,
            egress_filter=egress.type if egress is not None else defaults.EGRESS_FILTER,
            listeners=tuple(sorted(listeners, key=lambda listener: listener.port)),
            route_tables=tuple(tables[service] for service in sorted(tables)),
            gateway_routes=gateway_routes,
            clusters=tuple(self._clusters[c] for c in sorted(self._clusters)),
            access_log=log,
            registration=registration,
            defaulted=("egress_filter",) if egress is None else (),
        )
        return CompileResult(snapshot, tuple(sorted(self._warnings)))

    # -- reading the sources -------------------------------------------------------------

    def _warn(self, subject: str, code: WarningCode, message: str) -> None:
        self._warnings.add(CompileWarning(subject, code, message))

    def _load_mesh(self) -> am.MeshSpec:
        rid = ResourceId("mesh", self._mesh, None, self._mesh)
        spec = self._spec(rid, am.MeshSpec)
        if spec is None:
            if rid not in self._invalid:
                self._warn(f"mesh {self._mesh}", WarningCode.MESH_NOT_FOUND, "mesh not found")
            return am.MeshSpec()
        return spec

    def _parse(self, resource: MeshResource, model: type[_Spec]) -> _Spec | None:
        try:
            return model.model_validate(resource.spec)
        except ValidationError as exc:
            self._invalid.add(resource.id)
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            self._warn(
                str(resource.id),
                WarningCode.INVALID_SPEC,
                f"spec.{where}: {first['msg']}; ignored",
            )
            return None

    def _spec(self, rid: ResourceId, model: type[_Spec]) -> _Spec | None:
        """The parsed spec of ``rid`` (None: missing or invalid), parsed once per compile."""
        if rid not in self._parsed:
            resource = self._meshes.get(rid)
            self._parsed[rid] = None if resource is None else self._parse(resource, model)
        found = self._parsed[rid]
        return found if isinstance(found, model) else None

    def _unknown(self, rid: ResourceId) -> UnknownProxy:
        reason = "has an invalid spec" if rid in self._invalid else "not found"
        return UnknownProxy(rid.mesh, rid.kind, rid.name, reason)

    def _missing(self, rid: ResourceId, subject: str, code: WarningCode, message: str) -> None:
        """Warn that ``rid`` is missing, unless it exists but was invalid (already warned)."""
        if rid not in self._invalid:
            self._warn(subject, code, message)

    # -- virtual services → route tables -------------------------------------------------

    def _route_table(self, service: str, policy: _Policy) -> RouteTable:
        if service not in self._services:
            self._services[service] = self._service_routes(service)
        ports, provider, routes = self._services[service]
        tls, source = policy
        return RouteTable(
            virtual_service=service,
            ports=ports,
            provider=provider,
            routes=routes,
            client_tls=tls,
            client_policy_from="none" if tls is None else source,
        )

    def _service_routes(self, service: str) -> _ServiceRoutes:
        rid = ResourceId("virtualService", self._mesh, None, service)
        spec = self._spec(rid, am.VirtualServiceSpec)
        subject = f"virtualService {self._mesh}/{service}"
        none = Provider(kind="none")
        if spec is None:
            message = "not found; requests to it get 404"
            self._missing(rid, subject, WarningCode.VIRTUAL_SERVICE_NOT_FOUND, message)
            return (), none, ()
        provider = spec.provider
        if provider is not None and provider.virtual_router is not None:
            return self._router_routes(subject, provider.virtual_router.virtual_router_name)
        if provider is not None and provider.virtual_node is not None:
            return self._node_routes(subject, provider.virtual_node.virtual_node_name)
        self._warn(subject, WarningCode.NO_PROVIDER, "has no provider; requests to it get 404")
        return (), none, ()

    def _router_routes(self, subject: str, router: str) -> _ServiceRoutes:
        provider = Provider(kind="virtualRouter", name=router)
        rid = ResourceId("virtualRouter", self._mesh, None, router)
        spec = self._spec(rid, am.VirtualRouterSpec)
        if spec is None:
            message = f"provider virtual router {router!r} not found; requests get 404"
            self._missing(rid, subject, WarningCode.PROVIDER_NOT_FOUND, message)
            return (), provider, ()
        ports = tuple(sorted({listener.port_mapping.port for listener in spec.listeners or ()}))
        routes: list[Route] = []
        for resource in self._meshes.children("route", self._mesh, router):
            route_spec = self._parse(resource, am.RouteSpec)
            if route_spec is not None:
                route = self._route(resource, route_spec)
                if route is not None:
                    routes.append(route)
        routes.sort(key=lambda r: _order(r.priority, r.name))
        if not routes:
            self._warn(
                f"virtualRouter {self._mesh}/{router}",
                WarningCode.NO_ROUTES,
                "has no routes; requests get 404",
            )
        return ports, provider, tuple(routes)

    def _route(self, resource: MeshResource, spec: am.RouteSpec) -> Route | None:
        found = route_member(spec)
        if found is None:
            message = "exactly one of httpRoute, http2Route, grpcRoute, tcpRoute is required"
            self._warn(str(resource.id), WarningCode.INVALID_SPEC, f"spec: {message}; ignored")
            return None
        protocol, member = found
        subject = str(resource.id)
        targets = [
            self._target(subject, target.virtual_node, target.port, target.weight)
            for target in member.action.weighted_targets
        ]
        configured_retry = None if isinstance(member, am.TcpRoute) else member.retry_policy
        return Route(
            name=resource.name,
            priority=spec.priority,
            protocol=protocol,
            match=route_match(member),
            targets=tuple(sorted(targets, key=lambda t: (t.cluster, t.weight))),
            retry=retry_policy(protocol, configured_retry),
            timeout=timeouts(protocol, member.timeout),
            defaulted=("priority",) if spec.priority is None else (),
        )

    def _node_routes(self, subject: str, node: str) -> _ServiceRoutes:
        """A node-provided service: one catch-all route per node listener, all defaults."""
        provider = Provider(kind="virtualNode", name=node)
        rid = ResourceId("virtualNode", self._mesh, None, node)
        spec = self._spec(rid, am.VirtualNodeSpec)
        if spec is None:
            message = f"provider virtual node {node!r} not found; requests get 404"
            self._missing(rid, subject, WarningCode.PROVIDER_NOT_FOUND, message)
            return (), provider, ()
        mappings = sorted(
            {(li.port_mapping.port, li.port_mapping.protocol) for li in spec.listeners or ()}
        )
        if not mappings:
            route = self._catch_all(subject, node, None, "http", node, None)
            return (), provider, (route,)
        several = len(mappings) > 1
        routes = tuple(
            self._catch_all(subject, node, port, protocol, f"{node}:{port}", port)
            if several
            else self._catch_all(subject, node, port, protocol, node, None)
            for port, protocol in mappings
        )
        return tuple(port for port, _ in mappings), provider, routes

    def _catch_all(
        self,
        subject: str,
        node: str,
        port: int | None,
        protocol: AppProtocol,
        name: str,
        match_port: int | None,
    ) -> Route:
        return Route(
            name=name,
            priority=None,
            protocol=protocol,
            match=RouteMatch(port=match_port),
            targets=(self._target(subject, node, port, 100),),
            retry=retry_policy(protocol, None),
            timeout=timeouts(protocol, None),
            defaulted=("priority",),
        )

    # -- gateway routes ------------------------------------------------------------------

    def _gateway_route(
        self, resource: MeshResource, spec: am.GatewayRouteSpec
    ) -> GatewayRoute | None:
        found = gateway_member(spec)
        if found is None:
            message = "exactly one of httpRoute, http2Route, grpcRoute is required"
            self._warn(str(resource.id), WarningCode.INVALID_SPEC, f"spec: {message}; ignored")
            return None
        protocol, member = found
        target = member.action.target
        service = target.virtual_service.virtual_service_name
        return GatewayRoute(
            name=resource.name,
            priority=spec.priority,
            protocol=protocol,
            match=gateway_match(member),
            rewrite=gateway_rewrite(member, service),
            virtual_service=service,
            port=target.port,
            defaulted=("priority",) if spec.priority is None else (),
            rate_limit=rate_limit(resource.extensions.rate_limit if resource.extensions else None),
        )

    # -- weighted targets → clusters -----------------------------------------------------

    def _target(self, subject: str, node: str, port: int | None, weight: int) -> WeightedCluster:
        """The cluster for ``node`` on ``port`` (its first listener when None), built once."""
        rid = ResourceId("virtualNode", self._mesh, None, node)
        spec = self._spec(rid, am.VirtualNodeSpec)
        defaulted: tuple[str, ...] = ()
        listener: am.Listener | None = None
        if spec is None:
            message = f"target virtual node {node!r} not found; its share of traffic gets 503"
            self._missing(rid, subject, WarningCode.TARGET_NODE_NOT_FOUND, message)
        else:
            listeners = spec.listeners or ()
            if port is None and listeners:
                listener, port, defaulted = listeners[0], listeners[0].port_mapping.port, ("port",)
                if len(listeners) > 1:
                    self._warn(
                        subject,
                        WarningCode.AMBIGUOUS_PORT,
                        f"target virtual node {node!r} has several listeners and no port was "
                        f"given; using its first, {port}",
                    )
            elif port is None:
                self._warn(
                    subject,
                    WarningCode.NO_LISTENER,
                    f"target virtual node {node!r} has no listener",
                )
            else:
                listener = next((li for li in listeners if li.port_mapping.port == port), None)
                if listener is None:
                    self._warn(
                        subject,
                        WarningCode.PORT_NOT_FOUND,
                        f"target virtual node {node!r} has no listener on port {port}",
                    )
        name = cluster_name(self._mesh, node, port)
        if name not in self._clusters:
            self._clusters[name] = self._cluster(name, node, spec, port, listener)
        return WeightedCluster(cluster=name, weight=weight, port=port, defaulted=defaulted)

    def _cluster(
        self,
        name: str,
        node: str,
        spec: am.VirtualNodeSpec | None,
        port: int | None,
        listener: am.Listener | None,
    ) -> Cluster:
        subject = f"virtualNode {self._mesh}/{node}"
        discovered = discover(
            self._registry,
            spec.service_discovery if spec is not None else None,
            port,
            self._mesh_spec.service_discovery,
            subject,
        )
        if spec is not None:
            self._warnings.update(discovered.warnings)
        outlier = outlier_detection(listener.outlier_detection if listener else None)
        check = (
            health_check(listener.health_check, listener.port_mapping.port) if listener else None
        )
        defaulted = ["lb_policy"]
        defaulted += ["outlier_detection"] if outlier is None else []
        defaulted += ["health_check"] if check is None else []
        return Cluster(
            name=name,
            virtual_node=node,
            port=port,
            protocol=listener.port_mapping.protocol if listener else None,
            lb_policy=defaults.LB_POLICY,
            connection_pool=connection_pool(listener.connection_pool if listener else None),
            outlier_detection=outlier,
            health_check=check,
            discovery=discovered.discovery,
            endpoints=discovered.endpoints,
            defaulted=tuple(sorted(defaulted)),
        )


def _client_policy(
    holder: am.VirtualServiceBackend | am.BackendDefaults | am.VirtualGatewayBackendDefaults | None,
    source: _PolicySource,
) -> _Policy:
    policy = holder.client_policy if holder is not None else None
    return client_tls(policy.tls if policy is not None else None), source
