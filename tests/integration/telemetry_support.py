"""Telemetry as a proxy reports it (docs/telemetry.md), for tests of the control plane's side:
the map, traces and events API and the dashboard that draws them."""

from __future__ import annotations

import time
from typing import Any

from tests.integration.test_cloudmap_api import wait_operation

BOUNDS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]


def register_instance(sd: Any, service_id: str, instance_id: str, port: int) -> None:
    """A Cloud Map instance on 127.0.0.1:``port``, registered to the end of its operation."""
    operation = sd.register_instance(
        ServiceId=service_id,
        InstanceId=instance_id,
        Attributes={"AWS_INSTANCE_IPV4": "127.0.0.1", "AWS_INSTANCE_PORT": str(port)},
    )["OperationId"]
    assert wait_operation(sd, operation)["Status"] == "SUCCESS"


def wire_histogram(counts: dict[int, int]) -> dict[str, Any]:
    """Counts by bucket index → the wire histogram."""
    return {"bounds": BOUNDS, "counts": [counts.get(i, 0) for i in range(len(BOUNDS) + 1)]}


def wire_span(trace_id: str, span_id: str, parent: str | None, name: str, kind: str,
              start: float, ms: float, node: str, status: int = 200) -> dict[str, Any]:  # fmt: skip
    """One span of ``trace_id`` lasting ``ms`` from ``start`` (wall-clock seconds)."""
    return {
        "traceId": trace_id, "spanId": span_id, "parentSpanId": parent, "name": name,
        "kind": kind, "start": start, "end": start + ms / 1000,
        "status": "ok" if status < 500 else "error",
        "attributes": {"http.method": "GET", "http.target": "/", "http.status_code": status,
                       "mapmesh.node": node},
    }  # fmt: skip


def report_body(mesh: str, kind: str, name: str, instance: str, config_version: int,
                **parts: Any) -> dict[str, Any]:  # fmt: skip
    """A report of the last 2 s from one proxy; ``parts``: its edges, events and spans."""
    now = time.time()
    return {
        "mesh": mesh, "kind": kind, "name": name, "instance": instance,
        "configVersion": config_version, "window": {"start": now - 2, "end": now},
        "edges": parts.get("edges", []), "events": parts.get("events", []),
        "spans": parts.get("spans", []),
    }  # fmt: skip
