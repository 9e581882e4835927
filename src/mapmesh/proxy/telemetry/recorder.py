"""What a listener records when a response ends: edge, latencies, flags, and spans.

Theory of operation
-------------------
Each downstream connection asks its listener's :class:`ListenerTelemetry` for a
:class:`Recorder` once, and calls :meth:`Recorder.record` once per finished exchange. The
recorder keeps the traffic edge of the last (cluster, destination) it saw: on a keep-alive
connection that keeps calling one service that is two identity checks, and only a change of
destination or cluster goes to the edge set's dict. Then, per response:

* the edge's status class and duration (appended; bucketed in batches, see ``Histogram``);
* its response flags, only when it has some (an error or a local reply);
* ``upstream_rq_time`` of the cluster whose endpoint answered, from the start of that attempt;
* for a sampled request only, one tuple into each span exporter's buffer.

Nothing else is built: no dict, label tuple or span per request. ``downstream_rq_xx`` and
``downstream_rq_time`` are not counted here but summed from the edges when ``/stats`` is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mapmesh.proxy.stats import Counter, FlagCounter, Stats
from mapmesh.proxy.telemetry.edges import Edge, EdgeSet
from mapmesh.proxy.telemetry.spans import SpanBuffer
from mapmesh.proxy.telemetry.tracing import NEVER, Sampler, Trace

if TYPE_CHECKING:
    from mapmesh.proxy.cluster import ClusterRuntime
    from mapmesh.proxy.downstream import DownstreamExchange

__all__ = ["ListenerTelemetry", "Recorder", "direction_of"]


def direction_of(listener_kind: str) -> str:
    """The report's direction of a listener kind (a backend port is outbound)."""
    return listener_kind if listener_kind in ("inbound", "gateway") else "outbound"


class ListenerTelemetry:
    """One listener's share of the process's telemetry.

    ``destination``: a fixed destination for every request of the listener (the node's own
    name on the inbound listener, the virtual service of a backend port); else the router's.
    ``sampler``: which requests without a sampling decision start a trace (the proxy's one).
    """

    def __init__(
        self,
        name: str,
        kind: str,
        edges: EdgeSet,
        stats: Stats,
        *,
        sampler: Sampler = NEVER,
        sinks: tuple[SpanBuffer, ...] = (),
        destination: str | None = None,
    ) -> None:
        self.name = name
        self.direction = direction_of(kind)
        self.destination = destination
        self.sampler = sampler
        self._edges = edges
        self._sinks = sinks
        self._flags: FlagCounter = stats.by_flag("downstream_rq_flags", (("listener", name),))
        self._sampled: Counter = stats.cell("tracing_requests_sampled", (("listener", name),))

    def recorder(self) -> Recorder:
        return Recorder(self)

    def edge(self, cluster: ClusterRuntime | None, destination: str) -> Edge:
        name = cluster.name if cluster is not None and self.direction != "inbound" else None
        return self._edges.edge(self.name, self.direction, destination, name)

    def flagged(self, edge: Edge, flags: list[str]) -> None:
        self._flags.add(flags)
        counts = edge.flags
        for flag in flags:
            counts[flag] = counts.get(flag, 0) + 1

    def traced(self, exchange: DownstreamExchange, trace: Trace, now: float) -> None:
        """A sampled request ended: hand it to the exporters."""
        forwarding = exchange.forwarding
        cluster = forwarding.cluster.name if forwarding is not None else None
        answered = (
            forwarding.attempt_started
            if forwarding is not None and exchange.response is not None
            else None
        )
        head = exchange.head
        request = (
            trace, exchange.started_mono, now, exchange.status, exchange.flags,
            exchange.upstream, cluster, self.name,
            self.destination or exchange.destination or "",
            head.method, head.path, exchange.request_id, answered,
        )  # fmt: skip
        for sink in self._sinks:
            sink.add(request)
        self._sampled.value += 1


_NOTHING = object()


class Recorder:
    """Per connection: :meth:`record` each finished exchange (see the module docstring).

    Every line of :meth:`record` runs once per response, so it is written for the
    interpreter: the current edge's status list and ``observe`` are kept in slots, checks are
    identity checks, durations are appended for later bucketing (:class:`Histogram`)."""

    __slots__ = ("_cluster", "_destination", "_edge", "_listener", "_observe", "_status")

    def __init__(self, listener: ListenerTelemetry) -> None:
        self._listener = listener
        self._cluster: object = _NOTHING  # the key of ``_edge``: no edge yet
        self._destination: str | None = None
        self._edge = Edge(listener.name, listener.direction, "", None)  # never counted
        self._status = self._edge.status
        self._observe = self._edge.latency.observe

    def record(self, exchange: DownstreamExchange, now: float) -> None:
        forwarding = exchange.forwarding
        cluster = None if forwarding is None else forwarding.cluster
        if cluster is not self._cluster or exchange.destination is not self._destination:
            self._switch(exchange, cluster)
        self._status[exchange.status // 100] += 1
        self._observe(now - exchange.started_mono)
        if exchange.response is not None and forwarding is not None:  # an upstream answered:
            forwarding.cluster.stats_rq_time.observe(now - forwarding.attempt_started)
        if exchange.flags:
            self._listener.flagged(self._edge, exchange.flags)
        trace = exchange.trace
        if trace is not None:
            self._listener.traced(exchange, trace, now)

    def _switch(self, exchange: DownstreamExchange, cluster: ClusterRuntime | None) -> None:
        """Another destination or cluster than the last response's: look its edge up."""
        listener = self._listener
        edge = self._edge = listener.edge(
            cluster, listener.destination or exchange.destination or ""
        )
        self._status = edge.status
        self._observe = edge.latency.observe
        self._cluster = cluster
        self._destination = exchange.destination
