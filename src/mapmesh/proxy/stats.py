"""Counters and gauges of the data plane, rendered in Prometheus' text format.

Names follow Envoy's where one exists (``upstream_rq_total``, ``upstream_rq_retry``,
``upstream_cx_overflow`` ...), each with a ``mapmesh_`` prefix and labels for the cluster or
listener. A metric is declared once, in :data:`METRICS`, with its help text; the hot path
holds :class:`Counter` cells it looked up once (per connection, cluster or listener) and
adds to them — no dict lookup, tuple or object per request.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

__all__ = ["CODE_CLASS", "METRICS", "CodeClassCounter", "Counter", "Stats"]

# name -> (type, help). Every metric the proxy exports is declared here.
METRICS: dict[str, tuple[str, str]] = {
    "downstream_cx_total": ("counter", "Downstream connections accepted."),
    "downstream_cx_active": ("gauge", "Downstream connections open."),
    "downstream_rq_total": ("counter", "Downstream requests received."),
    "downstream_rq_xx": ("counter", "Downstream responses by status class (label code_class)."),
    "downstream_rq_rejected": ("counter", "Requests refused before routing (label reason)."),
    "ratelimit_over_limit": (
        "counter",
        "Requests answered 429 by a rate limit (labels scope gateway_route|listener, name).",
    ),
    "upstream_rq_total": ("counter", "Requests sent upstream (attempts, retries included)."),
    "upstream_rq_xx": ("counter", "Upstream responses by status class (label code_class)."),
    "upstream_rq_5xx": ("counter", "Upstream responses with a 5xx status."),
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
}

Labels = tuple[tuple[str, str], ...]

# ("code_class", "2xx") by status // 100, built once: the hot path only indexes.
CODE_CLASS: tuple[tuple[str, str], ...] = tuple(("code_class", f"{i}xx") for i in range(10))


class Counter:
    """One time series' value; the hot path does ``cell.value += 1``."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


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


class Stats:
    def __init__(self) -> None:
        self.values: dict[tuple[str, Labels], Counter] = {}

    def cell(self, name: str, labels: Labels = ()) -> Counter:
        """The cell of ``name{labels}``, created at zero: look it up once, add many times."""
        key = (name, labels)
        cell = self.values.get(key)
        if cell is None:
            cell = self.values[key] = Counter()
        return cell

    def by_code_class(self, name: str, labels: Labels) -> CodeClassCounter:
        return CodeClassCounter(self, name, labels)

    def inc(self, name: str, labels: Labels = (), by: int = 1) -> None:
        self.cell(name, labels).value += by

    def set(self, name: str, value: int, labels: Labels = ()) -> None:
        self.cell(name, labels).value = value

    def get(self, name: str, labels: Labels = ()) -> int:
        cell = self.values.get((name, labels))
        return cell.value if cell is not None else 0

    def render(self, prefix: str = "mapmesh_") -> str:
        """Prometheus text exposition format 0.0.4."""
        by_name: defaultdict[str, list[tuple[Labels, int]]] = defaultdict(list)
        for (name, labels), cell in self.values.items():
            by_name[name].append((labels, cell.value))
        lines: list[str] = []
        for name in sorted(by_name):
            kind, help_text = METRICS.get(name, ("untyped", ""))
            full = prefix + name
            lines.append(f"# HELP {full} {help_text}")
            lines.append(f"# TYPE {full} {kind}")
            for labels, value in sorted(by_name[name]):
                lines.append(f"{full}{_labels(labels)} {value}")
        return "\n".join(lines) + "\n"


def _labels(labels: Iterable[tuple[str, str]]) -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in labels]
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
