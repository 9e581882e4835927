"""The mesh configuration's in-memory read model, kept current from the store's watch.

Like the registry view: load everything under ``mesh/`` once, apply watch batches in order,
then tell listeners which meshes changed so snapshot compilation redoes only those.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mapmesh.mesh.kinds import ResourceId
from mapmesh.mesh.records import MeshResource
from mapmesh.store import Event, EventType, KeyValue, Store
from mapmesh.store.follower import PrefixFollower

__all__ = ["MESH_PREFIX", "MeshChange", "MeshView"]

MESH_PREFIX = "mesh/"


@dataclass(slots=True)
class MeshChange:
    revision: int
    meshes: set[str] = field(default_factory=set)
    reset: bool = False


class MeshView(PrefixFollower[MeshChange]):
    def __init__(self, store: Store) -> None:
        super().__init__(store, MESH_PREFIX)
        self._by_key: dict[str, MeshResource] = {}

    # -- queries -------------------------------------------------------------------------

    def get(self, rid: ResourceId) -> MeshResource | None:
        return self._by_key.get(rid.key)

    def meshes(self) -> list[MeshResource]:
        return sorted((r for r in self._by_key.values() if r.kind == "mesh"), key=lambda r: r.name)

    def in_mesh(self, mesh: str, kind: str | None = None) -> list[MeshResource]:
        """Resources of ``mesh`` (all kinds but the mesh itself, or one kind), by name."""
        prefix = f"{MESH_PREFIX}{mesh}/"
        found = [
            r
            for key, r in self._by_key.items()
            if key.startswith(prefix) and r.kind != "mesh" and (kind is None or r.kind == kind)
        ]
        return sorted(found, key=lambda r: (r.kind, r.parent or "", r.name))

    def children(self, kind: str, mesh: str, parent: str) -> list[MeshResource]:
        return [r for r in self.in_mesh(mesh, kind) if r.parent == parent]

    # -- applying store data -------------------------------------------------------------

    def _reset(self, entries: list[KeyValue], revision: int) -> MeshChange:
        self._by_key = {kv.key: MeshResource.model_validate_json(kv.value) for kv in entries}
        return MeshChange(revision, {r.mesh for r in self._by_key.values()}, reset=True)

    def _apply(self, batch: list[Event]) -> MeshChange:
        change = MeshChange(batch[-1].revision)
        for event in batch:
            change.meshes.add(event.key[len(MESH_PREFIX) :].split("/", 1)[0])
            if event.type is EventType.PUT:
                self._by_key[event.key] = MeshResource.model_validate_json(event.value)
            else:
                self._by_key.pop(event.key, None)
        return change
