"""Traffic edges: what one listener sent to one destination through one cluster.

An :class:`Edge` counts, since the process started, the responses of its requests by status
class (index ``status // 100``; 0 is a cut connection), by response flag, and their durations
in a :class:`~mapmesh.proxy.stats.Histogram` — the numbers the request path updates once per
response. Two readers use them, neither on the request path:

* ``/stats`` sums them per listener into ``downstream_rq_xx`` and ``downstream_rq_time``
  (a collector registered with :class:`~mapmesh.proxy.stats.Stats`);
* the reporter sends the change since its last accepted report (:meth:`EdgeSet.window`,
  then :meth:`EdgeSet.commit` once the control plane took it), so a failed report is simply
  included in the next one.

Edges are never removed (counts must not go back), so their number is capped: past
:data:`MAX_EDGES`, a new (destination, cluster) of a listener is counted under destination
``-`` and ``telemetry_edges_overflow``. Hosts reached by egress passthrough are what could
otherwise grow without bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from mapmesh.proxy.stats import CODE_CLASS, LATENCY_BOUNDS_MS, Histogram, Labels, Stats

__all__ = ["MAX_EDGES", "OVERFLOW", "Edge", "EdgeSet", "Mark"]

MAX_EDGES: Final = 1000
OVERFLOW: Final = "-"
_REPORTED_CLASSES: Final = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx")

Mark = tuple[tuple[int, ...], dict[str, int], tuple[int, ...]]
"""An edge's counts at one moment: (statuses, flags, latency buckets)."""


class Edge:
    """Cumulative counts of one (listener, destination, cluster)."""

    __slots__ = ("cluster", "destination", "direction", "flags", "latency", "listener", "status")

    def __init__(self, listener: str, direction: str, destination: str, cluster: str | None):
        self.listener = listener
        self.direction = direction
        self.destination = destination
        self.cluster = cluster
        self.status = [0] * 10
        self.flags: dict[str, int] = {}
        self.latency = Histogram()

    def mark(self) -> Mark:
        return tuple(self.status), dict(self.flags), tuple(self.latency.counts)


class EdgeSet:
    """Every edge of a process, by (listener, destination, cluster)."""

    def __init__(self, stats: Stats, limit: int = MAX_EDGES) -> None:
        self.limit = limit
        self._edges: dict[tuple[str, str, str | None], Edge] = {}
        self._overflow = stats.cell("telemetry_edges_overflow")
        self._reported: dict[Edge, Mark] = {}
        stats.collect(self._listener_series)

    def edge(self, listener: str, direction: str, destination: str, cluster: str | None) -> Edge:
        """The edge of that key, made on first use (the caller keeps it)."""
        key = (listener, destination, cluster)
        edge = self._edges.get(key)
        if edge is None:
            if len(self._edges) >= self.limit:
                self._overflow.value += 1
                key = (listener, OVERFLOW, None)
                edge = self._edges.get(key)
                if edge is not None:
                    return edge
            edge = self._edges[key] = Edge(listener, direction, key[1], key[2])
        return edge

    def __iter__(self) -> Iterator[Edge]:
        return iter(list(self._edges.values()))

    def __len__(self) -> int:
        return len(self._edges)

    # -- readers -------------------------------------------------------------------------

    def _listener_series(self) -> Iterator[tuple[str, Labels, int | Histogram]]:
        """``downstream_rq_xx`` and ``downstream_rq_time`` per listener, summed over edges."""
        classes: dict[str, list[int]] = {}
        times: dict[str, Histogram] = {}
        for edge in self._edges.values():
            counts = classes.setdefault(edge.listener, [0] * 10)
            for index, count in enumerate(edge.status):
                counts[index] += count
            total = times.get(edge.listener)
            if total is None:
                total = times[edge.listener] = Histogram()
            total.add(edge.latency)
        for listener, counts in classes.items():
            labels = (("listener", listener),)
            for index, count in enumerate(counts):
                if count:
                    yield "downstream_rq_xx", (*labels, CODE_CLASS[index]), count
            yield "downstream_rq_time", labels, times[listener]

    def window(self, limit: int) -> tuple[list[dict[str, Any]], list[tuple[Edge, Mark]]]:
        """Edge documents (docs/telemetry.md) of what changed since the last commit — at
        most ``limit`` edges; the others wait for the next window — and the marks to
        :meth:`commit` once they were delivered."""
        documents: list[dict[str, Any]] = []
        marks: list[tuple[Edge, Mark]] = []
        for edge in self._edges.values():
            if len(documents) >= limit:
                break
            mark = edge.mark()
            before = self._reported.get(edge)
            status, flags, counts = _minus(mark, before) if before is not None else mark
            requests = sum(status)
            if not requests:
                continue
            by_class: dict[str, int] = {}
            for index, count in enumerate(status):
                if count:
                    name = _REPORTED_CLASSES[min(index, 5)]
                    by_class[name] = by_class.get(name, 0) + count
            documents.append(
                {
                    "direction": edge.direction,
                    "destination": edge.destination[:255],
                    "cluster": edge.cluster[:255] if edge.cluster is not None else None,
                    "requests": requests,
                    "status": by_class,
                    "flags": {flag: count for flag, count in flags.items() if count},
                    "latencyMs": {"bounds": list(LATENCY_BOUNDS_MS), "counts": list(counts)},
                }
            )
            marks.append((edge, mark))
        return documents, marks

    def commit(self, marks: list[tuple[Edge, Mark]]) -> None:
        """The window those marks came from was delivered: the next one starts there."""
        for edge, mark in marks:
            self._reported[edge] = mark


def _minus(now: Mark, before: Mark) -> Mark:
    status = tuple(a - b for a, b in zip(now[0], before[0], strict=True))
    flags = {flag: count - before[1].get(flag, 0) for flag, count in now[1].items()}
    counts = tuple(a - b for a, b in zip(now[2], before[2], strict=True))
    return status, flags, counts
