"""The control plane's telemetry store: edges, traces, events and who reported, in memory.

Theory of operation
-------------------
:meth:`TelemetryStore.ingest` takes one parsed report (:mod:`mapmesh.telemetry.report`) and
files it: each edge into its :class:`~mapmesh.telemetry.edges.EdgeSeries` (O(1)), each span
into the :class:`~mapmesh.telemetry.traces.TraceStore` (O(1)), each event into the
:class:`~mapmesh.telemetry.events.EventLog` (O(1)); ejection/return events also update the
table of which proxy currently ejects which endpoint, so ``/v1/services`` can answer without
scanning the log. The control plane's own events (registrations, health-check transitions,
config acks) go through :meth:`record_event` / :meth:`record_ack`.

Time comes from the injected ``clock``. Reports are filed at arrival time; a proxy's event
time is kept when it is within :data:`EVENT_SKEW` of the clock (else arrival time is used), so
a proxy with a wrong clock cannot pin its events to the top of the log.

Bounds (all counted in :meth:`statistics` when hit): edges (:data:`MAX_EDGES`, new edges past
it dropped), reporting proxies (:data:`MAX_REPORTERS` identities of :data:`MAX_INSTANCES`
instances each), ejections (:data:`MAX_EJECTIONS`),
traces, spans per trace and events (their modules). Every :data:`SWEEP_SECONDS` an ingest also
sweeps edges, reporters and ejections that have aged out (O(edges), amortised to O(1)).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from mapmesh.telemetry.edges import KEEP_SECONDS, EdgeKey, EdgeSeries, EdgeWindow, WindowSum
from mapmesh.telemetry.events import MAX_EVENTS, EventLog, ProxySource
from mapmesh.telemetry.report import Dropped, EventReport, Report
from mapmesh.telemetry.traces import MAX_SPANS_PER_TRACE, MAX_TRACES, StoredSpan, TraceStore

__all__ = [
    "EVENT_SKEW",
    "MAX_EDGES",
    "MAX_EJECTIONS",
    "MAX_INSTANCES",
    "MAX_REPORTERS",
    "SWEEP_SECONDS",
    "Ejection",
    "Reporter",
    "TelemetryStore",
]

MAX_EDGES = 1000
MAX_REPORTERS = 2000  # proxy identities (mesh, kind, node)
MAX_INSTANCES = 1000  # reporting instances per identity
MAX_EJECTIONS = 5000
EVENT_SKEW = 300.0
SWEEP_SECONDS = 10.0

_Identity = tuple[str, str, str]  # mesh, kind, name
G = TypeVar("G")


@dataclass(frozen=True, slots=True)
class Reporter:
    """The last report of one proxy instance."""

    instance: str
    last_seen: float
    config_version: int | None


@dataclass(frozen=True, slots=True)
class Ejection:
    """``source`` ejected ``endpoint`` of ``cluster`` until ``until`` (or its return)."""

    mesh: str
    cluster: str
    endpoint: str
    source: ProxySource
    since: float
    until: float


class TelemetryStore:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        max_edges: int = MAX_EDGES,
        max_traces: int = MAX_TRACES,
        max_spans_per_trace: int = MAX_SPANS_PER_TRACE,
        max_events: int = MAX_EVENTS,
    ) -> None:
        self._clock = clock
        self._edges: dict[EdgeKey, EdgeSeries] = {}
        self._reporters: dict[_Identity, dict[str, Reporter]] = {}
        self._ejections: dict[tuple[str, str, str, ProxySource], Ejection] = {}
        self.traces = TraceStore(max_traces, max_spans_per_trace)
        self.events = EventLog(max_events)
        self.max_edges = max_edges
        self._last_sweep = clock()
        self._stats = {
            "reports": 0,
            "dropped_edges": 0,
            "dropped_events": 0,
            "dropped_spans": 0,
            "edges_over_limit": 0,
            "reporters_over_limit": 0,
            "ejections_over_limit": 0,
        }

    def now(self) -> float:
        return self._clock()

    # -- writing ---------------------------------------------------------------------------

    def ingest(self, report: Report, dropped: Dropped = Dropped()) -> None:
        """File one report; see the module docstring."""
        now = self._clock()
        stats = self._stats
        stats["reports"] += 1
        stats["dropped_edges"] += dropped.edges
        stats["dropped_events"] += dropped.events
        stats["dropped_spans"] += dropped.spans
        self._seen(report, now)
        for edge in report.edges:
            key = EdgeKey(
                report.mesh, report.kind, report.name, edge.direction, edge.destination,
                edge.cluster,
            )  # fmt: skip
            series = self._edges.get(key)
            if series is None:
                if len(self._edges) >= self.max_edges:
                    stats["edges_over_limit"] += 1
                    continue
                series = self._edges[key] = EdgeSeries()
            series.add(edge, now)
        source = ProxySource(report.kind, report.name, report.instance)
        for event in report.events:
            self._proxy_event(report.mesh, source, event, now)
        for span in report.spans:
            self.traces.add(
                StoredSpan(span, report.mesh, report.kind, report.name, source.instance)
            )
        if now - self._last_sweep >= SWEEP_SECONDS:
            self.sweep(now)

    def _seen(self, report: Report, now: float) -> None:
        identity = (report.mesh, report.kind, report.name)
        instances = self._reporters.get(identity)
        if instances is None:
            if len(self._reporters) >= MAX_REPORTERS:
                self._stats["reporters_over_limit"] += 1
                return
            instances = self._reporters[identity] = {}
        if report.instance not in instances and len(instances) >= MAX_INSTANCES:
            self._stats["reporters_over_limit"] += 1
            return
        instances[report.instance] = Reporter(report.instance, now, report.config_version)

    def _proxy_event(self, mesh: str, source: ProxySource, event: EventReport, now: float) -> None:
        at = event.time if abs(event.time - now) <= EVENT_SKEW else now
        self.events.add(at, event.type, mesh, source, event.detail)
        cluster, endpoint = event.detail.get("cluster"), event.detail.get("endpoint")
        if not isinstance(cluster, str) or not isinstance(endpoint, str):
            return
        key = (mesh, cluster, endpoint, source)
        if event.type == "return":
            self._ejections.pop(key, None)
        elif event.type == "ejection":
            duration = event.detail.get("durationMs")
            lasts = duration / 1000 if isinstance(duration, int | float) and duration > 0 else None
            until = at + lasts if lasts is not None else now + KEEP_SECONDS
            if key not in self._ejections and len(self._ejections) >= MAX_EJECTIONS:
                self._stats["ejections_over_limit"] += 1
                return
            self._ejections[key] = Ejection(mesh, cluster, endpoint, source, at, until)

    def record_event(
        self, type: str, mesh: str | None, detail: Mapping[str, Any], at: float | None = None
    ) -> None:
        """An event of the control plane itself (source ``control-plane``)."""
        self.events.add(self._clock() if at is None else at, type, mesh, None, detail)

    def record_ack(
        self,
        mesh: str,
        kind: str,
        name: str,
        instance: str,
        version: int,
        accepted: bool,
        error: str | None,
    ) -> None:
        """A proxy instance's acknowledgement of a snapshot version (``POST /v1/ack``)."""
        detail: dict[str, Any] = {
            "version": version,
            "accepted": accepted,
            "kind": kind,
            "name": name,
            "instance": instance,
        }
        if error:
            detail["error"] = error[:1024]
        self.record_event("config", mesh, detail)

    def sweep(self, now: float | None = None) -> None:
        """Forget edges, reporters and ejections that aged out."""
        now = self._clock() if now is None else now
        self._last_sweep = now
        for key, series in list(self._edges.items()):
            series.expire(now)
            if series.empty:
                del self._edges[key]
        horizon = now - KEEP_SECONDS
        for identity, instances in list(self._reporters.items()):
            for instance, reporter in list(instances.items()):
                if reporter.last_seen < horizon:
                    del instances[instance]
            if not instances:
                del self._reporters[identity]
        for ejected, ejection in list(self._ejections.items()):
            if ejection.until < now:
                del self._ejections[ejected]

    # -- reading ---------------------------------------------------------------------------

    def edge_windows(
        self, mesh: str, seconds: float, group: Callable[[EdgeKey], G | None]
    ) -> dict[G, EdgeWindow]:
        """Edges of ``mesh`` with traffic in the last ``seconds``, summed per ``group(key)``
        (edges it maps to None are left out)."""
        now = self._clock()
        sums: dict[G, WindowSum] = {}
        for key, series in self._edges.items():
            if key.mesh != mesh:
                continue
            label = group(key)
            if label is None:
                continue
            total = sums.get(label)
            if total is None:
                total = sums[label] = WindowSum()
            series.sum_into(total, now, seconds)
        out: dict[G, EdgeWindow] = {}
        for label, total in sums.items():
            window = total.result(seconds)
            if window is not None:
                out[label] = window
        return out

    def reporters(self, mesh: str, kind: str, name: str) -> list[Reporter]:
        """Instances of one proxy identity that reported in the last 15 minutes."""
        horizon = self._clock() - KEEP_SECONDS
        instances = self._reporters.get((mesh, kind, name), {})
        return sorted(
            (r for r in instances.values() if r.last_seen >= horizon), key=lambda r: r.instance
        )

    def ejections(self, mesh: str) -> list[Ejection]:
        """Endpoints of ``mesh`` that some proxy ejects right now."""
        now = self._clock()
        found = [e for e in self._ejections.values() if e.mesh == mesh and e.until >= now]
        return sorted(found, key=lambda e: (e.cluster, e.endpoint, e.source.instance))

    def statistics(self) -> dict[str, int]:
        return {
            **self._stats,
            "edges": len(self._edges),
            "buckets": sum(len(s) for s in self._edges.values()),
            "reporters": sum(len(i) for i in self._reporters.values()),
            "ejections": len(self._ejections),
            "traces": len(self.traces),
            "traces_evicted": self.traces.evicted,
            "spans_over_limit": self.traces.dropped_spans,
            "spans_duplicate": self.traces.duplicate_spans,
            "events": len(self.events),
            "events_evicted": self.events.evicted,
        }
