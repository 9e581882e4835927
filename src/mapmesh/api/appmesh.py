"""The 38 App Mesh operations as rest-json handlers over :class:`MeshService`.

Thirty-five of them are five verbs for each of the seven kinds and are generated from
:data:`mapmesh.mesh.kinds.KINDS`: ``Create<Kind>``, ``Update<Kind>``, ``Describe<Kind>`` and
``Delete<Kind>`` answer ``{"<kind>": <Kind>Data}`` (the model's output payload), and
``List<Kinds>`` answers ``{"<kinds>": [<Kind>Ref, ...], "nextToken": ...}``. The other three
manage tags by ARN. Parameters arrive validated against the model and keyed by member name
(see :mod:`mapmesh.api.restjson`), so a handler only names the resource and calls the service.

``meshOwner``: mapmesh has no mesh sharing, so every mesh belongs to the control plane's
account. A ``meshOwner`` equal to that account is accepted; any other account owns no mesh
here and the call is answered with NotFoundException, as App Mesh answers for a mesh that was
never shared with the caller.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mapmesh.api.restjson import Handler, RestJsonError
from mapmesh.core.context import CallerContext
from mapmesh.mesh.kinds import KINDS, Kind, ResourceId
from mapmesh.mesh.service import MeshError, MeshService
from mapmesh.registry.errors import RegistryError
from mapmesh.registry.pagination import paginate

__all__ = ["SPEC_NAME", "appmesh_handlers"]

SPEC_NAME = "appmesh-2019-01-25"

_DEFAULT_PAGE = 100

Params = dict[str, Any]
Result = dict[str, Any]
_Body = Callable[[CallerContext, Params], Awaitable[Result]]


def appmesh_handlers(service: MeshService) -> dict[str, Handler]:
    """Every App Mesh operation name → its handler."""
    handlers: dict[str, Handler] = {}
    for kind in KINDS.values():
        handlers.update(_kind_handlers(service, kind))
    handlers.update(_tag_handlers(service))
    return {name: _guarded(body) for name, body in handlers.items()}


def _guarded(body: _Body) -> Handler:
    """Check ``meshOwner`` and turn the service's refusals into rest-json errors."""

    async def handler(ctx: CallerContext, params: Params) -> Result:
        owner = params.get("meshOwner")
        if owner is not None and owner != ctx.account:
            raise RestJsonError(
                "NotFoundException",
                f"mesh {params.get('meshName')!r} of account {owner} not found: meshes here "
                f"belong to account {ctx.account} (mapmesh does not share meshes)",
            )
        try:
            return await body(ctx, params)
        except MeshError as exc:
            raise RestJsonError(exc.code, exc.message) from None
        except RegistryError as exc:  # pagination: a nextToken this service never issued
            raise RestJsonError("BadRequestException", f"nextToken: {exc.message}") from None

    return handler


def _resource_id(kind: Kind, params: Params) -> ResourceId:
    mesh = str(params["meshName"])
    name = mesh if kind.name == "mesh" else str(params[kind.name_field])
    parent = str(params[kind.parent_field]) if kind.parent_field is not None else None
    return ResourceId(kind.name, mesh, parent, name)


def _kind_handlers(service: MeshService, kind: Kind) -> dict[str, _Body]:
    plural = kind.plural[0].upper() + kind.plural[1:]

    async def create(ctx: CallerContext, params: Params) -> Result:
        resource = await service.create(
            ctx,
            _resource_id(kind, params),
            params.get("spec") or {},
            tags=[(t["key"], t["value"]) for t in params.get("tags") or ()],
            client_token=params.get("clientToken"),
        )
        return {kind.name: resource.data()}

    async def update(ctx: CallerContext, params: Params) -> Result:
        resource = await service.update(
            ctx,
            _resource_id(kind, params),
            params.get("spec") or {},
            client_token=params.get("clientToken"),
        )
        return {kind.name: resource.data()}

    async def describe(_: CallerContext, params: Params) -> Result:
        return {kind.name: service.describe(_resource_id(kind, params)).data()}

    async def delete(_: CallerContext, params: Params) -> Result:
        return {kind.name: (await service.delete(_resource_id(kind, params))).data()}

    async def list_(_: CallerContext, params: Params) -> Result:
        parent = params[kind.parent_field] if kind.parent_field is not None else None
        page, token = service.list(
            kind.name,
            params.get("meshName", ""),
            parent,
            params.get("limit"),
            params.get("nextToken"),
        )
        return {kind.plural: [r.ref() for r in page], "nextToken": token}

    return {
        f"Create{kind.title}": create,
        f"Update{kind.title}": update,
        f"Describe{kind.title}": describe,
        f"Delete{kind.title}": delete,
        f"List{plural}": list_,
    }


def _tag_handlers(service: MeshService) -> dict[str, _Body]:
    async def list_tags(_: CallerContext, params: Params) -> Result:
        tags = sorted(service.tags_of(params["resourceArn"]))
        page, token = paginate(
            tags, lambda t: t[0], params.get("limit") or _DEFAULT_PAGE, params.get("nextToken")
        )
        return {"tags": [{"key": k, "value": v} for k, v in page], "nextToken": token}

    async def tag(_: CallerContext, params: Params) -> Result:
        await service.tag(params["resourceArn"], [(t["key"], t["value"]) for t in params["tags"]])
        return {}

    async def untag(_: CallerContext, params: Params) -> Result:
        await service.untag(params["resourceArn"], params["tagKeys"])
        return {}

    return {"ListTagsForResource": list_tags, "TagResource": tag, "UntagResource": untag}
