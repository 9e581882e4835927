"""What a listener records when a response ends: edge, latencies, flags, and spans.

Theory of operation
-------------------
Each downstream connection asks its listener's :class:`ListenerTelemetry` for a
:class:`Recorder` once, and calls :meth:`Recorder.record` once per finished exchange with
what it read from the exchange (plain values: the connection's compiled code reads them
from its own classes). The recorder keeps the traffic edge of the last (cluster,
destination) it saw: on a keep-alive connection that keeps calling one service that is two
identity checks, and only a change of destination or cluster goes to the edge set's dict.
Then, per response:

* the edge's status class and duration;
* its response flags, only when it has some (an error or a local reply);
* ``upstream_rq_time`` of the cluster whose endpoint answered, from the start of that attempt;
* for a sampled request only (:meth:`ListenerTelemetry.traced`), one tuple into each span
  exporter's buffer.

Nothing else is built: no dict, label tuple or span per request. ``downstream_rq_xx`` and
``downstream_rq_time`` are not counted here but summed from the edges when ``/stats`` is read.
"""

from __future__ import annotations

from mapmesh.proxy.cluster import ClusterRuntime
from mapmesh.proxy.stats import Counter, FlagCounter, Stats
from mapmesh.proxy.telemetry.edges import Edge, EdgeSet
from mapmesh.proxy.telemetry.spans import SpanBuffer, TracedRequest
from mapmesh.proxy.telemetry.tracing import NEVER, Sampler

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

    def traced(self, request: TracedRequest) -> None:
        """A sampled request ended: hand it to the exporters."""
        for sink in self._sinks:
            sink.add(request)
        self._sampled.value += 1


class Recorder:
    """Per connection: :meth:`record` each finished exchange (see the module docstring)."""

    __slots__ = ("_cluster", "_destination", "_edge", "_listener")

    def __init__(self, listener: ListenerTelemetry) -> None:
        self._listener = listener
        self._cluster: ClusterRuntime | None = None
        self._destination: str | None = None
        self._edge: Edge | None = None  # the edge of (_cluster, _destination); None: none yet

    def record(
        self,
        cluster: ClusterRuntime | None,
        destination: str | None,
        status: int,
        seconds: float,
        upstream_seconds: float,
        flags: list[str],
    ) -> None:
        """One finished exchange: ``cluster`` that served it (None: a local reply before
        routing chose one), the ``destination`` it asked for, the ``status`` sent downstream
        (0: none), its duration and the answering attempt's (negative: no upstream
        answered), and its response ``flags``."""
        edge = self._edge
        if edge is None or cluster is not self._cluster or destination is not self._destination:
            edge = self._switch(cluster, destination)
        edge.status[status // 100] += 1
        edge.latency.observe(seconds)
        if upstream_seconds >= 0.0 and cluster is not None:
            cluster.stats_rq_time.observe(upstream_seconds)
        if flags:
            self._listener.flagged(edge, flags)

    def _switch(self, cluster: ClusterRuntime | None, destination: str | None) -> Edge:
        """Another destination or cluster than the last response's: look its edge up."""
        listener = self._listener
        edge = self._edge = listener.edge(cluster, listener.destination or destination or "")
        self._cluster = cluster
        self._destination = destination
        return edge
