"""Rate limits: the token bucket, the limiters a config holds, and the extension that
configures them, from the stored resource to the snapshot and ``mapmesh explain``."""

from __future__ import annotations

import dataclasses
import random

import pytest

from mapmesh.mesh.extensions import Extensions, check_extensions
from mapmesh.mesh.records import MeshResource
from mapmesh.model import snapshot
from mapmesh.proxy.config import NO_RATE_LIMIT, ClusterSet, RateLimiter, RateLimiterSet
from mapmesh.proxy.config import build_config as build
from mapmesh.proxy.resilience.ratelimit import TokenBucket, retry_after
from mapmesh.proxy.stats import Stats
from mapmesh.xds import WarningCode, explain, render_text
from tests.unit.test_compiler import compile_node, http_listener, replace, walkthrough_mesh


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- the bucket ------------------------------------------------------------------------------


def test_a_full_bucket_admits_its_burst_then_refuses_with_the_wait() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    # Empty: the next token is half a second away (2 per second).
    assert bucket.take(0.0) == pytest.approx(0.5)
    # A refusal takes nothing: a quarter second later the wait is a quarter second.
    assert bucket.take(0.25) == pytest.approx(0.25)
    assert bucket.take(0.5) == 0.0
    assert (bucket.admitted, bucket.limited) == (4, 2)


def test_tokens_refill_continuously_up_to_the_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=5, now=0.0)
    for _ in range(5):
        bucket.take(0.0)
    assert bucket.tokens(0.35) == pytest.approx(3.5)
    # A long idle period fills the bucket to its burst, never beyond.
    assert bucket.tokens(3600.0) == 5.0
    admitted = sum(1 for _ in range(10) if bucket.take(3600.0) == 0.0)
    assert admitted == 5


def test_exactly_one_interval_yields_a_token_despite_float_rounding() -> None:
    bucket = TokenBucket(rate=20.0, burst=1, now=0.0)
    now = 0.0
    for _ in range(1000):
        assert bucket.take(now) == 0.0
        now += 0.05
    assert bucket.limited == 0


def test_a_clock_going_backwards_counts_as_no_time() -> None:
    bucket = TokenBucket(rate=1.0, burst=1, now=10.0)
    assert bucket.take(10.0) == 0.0
    assert bucket.take(5.0) == pytest.approx(1.0)
    assert bucket.take(10.5) == pytest.approx(0.5)


def test_per_minute_limits_and_retry_after_in_whole_seconds() -> None:
    bucket = TokenBucket(rate=6 / 60, burst=1, now=0.0)  # 6 per minute
    assert bucket.take(0.0) == 0.0
    wait = bucket.take(1.0)
    assert wait == pytest.approx(9.0)
    assert retry_after(wait) == 9
    assert retry_after(0.01) == 1  # never 0: that would invite a hot loop
    assert retry_after(2.0001) == 3


def test_a_bucket_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=0.0, burst=1, now=0.0)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(rate=1.0, burst=0, now=0.0)


# -- limiters in a config --------------------------------------------------------------------


def limit(requests: int = 2, burst: int | None = None, per_ms: int = 1000) -> snapshot.RateLimit:
    return snapshot.RateLimit(
        requests=requests,
        per_ms=per_ms,
        burst=requests if burst is None else burst,
        defaulted=("burst",) if burst is None else (),
    )


def test_an_over_limit_request_is_counted_and_told_when_to_come_back() -> None:
    stats, clock = Stats(), FakeClock()
    labels = (("scope", "gateway_route"), ("name", "api"))
    limiter = RateLimiter(limit(2, per_ms=60_000), "gateway route api", labels, stats, clock)
    assert limiter.check() is None
    assert limiter.check() is None
    throttled = limiter.check()
    assert throttled is not None
    assert throttled.reason == "rate limited: gateway route api allows 2 requests per minute"
    assert throttled.headers == ((b"retry-after", b"30"),)
    assert stats.get("ratelimit_over_limit", labels) == 1
    assert NO_RATE_LIMIT.check() is None


def gateway_snapshot(api_limit: snapshot.RateLimit | None) -> snapshot.Snapshot:
    """The walkthrough's gateway with two routes: ``to-worker`` limited, ``other`` not."""
    base = compile_node("ingress", kind="virtualGateway").snapshot
    route = base.gateway_routes[0]
    routes = (
        dataclasses.replace(route, rate_limit=api_limit),
        dataclasses.replace(route, name="other"),
    )
    return dataclasses.replace(base, gateway_routes=routes)


def test_buckets_survive_a_snapshot_swap_while_their_limit_is_unchanged() -> None:
    stats, clock = Stats(), FakeClock()
    limits = RateLimiterSet(stats, clock)
    clusters = ClusterSet(stats, clock, random.Random(1))
    snap = gateway_snapshot(limit(2))
    first = build(snap, 1, clusters, limits)
    route_limiter = first.gateway_limits[0]
    assert isinstance(route_limiter, RateLimiter)
    assert first.gateway_limits[1] is NO_RATE_LIMIT
    assert route_limiter.check() is None and route_limiter.check() is None
    assert route_limiter.check() is not None  # empty

    # An unrelated change (the egress filter): same limiter, still empty.
    changed = dataclasses.replace(snap, egress_filter="ALLOW_ALL")
    second = build(changed, 2, clusters, limits)
    assert second.gateway_limits[0] is route_limiter
    assert route_limiter.check() is not None

    # A changed limit starts a fresh, full bucket.
    third = build(gateway_snapshot(limit(3)), 3, clusters, limits)
    assert third.gateway_limits[0] is not route_limiter
    assert third.gateway_limits[0].check() is None
    clusters.close()


