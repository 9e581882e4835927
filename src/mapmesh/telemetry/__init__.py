"""Telemetry on the control plane: what proxies report, kept in memory, bounded.

Proxies ``POST /v1/telemetry`` (parsed by :mod:`~mapmesh.telemetry.report`); the
:class:`TelemetryStore` keeps per-edge time buckets, traces and an event log; the control
plane adds its own events (:class:`RegistryEvents`, acks); :mod:`~mapmesh.telemetry.topology`
joins it all with the mesh model for ``/v1/topology`` and ``/v1/services``. The contract is
docs/telemetry.md.
"""

from mapmesh.telemetry.edges import BUCKET_SECONDS, KEEP_SECONDS, EdgeKey, EdgeWindow
from mapmesh.telemetry.events import CONTROL_PLANE, Event, EventLog, ProxySource
from mapmesh.telemetry.histogram import percentile
from mapmesh.telemetry.meshmodel import MeshModel, UnknownMesh, read_mesh
from mapmesh.telemetry.registry_events import RegistryEvents
from mapmesh.telemetry.report import Dropped, Report, ReportError, parse_report
from mapmesh.telemetry.store import TelemetryStore
from mapmesh.telemetry.topology import Connected, services_document, topology_document
from mapmesh.telemetry.traces import Trace, TraceStore

__all__ = [
    "BUCKET_SECONDS",
    "CONTROL_PLANE",
    "KEEP_SECONDS",
    "Connected",
    "Dropped",
    "EdgeKey",
    "EdgeWindow",
    "Event",
    "EventLog",
    "MeshModel",
    "ProxySource",
    "RegistryEvents",
    "Report",
    "ReportError",
    "TelemetryStore",
    "Trace",
    "TraceStore",
    "UnknownMesh",
    "parse_report",
    "percentile",
    "read_mesh",
    "services_document",
    "topology_document",
]
