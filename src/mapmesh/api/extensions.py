"""mapmesh's native endpoint for resource extensions (:mod:`mapmesh.mesh.extensions`).

The App Mesh API has no member for them, so they have their own endpoint beside ``/v1/stream``;
App Mesh operations never show or take them. The resource is named by query parameters, as
in ``/v1/explain``::

    GET /v1/extensions?mesh=demo&virtualNode=worker-v1
    GET /v1/extensions?mesh=demo&virtualGateway=ingress&gatewayRoute=api
    PUT  (same query)  {"extensions": {"rateLimit": {"requestsPerUnit": 20, "unit": "second"}}}

Both answer ``{"mesh", <kind>: name, [<parent kind>: parent,] "extensions": {...}}`` with
the canonical extensions. A PUT replaces all of them (``{"extensions": {}}`` removes them).
Errors answer ``{"code", "message"}`` with the App Mesh exception names: 400
BadRequestException (the message names the field), 404 NotFoundException, 409
ConflictException.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mapmesh.mesh.extensions import Extensions, describe_error
from mapmesh.mesh.kinds import KINDS, ResourceId
from mapmesh.mesh.service import MeshError, MeshService

__all__ = ["extension_routes", "resource_from_query"]

_STATUS = {"BadRequestException": 400, "NotFoundException": 404, "ConflictException": 409}

# Child kinds first: naming a gateway route also names its gateway.
_ORDER = ("gatewayRoute", "route", "virtualNode", "virtualService", "virtualRouter")


def resource_from_query(query: dict[str, str]) -> ResourceId | str:
    """The resource the query names, or what is wrong with it."""
    mesh = query.get("mesh")
    if not mesh:
        return "mesh is required"
    for name in (*_ORDER, "virtualGateway"):
        if not query.get(name):
            continue
        kind = KINDS[name]
        parent = query.get(kind.parent) if kind.parent else None
        if kind.parent and not parent:
            return f"{name} needs {kind.parent} too"
        return ResourceId(name, mesh, parent, query[name])
    return "name the resource: mesh and virtualNode, or virtualGateway and gatewayRoute"


def _error(code: str, message: str) -> Response:
    return JSONResponse({"code": code, "message": message}, status_code=_STATUS.get(code, 400))


def _answer(rid: ResourceId, extensions: Extensions) -> Response:
    body: dict[str, Any] = {"mesh": rid.mesh}
    parent = KINDS[rid.kind].parent
    if parent is not None:
        body[parent] = rid.parent
    body[rid.kind] = rid.name
    body["extensions"] = extensions.wire()
    return JSONResponse(body)


def extension_routes(service: MeshService) -> list[Route]:
    async def extensions(request: Request) -> Response:
        rid = resource_from_query(dict(request.query_params))
        if isinstance(rid, str):
            return _error("BadRequestException", rid)
        try:
            if request.method == "GET":
                return _answer(rid, service.extensions_of(rid))
            try:
                body = json.loads(await request.body() or b"{}")
            except ValueError:
                return _error("BadRequestException", "the body must be JSON")
            if not isinstance(body, dict) or not isinstance(body.get("extensions", {}), dict):
                return _error("BadRequestException", 'the body must be {"extensions": {...}}')
            try:
                wanted = Extensions.from_wire(body.get("extensions"))
            except ValidationError as exc:
                return _error("BadRequestException", describe_error(exc))
            stored = await service.set_extensions(rid, wanted)
            return _answer(rid, stored.extensions or Extensions())
        except MeshError as exc:
            return _error(exc.code, exc.message)

    return [Route("/v1/extensions", extensions, methods=["GET", "PUT"])]
