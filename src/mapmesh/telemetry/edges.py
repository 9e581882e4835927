"""Per-edge traffic over time: fixed time buckets, summed over a node's instances.

Theory of operation
-------------------
An *edge* is what one proxy identity (mesh, kind, node) sent in one direction to one
destination through one cluster; every instance of the node adds into the same edge. Time is
cut into buckets of :data:`BUCKET_SECONDS` (the proxies' default report interval, so a bucket
is one report per instance). A report is filed under the bucket of the moment it *arrives*:
the control plane's clock is the only one trusted, so a proxy with a wrong clock cannot push
its numbers out of (or into) a window.

A bucket holds the request count, counts per status class and response flag, and a latency
histogram per bounds set (:mod:`mapmesh.telemetry.histogram`). Buckets of an edge sit in a
deque in time order; adding is O(1) (merge into the newest bucket or append one), and buckets
older than :data:`KEEP_SECONDS` fall off the front when the edge is touched or swept. Reading a
window walks the newest buckets back to the window's start: O(buckets in the window).

Bounds: at most ``KEEP_SECONDS / BUCKET_SECONDS`` buckets per edge, and the store caps the
number of edges (:class:`~mapmesh.telemetry.store.TelemetryStore`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from mapmesh.telemetry.histogram import Bounds, add_counts, percentile
from mapmesh.telemetry.report import STATUS_CLASSES, EdgeReport

__all__ = [
    "BUCKET_SECONDS",
    "KEEP_SECONDS",
    "EdgeKey",
    "EdgeSeries",
    "EdgeWindow",
    "WindowSum",
]

BUCKET_SECONDS = 2.0
KEEP_SECONDS = 900.0  # 15 minutes
_KEEP_BUCKETS = int(KEEP_SECONDS / BUCKET_SECONDS)
_ERROR_CLASSES = ("5xx", "0xx")
_STATUS_INDEX = {key: index for index, key in enumerate(STATUS_CLASSES)}


@dataclass(frozen=True, slots=True, order=True)
class EdgeKey:
    """One edge: who sent (mesh, kind, node), which way, to what, through which cluster."""

    mesh: str
    kind: str
    node: str
    direction: str
    destination: str
    cluster: str | None


class _Bucket:
    """One time bucket of one edge, kept lean (there may be ~10⁵ of them): status counts in
    a list by :data:`STATUS_CLASSES` position, flags and extra histograms only when present."""

    __slots__ = ("bounds", "counts", "flags", "index", "others", "requests", "status")

    def __init__(self, index: int) -> None:
        self.index = index
        self.requests = 0
        self.status = [0] * len(STATUS_CLASSES)
        self.flags: dict[str, int] | None = None
        self.bounds: Bounds = ()
        self.counts: list[int] | None = None  # the histogram for ``bounds``
        self.others: dict[Bounds, list[int]] | None = None  # histograms with other bounds

    def add(self, edge: EdgeReport) -> None:
        self.requests += edge.requests
        for key, count in edge.status:
            self.status[_STATUS_INDEX[key]] += count
        if edge.flags:
            flags = self.flags if self.flags is not None else {}
            for key, count in edge.flags:
                flags[key] = flags.get(key, 0) + count
            self.flags = flags
        if not edge.counts:
            return
        if self.counts is None:
            self.bounds, self.counts = edge.bounds, list(edge.counts)
        elif edge.bounds == self.bounds:
            add_counts(self.counts, edge.counts)
        else:
            others = self.others if self.others is not None else {}
            counts = others.get(edge.bounds)
            if counts is None:
                others[edge.bounds] = list(edge.counts)
            else:
                add_counts(counts, edge.counts)
            self.others = others

    def histograms(self) -> list[tuple[Bounds, list[int]]]:
        found = [(self.bounds, self.counts)] if self.counts is not None else []
        if self.others:
            found.extend(self.others.items())
        return found


@dataclass(frozen=True, slots=True)
class EdgeWindow:
    """An edge summed over a window: the numbers ``/v1/topology`` and ``mapmesh top`` show.

    ``error_rate`` = (5xx + 0xx) / requests: answers that were server errors, whether the
    upstream or the proxy produced them (503 no healthy upstream, 504 timeout), plus requests
    cut before any answer. 4xx answers (404 no route, 429 rate limited) are the caller's side.
    """

    requests: int
    rps: float
    error_rate: float
    p50_ms: float | None
    p99_ms: float | None
    status: dict[str, int]
    flags: dict[str, int]


class WindowSum:
    """Sums buckets of one or more edges over one window (edges that the map draws as one,
    such as two ports of the same target node, merge exactly: histograms add per bounds)."""

    __slots__ = ("flags", "latency", "requests", "seen", "status")

    def __init__(self) -> None:
        self.requests = 0
        self.status: dict[str, int] = {}
        self.flags: dict[str, int] = {}
        self.latency: dict[Bounds, list[int]] = {}
        self.seen = False

    def add(self, bucket: _Bucket) -> None:
        self.seen = True
        self.requests += bucket.requests
        for key, count in zip(STATUS_CLASSES, bucket.status, strict=True):
            if count:
                self.status[key] = self.status.get(key, 0) + count
        for key, count in (bucket.flags or {}).items():
            self.flags[key] = self.flags.get(key, 0) + count
        for bounds, counts in bucket.histograms():
            into = self.latency.get(bounds)
            if into is None:
                self.latency[bounds] = list(counts)
            else:
                add_counts(into, counts)

    def result(self, seconds: float) -> EdgeWindow | None:
        """The window's numbers; None when no bucket was added."""
        if not self.seen:
            return None
        requests, status = self.requests, self.status
        errors = sum(status.get(key, 0) for key in _ERROR_CLASSES)
        return EdgeWindow(
            requests=requests,
            rps=requests / seconds,
            error_rate=min(errors / requests, 1.0) if requests else 0.0,
            p50_ms=percentile(self.latency, 0.5),
            p99_ms=percentile(self.latency, 0.99),
            status=dict(sorted(status.items())),
            flags=dict(sorted(self.flags.items())),
        )


class EdgeSeries:
    """The buckets of one edge, oldest first."""

    __slots__ = ("_buckets",)

    def __init__(self) -> None:
        self._buckets: deque[_Bucket] = deque()

    @staticmethod
    def bucket_of(now: float) -> int:
        return int(now // BUCKET_SECONDS)

    def add(self, edge: EdgeReport, now: float) -> None:
        index = self.bucket_of(now)
        buckets = self._buckets
        # A clock that stepped back files into the newest bucket instead of reordering.
        if not buckets or buckets[-1].index < index:
            buckets.append(_Bucket(index))
        buckets[-1].add(edge)
        self.expire(now)

    def expire(self, now: float) -> None:
        """Drop buckets older than KEEP_SECONDS."""
        oldest = self.bucket_of(now) - _KEEP_BUCKETS
        buckets = self._buckets
        while buckets and buckets[0].index <= oldest:
            buckets.popleft()

    @property
    def empty(self) -> bool:
        return not self._buckets

    def __len__(self) -> int:
        return len(self._buckets)

    def sum_into(self, total: WindowSum, now: float, seconds: float) -> None:
        """Add the buckets of the last ``seconds`` (whole buckets, newest first) to ``total``."""
        first = self.bucket_of(now - seconds) + 1
        for bucket in reversed(self._buckets):
            if bucket.index < first:
                break
            total.add(bucket)

    def window(self, now: float, seconds: float) -> EdgeWindow | None:
        """This edge's sums over the last ``seconds``; None if nothing was sent."""
        total = WindowSum()
        self.sum_into(total, now, seconds)
        return total.result(seconds)
