"""mapmesh's native snapshot stream for proxies and gateways, under ``/v1/``.

``GET /v1/stream?mesh=M&virtualNode=N`` (or ``virtualGateway=G``), optionally with
``instance=<id>`` and ``version=<last applied>``, answers a never-ending
``application/x-ndjson`` body: one ``{"type":"snapshot","version":V,"digest":..,"snapshot":{..}}``
line per new version (the first at once unless ``version`` is already current) and a
``{"type":"ping"}`` line every ``ping_interval`` seconds so both sides notice a dead peer.
``POST /v1/ack`` records what a proxy instance applied or rejected; ``GET /v1/proxies`` lists
connected proxies with their versions and acknowledgements; ``GET /v1/explain`` (same
identity parameters) shows the effective configuration with every default marked.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mapmesh.xds.compiler import UnknownProxy
from mapmesh.xds.service import SnapshotService
from mapmesh.xds.streams import PROXY_KINDS, ProxyId, encode_line

__all__ = ["stream_routes"]

_PING = encode_line("ping")


def _bad_request(message: str, status: int = 400) -> Response:
    return JSONResponse({"message": message}, status_code=status)


def _identity(source: dict[str, Any]) -> ProxyId | str:
    mesh = source.get("mesh")
    kinds = [k for k in PROXY_KINDS if source.get(k)]
    if not mesh or len(kinds) != 1:
        return "give mesh and exactly one of virtualNode or virtualGateway"
    return ProxyId(str(mesh), kinds[0], str(source[kinds[0]]))


def stream_routes(snapshots: SnapshotService, *, ping_interval: float = 15.0) -> list[Route]:
    hub = snapshots.hub

    async def stream(request: Request) -> Response:
        proxy = _identity(dict(request.query_params))
        if isinstance(proxy, str):
            return _bad_request(proxy)
        try:
            after = int(request.query_params.get("version", "0"))
        except ValueError:
            return _bad_request("version must be an integer")
        instance = request.query_params.get("instance") or str(uuid.uuid4())
        if hub.connect(proxy) is None:
            hub.disconnect(proxy)
            return _bad_request(
                f"{proxy.kind} {proxy.name!r} not found in mesh {proxy.mesh!r}", 404
            )

        async def lines() -> AsyncIterator[bytes]:
            sent = after
            try:
                while True:
                    versioned = await hub.next_version(proxy, sent, ping_interval)
                    if versioned is None:
                        yield _PING
                        continue
                    sent = versioned.version
                    yield versioned.line
            finally:
                hub.disconnect(proxy, instance)

        return StreamingResponse(
            lines(),
            media_type="application/x-ndjson",
            headers={"cache-control": "no-store", "x-mapmesh-instance": instance},
        )

    async def ack(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _bad_request("body must be JSON")
        if not isinstance(body, dict):
            return _bad_request("body must be a JSON object")
        proxy = _identity(body)
        if isinstance(proxy, str):
            return _bad_request(proxy)
        version, accepted = body.get("version"), body.get("accepted")
        if not isinstance(version, int) or not isinstance(accepted, bool):
            return _bad_request("version (integer) and accepted (boolean) are required")
        error = body.get("error")
        instance = str(body.get("instance") or "")
        if not hub.ack(proxy, instance, version, accepted, str(error) if error else None):
            return _bad_request(f"no stream is connected for {proxy}", 404)
        return Response(status_code=204)

    async def proxies(_: Request) -> Response:
        return JSONResponse({"proxies": hub.status(), "statistics": hub.statistics()})

    async def explain(request: Request) -> Response:
        proxy = _identity(dict(request.query_params))
        if isinstance(proxy, str):
            return _bad_request(proxy)
        try:
            return JSONResponse(snapshots.explain(proxy))
        except UnknownProxy as exc:
            return _bad_request(str(exc), 404)

    return [
        Route("/v1/stream", stream, methods=["GET"]),
        Route("/v1/explain", explain, methods=["GET"]),
        Route("/v1/ack", ack, methods=["POST"]),
        Route("/v1/proxies", proxies, methods=["GET"]),
    ]
