"""Create, update, describe, delete and list App Mesh resources of every kind.

One code path serves all seven kinds (see :mod:`mapmesh.mesh.kinds`). Writes are
compare-and-swap transactions that also compare every resource the new spec references, so
a route can never be stored pointing at a virtual node deleted at the same moment. After a
write the service waits for the mesh view to apply it (read-your-writes).

App Mesh semantics kept: ``version`` starts at 1 and increments on each update; a create or
update repeated with the same ``clientToken`` returns the stored result instead of failing or
bumping the version; deleting a resource that others reference is ResourceInUseException;
delete returns the resource with status DELETED.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from mapmesh.core.context import CallerContext
from mapmesh.mesh.extensions import Extensions, check_extensions
from mapmesh.mesh.kinds import KINDS, ResourceId
from mapmesh.mesh.records import MeshResource, ResourceMetadata
from mapmesh.mesh.validation import check_spec, references, referrers
from mapmesh.mesh.view import MeshView
from mapmesh.registry.errors import RegistryError
from mapmesh.registry.pagination import paginate
from mapmesh.registry.registry import utc_now
from mapmesh.store import Compare, Delete, Put, Store

__all__ = ["MAX_TAGS", "MeshError", "MeshService"]

MAX_TAGS = 50


class MeshError(Exception):
    """A refused request; ``code`` is the App Mesh exception name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _not_found(rid: ResourceId) -> MeshError:
    return MeshError("NotFoundException", f"{rid} not found")


