"""Token-bucket rate limiting: admit a request or say how long until one would be admitted.

Theory of operation
-------------------
A bucket holds at most ``burst`` tokens and starts full. Tokens flow in continuously at
``rate`` per second; each request takes one. When less than one token is left the request is
refused, and :meth:`TokenBucket.take` returns the seconds until a whole token will be there —
what the proxy turns into ``429`` with ``Retry-After`` (:func:`retry_after`). A refused
request takes nothing, so refusals do not push the next admission further away.

Over any window of ``t`` seconds a bucket admits at most ``burst + rate * t`` requests, and a
client that keeps asking is admitted ``rate`` per second on average once the burst is spent.

The state is two floats — the tokens, and the time they were counted — refilled lazily on each
call: ``tokens = min(burst, tokens + (now - last) * rate)``. No timer, O(1) per request, and
an admission allocates nothing (it returns the constant ``0.0``).

Prior art and approximations: Envoy's local rate limit is the same bucket, but refilled in
steps (``tokens_per_fill`` every ``fill_interval``) by a timer; refilling continuously on use
needs no timer and has no step edges. Arithmetic is in floats, with a tolerance of 1e-9 token
so that exactly one refill interval always yields a token. A clock that goes backwards counts
as no time passing. Each proxy process has its own buckets, so N replicas of a proxy admit up
to N times the limit (as Envoy's *local* rate limit does; mapmesh has no global limit service).
Time is a parameter (``now``, seconds of the caller's monotonic clock), never read here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

__all__ = ["BucketStatistics", "TokenBucket", "retry_after"]

_EPSILON: Final = 1e-9


@dataclass(frozen=True, slots=True)
class BucketStatistics:
    rate: float
    burst: int
    tokens: float
    admitted: int
    limited: int


class TokenBucket:
    """``burst`` tokens at most, ``rate`` tokens per second flowing in; full at ``now``."""

    __slots__ = ("_last", "_tokens", "admitted", "burst", "limited", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if not rate > 0:
            raise ValueError(f"rate: must be > 0 tokens per second, got {rate}")
        if burst < 1:
            raise ValueError(f"burst: must be >= 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now
        self.admitted = 0
        self.limited = 0

    def take(self, now: float) -> float:
        """Take a token: ``0.0`` when one was there (admit), else the seconds until one will
        be (refuse; nothing is taken)."""
        elapsed = now - self._last
        if elapsed > 0:
            tokens = self._tokens + elapsed * self.rate
            self._tokens = tokens if tokens < self.burst else float(self.burst)
            self._last = now
        if self._tokens >= 1.0 - _EPSILON:
            self._tokens -= 1.0
            self.admitted += 1
            return 0.0
        self.limited += 1
        return (1.0 - self._tokens) / self.rate

    def tokens(self, now: float) -> float:
        """The tokens there would be at ``now`` (no change to the bucket)."""
        elapsed = max(now - self._last, 0.0)
        return min(float(self.burst), self._tokens + elapsed * self.rate)

    def statistics(self, now: float) -> BucketStatistics:
        return BucketStatistics(
            self.rate, self.burst, self.tokens(now), self.admitted, self.limited
        )

    def __repr__(self) -> str:
        return (
            f"TokenBucket(rate={self.rate:g}/s, burst={self.burst}, tokens={self._tokens:.3f}, "
            f"admitted={self.admitted}, limited={self.limited})"
        )


def retry_after(wait: float) -> int:
    """The ``Retry-After`` value for a refusal ``wait`` seconds from a token: whole seconds,
    rounded up, at least 1 (HTTP has no fractions there, and 0 would invite a hot loop)."""
    return max(1, math.ceil(wait))
