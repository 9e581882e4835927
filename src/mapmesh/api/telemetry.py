"""Telemetry on the control plane's port: proxies report, the dashboard and ``mapmesh top`` read.

``POST /v1/telemetry`` takes one proxy report (docs/telemetry.md; 204, or 400 naming the bad
field, 413 past :data:`MAX_BODY` bytes). Reads answer JSON, errors ``{"message": ...}``:

    GET /v1/topology?mesh=M&window=60     the service map: nodes from the mesh, edges from traffic
    GET /v1/traces?mesh=M&limit=50        trace summaries, newest first
    GET /v1/traces/{traceId}              one trace's spans, parents before children
    GET /v1/events?mesh=M&since=T&limit=100&type=ejection,health
    GET /v1/services?mesh=M               instances, ejections, routes and policies per node
    GET /v1/telemetry                     the store's statistics (what was kept and dropped)

:func:`telemetry_routes` also connects the store to the control plane's own events: registry
changes (the registry view), mesh changes (to know which mesh discovers what) and snapshot
acknowledgements (the hub).
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mapmesh.mesh.service import MeshService
from mapmesh.registry.registry import Registry
from mapmesh.telemetry import (
    KEEP_SECONDS,
    Connected,
    RegistryEvents,
    ReportError,
    TelemetryStore,
    UnknownMesh,
    parse_report,
    read_mesh,
    services_document,
    topology_document,
)
from mapmesh.xds.compiler import UnknownProxy
from mapmesh.xds.service import SnapshotService
from mapmesh.xds.streams import Ack, ProxyId

__all__ = ["MAX_BODY", "telemetry_routes"]

log = logging.getLogger("mapmesh.api.telemetry")

MAX_BODY = 4 * 1024 * 1024
MAX_TRACE_LIMIT = 2000
MAX_EVENT_LIMIT = 10_000


class _BadQuery(ValueError):
    pass


def _message(message: str, status: int) -> Response:
    return JSONResponse({"message": message}, status_code=status)


def _number(query: dict[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _BadQuery(f"{name} must be a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise _BadQuery(f"{name} must be from {low:g} to {high:g}")
    return value


def _limit(query: dict[str, str], default: int, high: int) -> int:
    raw = query.get("limit")
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= high:
        raise _BadQuery(f"limit must be an integer from 1 to {high}")
    return int(raw)


def _since(query: dict[str, str]) -> float | None:
    raw = query.get("since")
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise _BadQuery("since must be a unix time in seconds") from None
    if not math.isfinite(value):
        raise _BadQuery("since must be a unix time in seconds")
    return value


async def _read_body(request: Request) -> bytes | None:
    """The body, or None when it is larger than MAX_BODY (read no further)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def telemetry_routes(
    registry: Registry,
    mesh: MeshService,
    snapshots: SnapshotService,
    store: TelemetryStore | None = None,
) -> list[Route]:
    store = store if store is not None else TelemetryStore()
    watcher = RegistryEvents(registry.view, mesh.view, store)
    registry.view.subscribe(watcher.on_registry_change)
    mesh.view.subscribe(watcher.on_mesh_change)

    def acked(proxy: ProxyId, ack: Ack) -> None:
        store.record_ack(
            proxy.mesh, proxy.kind, proxy.name, ack.instance, ack.version, ack.accepted, ack.error
        )

    snapshots.hub.on_ack(acked)

    def connected(mesh_name: str) -> dict[tuple[str, str], Connected]:
        out: dict[tuple[str, str], Connected] = {}
        for entry in snapshots.hub.status():
            if entry["mesh"] == mesh_name:
                version, streams = entry["version"], entry["streams"]
                out[(str(entry["kind"]), str(entry["name"]))] = Connected(
                    version if isinstance(version, int) else None,
                    streams if isinstance(streams, int) else 0,
                )
        return out

    def explain(mesh_name: str, kind: str, name: str) -> dict[str, Any]:
        try:
            return snapshots.explain(ProxyId(mesh_name, kind, name))
        except UnknownProxy as exc:
            return {"error": str(exc)}

    async def receive(request: Request) -> Response:
        body = await _read_body(request)
        if body is None:
            return _message(f"the report is larger than {MAX_BODY} bytes", 413)
        try:
            decoded = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _message("the body must be JSON", 400)
        try:
            report, dropped = parse_report(decoded)
        except ReportError as exc:
            return _message(str(exc), 400)
        store.ingest(report, dropped)
        return Response(status_code=204)

    async def statistics(_: Request) -> Response:
        return JSONResponse({"statistics": store.statistics()})

    async def topology(request: Request) -> Response:
        query = dict(request.query_params)
        if not query.get("mesh"):
            return _message("mesh is required", 400)
        try:
            window = _number(query, "window", 60.0, 1.0, KEEP_SECONDS)
            model = read_mesh(mesh.view, registry.view, query["mesh"])
        except _BadQuery as exc:
            return _message(str(exc), 400)
        except UnknownMesh as exc:
            return _message(str(exc), 404)
        return JSONResponse(topology_document(model, store, window, connected(model.mesh)))

    async def services(request: Request) -> Response:
        name = request.query_params.get("mesh")
        if not name:
            return _message("mesh is required", 400)
        try:
            model = read_mesh(mesh.view, registry.view, name)
        except UnknownMesh as exc:
            return _message(str(exc), 404)
        document = services_document(
            model, store, connected(name), lambda kind, node: explain(name, kind, node)
        )
        return JSONResponse(document)

    async def traces(request: Request) -> Response:
        query = dict(request.query_params)
        try:
            limit = _limit(query, 50, MAX_TRACE_LIMIT)
        except _BadQuery as exc:
            return _message(str(exc), 400)
        found = store.traces.recent(query.get("mesh") or None, limit)
        return JSONResponse({"traces": [trace.summary() for trace in found]})

    async def trace(request: Request) -> Response:
        trace_id = request.path_params["trace_id"]
        found = store.traces.get(trace_id)
        if found is None:
            return _message(f"trace {trace_id!r} not found (never reported, or evicted)", 404)
        return JSONResponse(found.wire())

    async def events(request: Request) -> Response:
        query = dict(request.query_params)
        try:
            limit = _limit(query, 100, MAX_EVENT_LIMIT)
            since = _since(query)
        except _BadQuery as exc:
            return _message(str(exc), 400)
        types = frozenset(t for t in query.get("type", "").split(",") if t) or None
        found = store.events.query(
            mesh=query.get("mesh") or None, since=since, types=types, limit=limit
        )
        return JSONResponse({"events": [event.wire() for event in found]})

    return [
        Route("/v1/telemetry", receive, methods=["POST"]),
        Route("/v1/telemetry", statistics, methods=["GET"]),
        Route("/v1/topology", topology, methods=["GET"]),
        Route("/v1/services", services, methods=["GET"]),
        Route("/v1/traces", traces, methods=["GET"]),
        Route("/v1/traces/{trace_id}", trace, methods=["GET"]),
        Route("/v1/events", events, methods=["GET"]),
    ]
