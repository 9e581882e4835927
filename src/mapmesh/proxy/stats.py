"""Counters and gauges of the data plane, rendered in Prometheus' text format.

Names follow Envoy's where one exists (``upstream_rq_total``, ``upstream_rq_retry``,
``upstream_cx_overflow``, ``downstream_rq_time`` ...), each with a ``mapmesh_`` prefix and
labels for the cluster or listener. A metric is declared once, in :data:`METRICS`, with its
help text; the hot path holds :class:`Counter` and :class:`Histogram` cells it looked up once
(per connection, cluster or listener) and adds to them — no dict lookup, tuple or object per
request. Latency histograms share one set of bucket bounds, :data:`LATENCY_BOUNDS_MS` (the
same bounds the proxy reports to the control plane), kept in seconds; observing one buckets
the duration at once (:class:`Histogram`). They are rendered in milliseconds, Envoy's unit.

Some series are not kept as cells but summed when ``/stats`` is read (a *collector*): a
listener's ``downstream_rq_xx`` and ``downstream_rq_time`` are the sums of its traffic edges
(:mod:`mapmesh.proxy.telemetry.edges`), which the request path updates anyway.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Final

from mapmesh.proxy.telemetry.events import EventLog

__all__ = [
    "BOUNDS_S",
    "CODE_CLASS",
    "LATENCY_BOUNDS_MS",
    "METRICS",
    "CodeClassCounter",
    "Collector",
    "Counter",
    "FlagCounter",
    "Histogram",
    "Stats",
]

# name -> (type, help). Every metric the proxy exports is declared here.
METRICS: Final[dict[str, tuple[str, str]]] = {
    "downstream_cx_total": ("counter", "Downstream connections accepted."),
    "downstream_cx_active": ("gauge", "Downstream connections open."),
    "downstream_rq_total": ("counter", "Downstream requests received."),
    "downstream_rq_xx": ("counter", "Downstream responses by status class (label code_class)."),
    "downstream_rq_rejected": ("counter", "Requests refused before routing (label reason)."),
    "downstream_rq_time": (
        "histogram",
        "Milliseconds from a request's head to the end of its response (label listener).",
    ),
    "downstream_rq_flags": (
        "counter",
        "Responses by Envoy response flag (labels listener, flag: NR UH UF UC UT URX UO DC DT "
        "DPE UPE RL NC PE; a response with two flags counts under both).",
    ),
    "ratelimit_over_limit": (
        "counter",
        "Requests answered 429 by a rate limit (labels scope gateway_route|listener, name).",
    ),
    "upstream_rq_total": ("counter", "Requests sent upstream (attempts, retries included)."),
    "upstream_rq_xx": ("counter", "Upstream responses by status class (label code_class)."),
    "upstream_rq_5xx": ("counter", "Upstream responses with a 5xx status."),
    "upstream_rq_time": (
        "histogram",
        "Milliseconds from the start of the attempt that answered to the end of its response "
        "(label cluster; retried attempts are not included).",
    ),
    "upstream_rq_retry": ("counter", "Retries attempted."),
    "upstream_rq_retry_limit_exceeded": ("counter", "Retriable failures with no retry left."),
    "upstream_rq_retry_overflow": ("counter", "Retries refused by the retry budget."),
    "upstream_rq_timeout": ("counter", "Requests that hit their per-request timeout."),
    "upstream_rq_per_try_timeout": ("counter", "Attempts that hit their per-try timeout."),
    "upstream_rq_pending_overflow": ("counter", "Requests refused: pending queue full (503)."),
    "upstream_cx_total": ("counter", "Upstream connections opened."),
    "upstream_cx_active": ("gauge", "Upstream connections open."),
    "upstream_cx_connect_fail": ("counter", "Upstream connection attempts that failed."),
    "upstream_cx_connect_timeout": ("counter", "Upstream connection attempts that timed out."),
    "upstream_cx_overflow": ("counter", "Connection-pool overflows (circuit breaker opened)."),
    "upstream_cx_destroy_remote": ("counter", "Upstream connections closed by the peer."),
    "upstream_rq_pending_active": ("gauge", "Requests waiting for an upstream connection."),
    "upstream_rq_active": ("gauge", "Requests in flight upstream."),
    "outlier_detection_ejections_total": ("counter", "Endpoints ejected by outlier detection."),
    "outlier_detection_ejections_active": ("gauge", "Endpoints currently ejected."),
    "health_check_failure": ("counter", "Active health checks that failed."),
    "health_check_success": ("counter", "Active health checks that passed."),
    "membership_healthy": ("gauge", "Endpoints healthy and not ejected."),
    "membership_total": ("gauge", "Endpoints known."),
    "control_plane_connected": ("gauge", "1 while the snapshot stream is connected."),
    "config_version": ("gauge", "Version of the snapshot in force."),
    "config_update_success": ("counter", "Snapshots applied."),
    "config_update_rejected": ("counter", "Snapshots rejected (the last good one stays)."),
    "tracing_requests_sampled": ("counter", "Requests traced (their spans were recorded)."),
    "telemetry_spans_dropped": (
        "counter",
        "Requests whose spans were dropped: the buffer of an exporter was full (label sink "
        "control_plane|otlp).",
    ),
    "telemetry_events_dropped": ("counter", "Events dropped: the event buffer was full."),
    "telemetry_edges_overflow": (
        "counter",
        "Requests counted under destination '-': too many distinct traffic edges.",
    ),
    "telemetry_report_success": ("counter", "Reports accepted by the control plane."),
    "telemetry_report_failure": ("counter", "Reports that failed (retried next interval)."),
    "otlp_export_success": ("counter", "OTLP span batches accepted by the collector."),
    "otlp_export_failure": ("counter", "OTLP span batches that failed (retried once)."),
}

# Upper bounds of the latency buckets, in milliseconds (Prometheus ``le``); one more bucket
# counts what is above the last. Fine below a millisecond, where loopback hops live.
LATENCY_BOUNDS_MS: Final[tuple[float, ...]] = (
    0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
)  # fmt: skip
# The same, in seconds.
BOUNDS_S: Final[tuple[float, ...]] = tuple(bound / 1000 for bound in LATENCY_BOUNDS_MS)

Labels = tuple[tuple[str, str], ...]


def _bucket(seconds: float) -> int:
    """``bisect.bisect_left(BOUNDS_S, seconds)``, written out: compiled, a loop of float
    comparisons is cheaper than calling out to the bisect module."""
    low, high = 0, len(BOUNDS_S)
    while low < high:
        middle = (low + high) >> 1
        if BOUNDS_S[middle] < seconds:
            low = middle + 1
        else:
            high = middle
    return low


# ("code_class", "2xx") by status // 100, built once: the hot path only indexes.
CODE_CLASS: Final[tuple[tuple[str, str], ...]] = tuple(("code_class", f"{i}xx") for i in range(10))


class Counter:
    """One time series' value; the hot path does ``cell.value += 1``."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class Histogram:
    """Latency counts by :data:`LATENCY_BOUNDS_MS` bucket (not cumulative) and their sum, in
    seconds. ``observe`` buckets at once (a binary search of the bounds, compiled): there is
    nothing pending to fold later, so no periodic pass stalls the requests in flight."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS_S) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[_bucket(seconds)] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def add(self, other: Histogram) -> None:
        """Sum ``other`` into this one (collectors build totals this way)."""
        counts = self.counts
        for index, value in enumerate(other.counts):
            counts[index] += value
        self.sum += other.sum


class FlagCounter:
    """``name{labels, flag=...}`` by response flag: a flag's cell is looked up on its first
    use, then kept. Only responses with a flag (errors, local replies) get here."""

    __slots__ = ("_cells", "_labels", "_name", "_stats")

    def __init__(self, stats: Stats, name: str, labels: Labels) -> None:
        self._stats = stats
        self._name = name
        self._labels = labels
        self._cells: dict[str, Counter] = {}

    def add(self, flags: Iterable[str]) -> None:
        for flag in flags:
            cell = self._cells.get(flag)
            if cell is None:
                cell = self._cells[flag] = self._stats.cell(
                    self._name, (*self._labels, ("flag", flag))
                )
            cell.value += 1


class CodeClassCounter:
    """``name{labels, code_class="2xx"}`` by status: the cell of each class is looked up on
    its first use (so only classes that occur are exported), then indexed."""

    __slots__ = ("_cells", "_labels", "_name", "_stats")

    def __init__(self, stats: Stats, name: str, labels: Labels) -> None:
        self._stats = stats
        self._name = name
        self._labels = labels
        self._cells: list[Counter | None] = [None] * 10

    def add(self, status: int) -> None:
        index = min(status // 100, 9)
        cell = self._cells[index]
        if cell is None:
            cell = self._cells[index] = self._stats.cell(
                self._name, (*self._labels, CODE_CLASS[index])
            )
        cell.value += 1


Collector = Callable[[], Iterable[tuple[str, Labels, "int | Histogram"]]]
"""Series computed when ``/stats`` is read: ``(name, labels, value or histogram)``."""


class Stats:
    """Every counter, gauge and histogram of one proxy process, and its :class:`EventLog`
    (``events``: ejections, health transitions, config versions), which the components that
    count things also report events to."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, Labels], Counter] = {}
        self.histograms: dict[tuple[str, Labels], Histogram] = {}
        self.by_status_class: dict[tuple[str, Labels], tuple[list[int], str | None]] = {}
        self._collectors: list[Collector] = []
        self.events = EventLog()

    def cell(self, name: str, labels: Labels = ()) -> Counter:
        """The cell of ``name{labels}``, created at zero: look it up once, add many times."""
        key = (name, labels)
        cell = self.values.get(key)
        if cell is None:
            cell = self.values[key] = Counter()
        return cell

    def by_code_class(self, name: str, labels: Labels) -> CodeClassCounter:
        return CodeClassCounter(self, name, labels)

    def status_classes(
        self, name: str, labels: Labels, *, server_errors: str | None = None
    ) -> list[int]:
        """Counts of ``name{labels, code_class}`` as a list indexed by ``status // 100`` (the
        hot path does ``counts[status // 100] += 1``: statuses have three digits, 0 is a cut
        connection); classes that never occur are not exported. ``server_errors`` also
        exports the 5xx count under that name (``upstream_rq_5xx``)."""
        key = (name, labels)
        entry = self.by_status_class.get(key)
        if entry is None:
            entry = self.by_status_class[key] = ([0] * 10, server_errors)
        return entry[0]

    def by_flag(self, name: str, labels: Labels) -> FlagCounter:
        return FlagCounter(self, name, labels)

    def histogram(self, name: str, labels: Labels = ()) -> Histogram:
        """The histogram cell of ``name{labels}``: look it up once, observe many times."""
        key = (name, labels)
        cell = self.histograms.get(key)
        if cell is None:
            cell = self.histograms[key] = Histogram()
        return cell

    def collect(self, collector: Collector) -> None:
        """Add series that ``collector`` computes at render time."""
        self._collectors.append(collector)

    def inc(self, name: str, labels: Labels = (), by: int = 1) -> None:
        self.cell(name, labels).value += by

    def set(self, name: str, value: int, labels: Labels = ()) -> None:
        self.cell(name, labels).value = value

    def get(self, name: str, labels: Labels = ()) -> int:
        cell = self.values.get((name, labels))
        return cell.value if cell is not None else 0

    def render(self, prefix: str = "mapmesh_") -> str:
        """Prometheus text exposition format 0.0.4."""
        by_name: defaultdict[str, list[tuple[Labels, int | Histogram]]] = defaultdict(list)
        for (name, labels), cell in self.values.items():
            by_name[name].append((labels, cell.value))
        for (name, labels), histogram in self.histograms.items():
            by_name[name].append((labels, histogram))
        for (name, labels), (counts, server_errors) in self.by_status_class.items():
            for index, count in enumerate(counts):
                if count:
                    by_name[name].append(((*labels, CODE_CLASS[index]), count))
            if server_errors is not None:
                by_name[server_errors].append((labels, counts[5]))
        for collector in self._collectors:
            for name, labels, value in collector():
                by_name[name].append((labels, value))
        lines: list[str] = []
        for name in sorted(by_name):
            kind, help_text = METRICS.get(name, ("untyped", ""))
            full = prefix + name
            lines.append(f"# HELP {full} {help_text}")
            lines.append(f"# TYPE {full} {kind}")
            for labels, value in sorted(by_name[name], key=lambda item: item[0]):
                if isinstance(value, Histogram):
                    lines.extend(_histogram_lines(full, labels, value))
                else:
                    lines.append(f"{full}{_labels(labels)} {value}")
        return "\n".join(lines) + "\n"


def _histogram_lines(full: str, labels: Labels, histogram: Histogram) -> list[str]:
    """``_bucket`` (cumulative, ``le`` in ms), ``_sum`` (ms) and ``_count`` lines."""
    lines = []
    total = 0
    for bound, count in zip((*LATENCY_BOUNDS_MS, "+Inf"), histogram.counts, strict=True):
        total += count
        le = bound if isinstance(bound, str) else f"{bound:g}"
        lines.append(f"{full}_bucket{_labels((*labels, ('le', le)))} {total}")
    lines.append(f"{full}_sum{_labels(labels)} {round(histogram.sum * 1000, 6)!r}")
    lines.append(f"{full}_count{_labels(labels)} {total}")
    return lines


def _labels(labels: Iterable[tuple[str, str]]) -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in labels]
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
