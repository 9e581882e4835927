"""The read documents: ``/v1/topology`` (the service map) and ``/v1/services``.

Both join three things: the mesh model (:mod:`mapmesh.telemetry.meshmodel`, so a mesh shows
before any traffic), the telemetry store (edges, reporters, ejections) and what the snapshot
hub knows of connected proxies (their snapshot version and stream count). The shapes are
docs/telemetry.md's. Pure: every input is a parameter.

Edge targets: a ``<mesh>/<node>:<port>`` cluster names its virtual node; an egress passthrough
(cluster ``passthrough|host:port``, or no cluster and a destination that is no virtual service
of the mesh and no ``NR`` flag) goes to the one ``external`` node; anything else (no route, a
local reply before a cluster was chosen) goes to ``virtualService/<destination>``, which is
added as a node when the mesh has no node by that id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mapmesh.model.plain import to_json
from mapmesh.telemetry.edges import EdgeKey, EdgeWindow
from mapmesh.telemetry.meshmodel import MeshModel, NodeInfo, node_of_cluster
from mapmesh.telemetry.store import TelemetryStore

__all__ = [
    "EXTERNAL",
    "Connected",
    "edge_target",
    "services_document",
    "topology_document",
]

EXTERNAL = "external"
_PASSTHROUGH = "passthrough|"

Explain = Callable[[str, str], dict[str, Any]]
"""(kind, name) → the ``/v1/explain`` document of that proxy."""


@dataclass(frozen=True, slots=True)
class Connected:
    """A proxy identity with streams open to this control plane."""

    version: int | None
    streams: int


def _strip_port(host: str) -> str:
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() and "]" not in port else host


def edge_target(key: EdgeKey, model: MeshModel, flags: Mapping[str, int]) -> str:
    """The node id an outbound or gateway edge ends at (see the module docstring)."""
    node = node_of_cluster(key.mesh, key.cluster)
    if node is not None:
        return f"virtualNode/{node}"
    service = _strip_port(key.destination)
    if key.cluster is not None and key.cluster.startswith(_PASSTHROUGH):
        return EXTERNAL
    if key.cluster is None and service not in model.virtual_services and "NR" not in flags:
        return EXTERNAL
    return f"virtualService/{service or '-'}"


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _stats(window: EdgeWindow) -> dict[str, Any]:
    return {
        "rps": round(window.rps, 3),
        "errorRate": round(window.error_rate, 4),
        "p50Ms": _rounded(window.p50_ms),
        "p99Ms": _rounded(window.p99_ms),
        "requests": window.requests,
        "status": window.status,
        "flags": window.flags,
    }


def _traffic_edges(
    model: MeshModel, store: TelemetryStore, window: float
) -> dict[tuple[str, str, str], EdgeWindow]:
    """Outbound and gateway edges by (source, target, destination); several keys (ports,
    clusters of one node) sum into one map edge. Targets need the flags of the whole
    (node, destination, cluster) key, so keys are grouped first, then labelled."""
    raw = store.edge_windows(model.mesh, window, lambda k: k if k.direction != "inbound" else None)
    labels = {
        key: (f"{key.kind}/{key.node}", edge_target(key, model, stats.flags), key.destination)
        for key, stats in raw.items()
    }
    return store.edge_windows(model.mesh, window, labels.get)


def _node(
    info: NodeInfo,
    store: TelemetryStore,
    mesh: str,
    connected: Mapping[tuple[str, str], Connected],
    inbound: EdgeWindow | None,
) -> dict[str, Any]:
    reporters = store.reporters(mesh, info.kind, info.name)
    link = connected.get((info.kind, info.name))
    versions = [r.config_version for r in reporters if r.config_version is not None]
    version = link.version if link is not None and link.version else max(versions, default=None)
    if info.discovery is not None and info.discovery.kind == "cloudMap":
        instances, healthy = len(info.endpoints), info.healthy
    else:  # gateways and DNS-discovered nodes: count the proxies we hear from
        instances = max(len(reporters), link.streams if link is not None else 0)
        healthy = instances
    return {
        "id": info.id,
        "kind": info.kind,
        "name": info.name,
        "instances": instances,
        "healthy": healthy,
        "version": version,
        "reporting": len(reporters),
        "inbound": _stats(inbound) if inbound is not None else None,
    }


def topology_document(
    model: MeshModel,
    store: TelemetryStore,
    window: float,
    connected: Mapping[tuple[str, str], Connected],
) -> dict[str, Any]:
    """``GET /v1/topology``: every node of the mesh, and the edges with traffic in ``window``."""
    inbound = store.edge_windows(
        model.mesh, window, lambda k: (k.kind, k.node) if k.direction == "inbound" else None
    )
    nodes = [
        _node(info, store, model.mesh, connected, inbound.get((info.kind, info.name)))
        for info in model.nodes
    ]
    known = {node["id"] for node in nodes}
    edges = []
    for (source, target, destination), stats in sorted(
        _traffic_edges(model, store, window).items()
    ):
        for node_id in (source, target):
            if node_id in known:
                continue
            known.add(node_id)
            kind, _, name = node_id.partition("/")
            nodes.append(
                {
                    "id": node_id, "kind": kind, "name": name or node_id, "instances": 0,
                    "healthy": 0, "version": None, "reporting": 0, "inbound": None,
                }
            )  # fmt: skip
        edges.append(
            {"source": source, "target": target, "destination": destination, **_stats(stats)}
        )
    return {
        "mesh": model.mesh,
        "window": window,
        "generatedAt": store.now(),
        "nodes": nodes,
        "edges": edges,
    }


def services_document(
    model: MeshModel,
    store: TelemetryStore,
    connected: Mapping[tuple[str, str], Connected],
    explain: Explain,
) -> dict[str, Any]:
    """``GET /v1/services``: per node and gateway, instances (with health and who ejects
    them), the proxies reporting, the routes reaching it and its effective policies."""
    ejections: dict[str, list[dict[str, Any]]] = {}
    for ejection in store.ejections(model.mesh):
        node = node_of_cluster(model.mesh, ejection.cluster)
        if node is not None:
            ejections.setdefault(node, []).append(
                {
                    "cluster": ejection.cluster,
                    "endpoint": ejection.endpoint,
                    "by": ejection.source.wire(),
                    "since": ejection.since,
                    "until": ejection.until,
                }
            )
    out = []
    for info in model.nodes:
        ejected = ejections.get(info.name, []) if info.kind == "virtualNode" else []
        instances = []
        for endpoint in info.endpoints:
            where = f"{endpoint.address}:{endpoint.port}"
            instances.append(
                {
                    "id": endpoint.instance_id,
                    "address": endpoint.address,
                    "port": endpoint.port,
                    "health": endpoint.health,
                    "weight": endpoint.weight if endpoint.weight is not None else 1,
                    "ejectedBy": [e["by"] for e in ejected if e["endpoint"] == where],
                }
            )
        link = connected.get((info.kind, info.name))
        out.append(
            {
                "id": info.id,
                "kind": info.kind,
                "name": info.name,
                "discovery": (
                    to_json(info.discovery, exclude={"defaulted"})
                    if info.discovery is not None
                    else None
                ),
                "instances": instances,
                "ejections": ejected,
                "proxies": {
                    "connectedStreams": link.streams if link is not None else 0,
                    "version": link.version if link is not None else None,
                    "reporting": [
                        {
                            "instance": r.instance,
                            "lastSeen": r.last_seen,
                            "configVersion": r.config_version,
                        }
                        for r in store.reporters(model.mesh, info.kind, info.name)
                    ],
                },
                "routes": [route.wire() for route in info.routes],
                "policies": explain(info.kind, info.name),
            }
        )
    return {"mesh": model.mesh, "generatedAt": store.now(), "services": out}