def test_the_inbound_limit_is_the_first_listeners() -> None:
    stats, clock = Stats(), FakeClock()
    base = compile_node("worker-v1").snapshot
    listener = dataclasses.replace(base.listeners[0], rate_limit=limit(1))
    snap = dataclasses.replace(base, listeners=(listener,))
    gateway, inbound = RateLimiterSet(stats, clock).reconcile(snap)
    assert gateway == ()
    assert isinstance(inbound, RateLimiter)
    assert inbound.check() is None
    throttled = inbound.check()
    assert throttled is not None
    assert throttled.reason == "rate limited: listener 8080 allows 1 request per second"
    assert stats.get("ratelimit_over_limit", (("scope", "listener"), ("name", "8080"))) == 1


# -- the extension ---------------------------------------------------------------------------


def test_extensions_have_one_canonical_wire_form() -> None:
    parsed = Extensions.from_wire(
        {
            "listeners": [
                {"port": 9090, "rateLimit": {"requestsPerUnit": 5, "unit": "minute", "burst": 2}},
                {"port": 8080, "rateLimit": {"requestsPerUnit": 10, "unit": "second"}},
                {"port": 7070},
            ]
        }
    )
    assert parsed.wire() == {
        "listeners": [
            {"port": 8080, "rateLimit": {"requestsPerUnit": 10, "unit": "second"}},
            {"port": 9090, "rateLimit": {"requestsPerUnit": 5, "unit": "minute", "burst": 2}},
        ]
    }
    assert Extensions.from_wire({}).empty
    with pytest.raises(ValueError, match="requestsPerUnit"):
        Extensions.from_wire({"rateLimit": {"requestsPerUnit": 0, "unit": "second"}})


def test_extension_checks_name_the_field() -> None:
    spec = {"listeners": [http_listener(8080)]}
    node = Extensions.from_wire(
        {
            "listeners": [
                {"port": 8080, "rateLimit": {"requestsPerUnit": 1, "unit": "second"}},
                {"port": 9090, "rateLimit": {"requestsPerUnit": 1, "unit": "second"}},
            ]
        }
    )
    assert check_extensions("virtualNode", node, spec) == [
        "extensions.listeners[1].port: the virtualNode has no listener on port 9090"
    ]
    route = Extensions.from_wire({"rateLimit": {"requestsPerUnit": 1, "unit": "second"}})
    assert check_extensions("gatewayRoute", route, {}) == []
    assert check_extensions("virtualService", route, {}) == [
        "extensions.rateLimit: a virtualService takes no rateLimit (only a gatewayRoute)"
    ]


def with_extensions(kind: str, name: str, extensions: dict[str, object]) -> MeshResource:
    original = next(r for r in walkthrough_mesh() if r.kind == kind and r.name == name)
    return original.model_copy(update={"extensions": Extensions.from_wire(extensions)})


def test_the_compiler_puts_rate_limits_on_gateway_routes_and_node_listeners() -> None:
    gateway_route = with_extensions(
        "gatewayRoute", "to-worker", {"rateLimit": {"requestsPerUnit": 20, "unit": "second"}}
    )
    node = with_extensions(
        "virtualNode",
        "worker-v1",
        {
            "listeners": [
                {"port": 8080, "rateLimit": {"requestsPerUnit": 6, "unit": "minute", "burst": 2}},
                {"port": 9999, "rateLimit": {"requestsPerUnit": 1, "unit": "second"}},
            ]
        },
    )
    resources = replace(walkthrough_mesh(), gateway_route, node)

    gateway = compile_node("ingress", resources=resources, kind="virtualGateway")
    assert gateway.snapshot.gateway_routes[0].rate_limit == snapshot.RateLimit(
        requests=20, per_ms=1000, burst=20, defaulted=("burst",)
    )
    text = render_text(explain(gateway.snapshot))
    assert "rate limit: requests 20 (configured), per 1 s (configured), burst 20 (default)" in text

    sidecar = compile_node("worker-v1", resources=resources)
    listener = sidecar.snapshot.listeners[0]
    assert listener.rate_limit == snapshot.RateLimit(requests=6, per_ms=60_000, burst=2)
    assert [w.code for w in sidecar.warnings if "9999" in w.message] == [WarningCode.PORT_NOT_FOUND]
    assert "rate limit: requests 6, per 1 min, burst 2 (all configured)" in render_text(
        explain(sidecar.snapshot)
    )


def test_without_extensions_nothing_changes_in_the_snapshot_bytes() -> None:
    result = compile_node("frontend")
    assert b"rate_limit" not in snapshot.encode(result.snapshot)
    document = explain(result.snapshot)
    assert document["listeners"][0]["rate_limit"] == {"value": None, "source": "default"}
    assert "rate limit: off (default)" in render_text(document)
