"""Latency histograms: merging reports and reading percentiles out of them.

Proxies report each edge's latencies as bucket counts over increasing upper bounds (``counts[i]``
= requests in ``(bounds[i-1], bounds[i]]``, the first bucket starting at 0, one extra count
above the last bound). Summing histograms that share bounds is exact, so the store keeps sums
per bounds and only estimates when a percentile is asked for.

Percentile estimate (the algorithm Prometheus's ``histogram_quantile`` uses, generalised):
each bucket's count is taken as spread uniformly over its interval, which makes the cumulative
count F(x) piecewise linear; the p-th percentile is the x where F reaches p% of the total,
found by walking the interval ends in order and interpolating linearly inside the interval
that crosses it. Counts above the last bound have no upper end; they sit at the last bound, so
a percentile landing there reads as the last bound (a lower bound of the truth). Histograms
with different bounds (proxies of different versions) merge the same way: every bucket of
every bounds set is one uniform interval. Cost: O(S²) for S buckets in all (S is ~14 per
bounds set, so a few hundred operations).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

__all__ = ["Bounds", "add_counts", "percentile"]

Bounds = tuple[float, ...]
"""Increasing upper bounds in milliseconds; counts have one more entry (above the last)."""


def add_counts(into: list[int], counts: Sequence[int]) -> None:
    """Add ``counts`` to ``into`` element-wise (both for the same bounds)."""
    for index, count in enumerate(counts):
        into[index] += count


def _segments(histograms: Mapping[Bounds, Sequence[int]]) -> list[tuple[float, float, int]]:
    segments: list[tuple[float, float, int]] = []
    for bounds, counts in histograms.items():
        lower = 0.0
        for upper, count in zip(bounds, counts, strict=False):
            if count:
                segments.append((min(lower, upper), upper, count))
            lower = upper
        overflow = counts[len(bounds)] if len(counts) > len(bounds) else 0
        if overflow and bounds:
            segments.append((bounds[-1], bounds[-1], overflow))
    return segments


def _cumulative(segments: Iterable[tuple[float, float, int]], x: float, *, left: bool) -> float:
    """F(x): the count at or below ``x`` (strictly below for point masses when ``left``)."""
    total = 0.0
    for lower, upper, count in segments:
        if upper == lower:
            if x > upper or (x == upper and not left):
                total += count
        elif x >= upper:
            total += count
        elif x > lower:
            total += count * (x - lower) / (upper - lower)
    return total


def percentile(histograms: Mapping[Bounds, Sequence[int]], fraction: float) -> float | None:
    """The ``fraction`` (0..1) percentile in ms over all ``histograms``; None when empty."""
    segments = _segments(histograms)
    total = sum(count for _, _, count in segments)
    if total == 0:
        return None
    target = min(max(fraction, 0.0), 1.0) * total
    points = sorted({p for lower, upper, _ in segments for p in (lower, upper)})
    previous_x = points[0]
    previous_f = _cumulative(segments, previous_x, left=False)
    if previous_f >= target:
        return previous_x
    for x in points[1:]:
        before_jump = _cumulative(segments, x, left=True)
        if before_jump >= target:
            span = before_jump - previous_f
            share = (target - previous_f) / span if span > 0 else 1.0
            return previous_x + share * (x - previous_x)
        after_jump = _cumulative(segments, x, left=False)
        if after_jump >= target:
            return x
        previous_x, previous_f = x, after_jump
    return points[-1]
