"""What the compiler reads, as small Protocols.

:class:`~mapmesh.mesh.view.MeshView` and :class:`~mapmesh.registry.view.RegistryView` satisfy
them; tests pass plain in-memory objects. Results may come in any order — the compiler sorts
everything it emits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from mapmesh.mesh.kinds import ResourceId
from mapmesh.mesh.records import MeshResource
from mapmesh.model.registry import Instance, Namespace, Service

__all__ = ["MeshSource", "RegistryIndex", "RegistrySource"]


class MeshSource(Protocol):
    """The mesh configuration: resources by id, by mesh and kind, and by parent."""

    def get(self, rid: ResourceId, /) -> MeshResource | None: ...

    def meshes(self) -> Sequence[MeshResource]: ...

    def in_mesh(self, mesh: str, kind: str | None = None, /) -> Sequence[MeshResource]: ...

    def children(self, kind: str, mesh: str, parent: str, /) -> Sequence[MeshResource]: ...


class RegistrySource(Protocol):
    """The Cloud Map registry, as service discovery needs it."""

    def namespace_by_http_name(self, name: str, /) -> Namespace | None: ...

    def service_by_name(self, namespace_id: str, name: str, /) -> Service | None: ...

    def instances_of(self, service_id: str, /) -> Mapping[str, Instance]: ...


class RegistryIndex(RegistrySource, Protocol):
    """The registry with its records by id, to name what a change touched."""

    @property
    def namespaces(self) -> Mapping[str, Namespace]: ...

    @property
    def services(self) -> Mapping[str, Service]: ...