class MeshService:
    def __init__(
        self, store: Store, view: MeshView, *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._store = store
        self.view = view
        self._clock = clock

    # -- reads ---------------------------------------------------------------------------

    def describe(self, rid: ResourceId) -> MeshResource:
        self._require_parents(rid)
        resource = self.view.get(rid)
        if resource is None:
            raise _not_found(rid)
        return resource

    def list(
        self, kind: str, mesh: str, parent: str | None, limit: int | None, next_token: str | None
    ) -> tuple[list[MeshResource], str | None]:
        if kind == "mesh":
            resources = self.view.meshes()
        else:
            self._require_parents(ResourceId(kind, mesh, parent, ""))
            resources = [r for r in self.view.in_mesh(mesh, kind) if r.parent == parent]
        try:
            return paginate(resources, lambda r: r.name, limit or 100, next_token)
        except RegistryError as exc:  # paginate speaks Cloud Map's errors
            raise MeshError("BadRequestException", f"nextToken: {exc.message}") from None

    def _require_parents(self, rid: ResourceId) -> None:
        if rid.kind == "mesh":
            return
        mesh = ResourceId("mesh", rid.mesh, None, rid.mesh)
        if self.view.get(mesh) is None:
            raise _not_found(mesh)
        parent_kind = KINDS[rid.kind].parent
        if parent_kind is not None:
            parent = ResourceId(parent_kind, rid.mesh, None, rid.parent or "")
            if self.view.get(parent) is None:
                raise _not_found(parent)

    # -- writes --------------------------------------------------------------------------

    async def create(
        self,
        ctx: CallerContext,
        rid: ResourceId,
        spec: dict[str, Any],
        *,
        tags: Iterable[tuple[str, str]] = (),
        client_token: str | None = None,
    ) -> MeshResource:
        _check_name(rid)
        self._require_parents(rid)
        existing = self.view.get(rid)
        if existing is not None:
            if client_token is not None and existing.client_token == client_token:
                return existing
            raise MeshError("ConflictException", f"{rid} already exists")
        tags = tuple(tags)
        _check_tags(tags)
        now = self._clock()
        mesh = self.view.get(ResourceId("mesh", rid.mesh, None, rid.mesh))
        resource = MeshResource(
            kind=rid.kind,
            mesh=rid.mesh,
            parent=rid.parent,
            name=rid.name,
            spec=_with_defaults(rid.kind, spec),
            metadata=ResourceMetadata(
                arn=rid.arn(ctx.region, ctx.account),
                uid=str(uuid.uuid4()),
                version=1,
                created_at=now,
                last_updated_at=now,
                mesh_owner=mesh.metadata.mesh_owner if mesh is not None else ctx.account,
                resource_owner=ctx.account,
            ),
            tags=tags,
            client_token=client_token,
        )
        await self._write(resource, expected=0)
        return resource

    async def update(
        self,
        ctx: CallerContext,
        rid: ResourceId,
        spec: dict[str, Any],
        *,
        client_token: str | None = None,
    ) -> MeshResource:
        current = self.describe(rid)
        if client_token is not None and current.client_token == client_token:
            return current
        kv = await self._store.get(rid.key)
        if kv is None:
            raise _not_found(rid)
        stored = MeshResource.model_validate_json(kv.value)
        resource = stored.model_copy(
            update={
                "spec": _with_defaults(rid.kind, spec),
                "metadata": stored.metadata.model_copy(
                    update={
                        "version": stored.metadata.version + 1,
                        "last_updated_at": self._clock(),
                    }
                ),
                "client_token": client_token,
            }
        )
        await self._write(resource, expected=kv.mod_revision)
        return resource

    async def delete(self, rid: ResourceId) -> MeshResource:
        current = self.describe(rid)
        scope = self.view.in_mesh(rid.mesh)
        if rid.kind == "mesh":
            scope = [*scope, current]
        users = referrers(rid, scope)
        if users:
            names = ", ".join(str(u) for u in users[:5])
            raise MeshError("ResourceInUseException", f"{rid} is still used by {names}")
        kv = await self._store.get(rid.key)
        if kv is None:
            raise _not_found(rid)
        result = await self._store.txn([Compare(rid.key, kv.mod_revision)], [Delete(rid.key)])
        if not result.succeeded:
            raise MeshError("ConflictException", f"{rid} changed during the delete; retry")
        await self.view.wait_for(result.revision)
        return current.model_copy(update={"status": "DELETED"})

    async def _write(self, resource: MeshResource, expected: int) -> None:
        """Validate ``resource`` and store it if its key is still at ``expected``."""
        try:
            resource.typed_spec()
        except ValidationError as exc:
            raise MeshError("BadRequestException", _describe(exc)) from None
        problems = check_spec(resource, self.view.get)
        if problems:
            raise MeshError("BadRequestException", "; ".join(problems))
        compares = [Compare(resource.id.key, expected)]
        for field, ref in references(resource):
            kv = await self._store.get(ref.key)
            if kv is None:
                raise MeshError(
                    "BadRequestException", f"{field}: {ref.kind} {ref.name!r} not found"
                )
            compares.append(Compare(ref.key, kv.mod_revision))
        put = Put(resource.id.key, resource.model_dump_json().encode())
        result = await self._store.txn(compares, [put])
        if not result.succeeded:
            raise MeshError(
                "ConflictException", f"{resource.id} or a resource it references changed; retry"
            )
        await self.view.wait_for(result.revision)

    # -- extensions ----------------------------------------------------------------------

    def extensions_of(self, rid: ResourceId) -> Extensions:
        """The resource's mapmesh extensions (empty when it has none)."""
        return self.describe(rid).extensions or Extensions()

    async def set_extensions(self, rid: ResourceId, extensions: Extensions) -> MeshResource:
        """Replace the resource's extensions (empty: remove them).

        Checked against the stored spec (a listener's port must exist). Like tags, this
        leaves the App Mesh ``version`` alone: the spec did not change.
        """
        self.describe(rid)
        kv = await self._store.get(rid.key)
        if kv is None:
            raise _not_found(rid)
        stored = MeshResource.model_validate_json(kv.value)
        problems = check_extensions(rid.kind, extensions, stored.spec)
        if problems:
            raise MeshError("BadRequestException", "; ".join(problems))
        resource = stored.model_copy(
            update={"extensions": None if extensions.empty else extensions}
        )
        put = Put(rid.key, resource.model_dump_json().encode())
        result = await self._store.txn([Compare(rid.key, kv.mod_revision)], [put])
        if not result.succeeded:
            raise MeshError("ConflictException", f"{rid} changed while setting extensions; retry")
        await self.view.wait_for(result.revision)
        return resource

    # -- tags ----------------------------------------------------------------------------

    def _by_arn(self, arn: str) -> MeshResource:
        rid = ResourceId.from_arn(arn)
        resource = self.view.get(rid) if rid is not None else None
        if resource is None or resource.metadata.arn != arn:
            raise MeshError("NotFoundException", f"resource {arn} not found")
        return resource

    def tags_of(self, arn: str) -> tuple[tuple[str, str], ...]:
        return self._by_arn(arn).tags

    async def tag(self, arn: str, tags: Iterable[tuple[str, str]]) -> None:
        new = dict(tags)
        await self._retag(arn, lambda old: tuple({**dict(old), **new}.items()))

    async def untag(self, arn: str, keys: Iterable[str]) -> None:
        drop = set(keys)
        await self._retag(arn, lambda old: tuple((k, v) for k, v in old if k not in drop))

    async def _retag(
        self, arn: str, change: Callable[[tuple[tuple[str, str], ...]], tuple[tuple[str, str], ...]]
    ) -> None:
        rid = self._by_arn(arn).id
        kv = await self._store.get(rid.key)
        if kv is None:
            raise MeshError("NotFoundException", f"resource {arn} not found")
        stored = MeshResource.model_validate_json(kv.value)
        tags = change(stored.tags)
        _check_tags(tags)
        put = Put(rid.key, stored.model_copy(update={"tags": tags}).model_dump_json().encode())
        result = await self._store.txn([Compare(rid.key, kv.mod_revision)], [put])
        if not result.succeeded:
            raise MeshError("ConflictException", f"{rid} changed while tagging; retry")
        await self.view.wait_for(result.revision)


def _with_defaults(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Defaults App Mesh writes into the stored spec itself (others apply at compile time)."""
    if kind == "mesh" and "egressFilter" not in spec:
        return {**spec, "egressFilter": {"type": "DROP_ALL"}}
    return spec


def _check_name(rid: ResourceId) -> None:
    """A ``/`` in a name would make its store key and ARN read as another resource's."""
    kind = KINDS[rid.kind]
    for field, name in (("meshName", rid.mesh), (kind.name_field, rid.name)):
        if "/" in name:
            raise MeshError("BadRequestException", f"{field}: {name!r} must not contain '/'")


def _check_tags(tags: tuple[tuple[str, str], ...]) -> None:
    if len(tags) > MAX_TAGS:
        raise MeshError("TooManyTagsException", f"at most {MAX_TAGS} tags per resource")


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(p) for p in error["loc"])
        parts.append(f"spec.{location}: {error['msg']}")
    return "; ".join(parts)
