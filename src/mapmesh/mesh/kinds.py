"""The seven App Mesh resource kinds, described once.

Everything that differs between a virtual node and a gateway route — its wire names, its
parent, its spec type, its ARN and store key — is data in :data:`KINDS`, so the API, the
store layout and the YAML files handle every kind with the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

from mapmesh.model.appmesh import (
    AppMeshModel,
    GatewayRouteSpec,
    MeshSpec,
    RouteSpec,
    VirtualGatewaySpec,
    VirtualNodeSpec,
    VirtualRouterSpec,
    VirtualServiceSpec,
)

__all__ = ["KINDS", "KINDS_BY_TITLE", "Kind", "ResourceId"]


@dataclass(frozen=True, slots=True)
class Kind:
    name: str  # wire name of the data member: "virtualNode"
    title: str  # operation suffix and YAML kind: "VirtualNode"
    spec_model: type[AppMeshModel]
    parent: str | None = None  # "virtualRouter" for routes, "virtualGateway" for gateway routes

    @property
    def name_field(self) -> str:
        """The wire member holding the resource's name: ``virtualNodeName``."""
        return f"{self.name}Name"

    @property
    def parent_field(self) -> str | None:
        return f"{self.parent}Name" if self.parent else None

    @property
    def plural(self) -> str:
        return self.name + ("es" if self.name.endswith("h") else "s")


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("mesh", "Mesh", MeshSpec),
        Kind("virtualNode", "VirtualNode", VirtualNodeSpec),
        Kind("virtualService", "VirtualService", VirtualServiceSpec),
        Kind("virtualRouter", "VirtualRouter", VirtualRouterSpec),
        Kind("route", "Route", RouteSpec, parent="virtualRouter"),
        Kind("virtualGateway", "VirtualGateway", VirtualGatewaySpec),
        Kind("gatewayRoute", "GatewayRoute", GatewayRouteSpec, parent="virtualGateway"),
    )
}
KINDS_BY_TITLE: dict[str, Kind] = {kind.title: kind for kind in KINDS.values()}


@dataclass(frozen=True, slots=True, order=True)
class ResourceId:
    """Names one resource: its kind, mesh, parent (routes, gateway routes) and name."""

    kind: str
    mesh: str
    parent: str | None
    name: str

    def __str__(self) -> str:
        if self.kind == "mesh":
            return f"mesh {self.mesh}"
        scope = f"{self.parent}/" if self.parent else ""
        return f"{self.kind} {self.mesh}/{scope}{self.name}"

    @property
    def key(self) -> str:
        """Where the resource lives in the store."""
        if self.kind == "mesh":
            return f"mesh/{self.mesh}/mesh"
        if self.parent is not None:
            return f"mesh/{self.mesh}/{self.kind}/{self.parent}/{self.name}"
        return f"mesh/{self.mesh}/{self.kind}/{self.name}"

    def arn(self, region: str, account: str) -> str:
        base = f"arn:aws:appmesh:{region}:{account}:mesh/{self.mesh}"
        if self.kind == "mesh":
            return base
        parent_kind = KINDS[self.kind].parent
        if parent_kind is not None:
            return f"{base}/{parent_kind}/{self.parent}/{self.kind}/{self.name}"
        return f"{base}/{self.kind}/{self.name}"

    @staticmethod
    def from_arn(arn: str) -> ResourceId | None:
        parts = arn.split(":", 5)
        if len(parts) != 6 or parts[0] != "arn" or parts[2] != "appmesh":
            return None
        path = parts[5].split("/")
        if len(path) < 2 or path[0] != "mesh":
            return None
        mesh = path[1]
        rest = path[2:]
        if not rest:
            return ResourceId("mesh", mesh, None, mesh)
        if len(rest) == 2 and rest[0] in KINDS and KINDS[rest[0]].parent is None:
            return ResourceId(rest[0], mesh, None, rest[1])
        if len(rest) == 4 and rest[2] in KINDS and KINDS[rest[2]].parent == rest[0]:
            return ResourceId(rest[2], mesh, rest[1], rest[3])
        return None
