"""A stored App Mesh resource: its identity, spec, metadata, status, tags and extensions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mapmesh.mesh.extensions import Extensions
from mapmesh.mesh.kinds import KINDS, ResourceId
from mapmesh.model.appmesh import AppMeshModel

__all__ = ["MeshResource", "ResourceMetadata"]


class ResourceMetadata(BaseModel):
    model_config = ConfigDict(frozen=True)

    arn: str
    uid: str
    version: int
    created_at: datetime
    last_updated_at: datetime
    mesh_owner: str
    resource_owner: str

    def wire(self) -> dict[str, Any]:
        return {
            "arn": self.arn,
            "uid": self.uid,
            "version": self.version,
            "createdAt": self.created_at,
            "lastUpdatedAt": self.last_updated_at,
            "meshOwner": self.mesh_owner,
            "resourceOwner": self.resource_owner,
        }


class MeshResource(BaseModel):
    """One resource as stored. ``spec`` is the wire dict; :meth:`typed_spec` parses it.

    ``extensions`` (mapmesh's own settings, :mod:`mapmesh.mesh.extensions`) sit beside the
    spec, never in it, so App Mesh answers (:meth:`data`, :meth:`ref`) cannot carry them.
    Left out of the stored JSON when None, so records without any keep their bytes.
    """

    model_config = ConfigDict(frozen=True)

    kind: str
    mesh: str
    parent: str | None = None
    name: str
    spec: dict[str, Any]
    metadata: ResourceMetadata
    status: str = "ACTIVE"
    tags: tuple[tuple[str, str], ...] = ()
    client_token: str | None = None
    extensions: Extensions | None = Field(default=None, exclude_if=lambda e: e is None)

    @property
    def id(self) -> ResourceId:
        return ResourceId(self.kind, self.mesh, self.parent, self.name)

    def typed_spec(self) -> AppMeshModel:
        return KINDS[self.kind].spec_model.model_validate(self.spec)

    def data(self, status: str | None = None) -> dict[str, Any]:
        """The ``<Kind>Data`` wire shape (``MeshData``, ``VirtualNodeData``, ...)."""
        kind = KINDS[self.kind]
        out: dict[str, Any] = {
            "meshName": self.mesh,
            "spec": self.spec,
            "metadata": self.metadata.wire(),
            "status": {"status": status or self.status},
        }
        if kind.name != "mesh":
            out[kind.name_field] = self.name
        if kind.parent_field is not None:
            out[kind.parent_field] = self.parent
        return out

    def ref(self) -> dict[str, Any]:
        """The ``<Kind>Ref`` wire shape used in list results."""
        kind = KINDS[self.kind]
        metadata = self.metadata.wire()
        del metadata["uid"]
        out: dict[str, Any] = {"meshName": self.mesh, **metadata}
        if kind.name != "mesh":
            out[kind.name_field] = self.name
        if kind.parent_field is not None:
            out[kind.parent_field] = self.parent
        return out
