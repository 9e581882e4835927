"""Invariants of the token bucket under random request times.

1. Never more than ``burst + rate * t`` admissions in any window of ``t`` seconds.
2. A refusal's wait is exact: asking again after it is admitted, and not much before.
3. A client that keeps asking gets the rate: over ``T`` seconds at least
   ``burst + rate * T - 1`` admissions.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mapmesh.proxy.resilience.ratelimit import TokenBucket, retry_after

rates = st.floats(min_value=0.1, max_value=1000.0, allow_nan=False)
bursts = st.integers(min_value=1, max_value=50)
gaps = st.lists(st.floats(min_value=0.0, max_value=2.0, allow_nan=False), max_size=200)


@settings(max_examples=200, deadline=None)
@given(rate=rates, burst=bursts, gaps=gaps)
def test_no_window_admits_more_than_burst_plus_rate_times_its_length(
    rate: float, burst: int, gaps: list[float]
) -> None:
    bucket = TokenBucket(rate, burst, now=0.0)
    now, admitted = 0.0, []
    for gap in gaps:
        now += gap
        if bucket.take(now) == 0.0:
            admitted.append(now)
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            count = j - i + 1
            assert count <= burst + rate * (admitted[j] - start) + 1e-6


@settings(max_examples=200, deadline=None)
@given(rate=rates, burst=bursts, gaps=gaps)
def test_the_wait_a_refusal_names_is_exact(rate: float, burst: int, gaps: list[float]) -> None:
    bucket = TokenBucket(rate, burst, now=0.0)
    now = 0.0
    for gap in gaps:
        now += gap
        wait = bucket.take(now)
        if wait:
            assert wait > 0
            assert retry_after(wait) >= 1
            assert bucket.tokens(now + wait * 0.99) < 1.0
            assert bucket.tokens(now + wait) >= 1.0 - 1e-6


@settings(max_examples=100, deadline=None)
@given(rate=rates, burst=bursts, seconds=st.floats(min_value=0.1, max_value=10.0))
def test_a_client_that_keeps_asking_gets_the_rate(rate: float, burst: int, seconds: float) -> None:
    bucket = TokenBucket(rate, burst, now=0.0)
    now, admitted = 0.0, 0
    while now <= seconds and admitted < 100_000:
        wait = bucket.take(now)
        if wait == 0.0:
            admitted += 1
        else:
            now += wait
    assert admitted >= burst + rate * seconds - 1
