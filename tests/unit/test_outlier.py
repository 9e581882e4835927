"""Endpoint health as the proxy keeps it: outlier ejection (passive) and active health checks.

Time is plain seconds on a clock the test moves; nothing sleeps.
"""

from __future__ import annotations

import pytest

from mapmesh.model import snapshot
from mapmesh.proxy.lb import RoundRobin
from mapmesh.proxy.resilience import (
    ClusterHealth,
    Ejection,
    EjectionSkipped,
    EndpointHealth,
    Failure,
    NoHealthCheck,
    NullOutlierDetector,
    OutlierDetector,
    Transition,
    health_tracker,
    outlier_detector,
)

A, B, C = "10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"


def config(
    max_server_errors: int = 3,
    interval_ms: int = 10_000,
    base_ejection_ms: int = 30_000,
    max_ejection_percent: int = 50,
) -> snapshot.OutlierDetection:
    return snapshot.OutlierDetection(
        max_server_errors=max_server_errors,
        interval_ms=interval_ms,
        base_ejection_ms=base_ejection_ms,
        max_ejection_percent=max_ejection_percent,
    )


def fail(detector: OutlierDetector[str], key: str, times: int, now: float) -> object:
    verdict: object = None
    for _ in range(times):
        verdict = detector.observe(key, 503, now)
    return verdict


# -- ejection ------------------------------------------------------------------------------------


def test_the_story_of_two_endpoints_and_a_fifty_percent_cap() -> None:
    detector = OutlierDetector(config(), [A, B])

    # Three 5xx in a row from A eject it for 30 s.
    assert detector.observe(A, 500, now=0.0) is None
    assert detector.observe(A, 502, now=0.1) is None
    ejection = detector.observe(A, 503, now=0.2)
    assert ejection == Ejection(A, until=30.2, multiplier=1, times_ejected=1)
    assert detector.is_ejected(A)

    # B fails three times too, but ejecting it would eject 100% > 50%: B stays.
    assert fail(detector, B, 3, now=1.0) == EjectionSkipped(B)
    assert not detector.is_ejected(B)

    # A is back 30 s later, not a moment before.
    assert detector.tick(now=30.1) == ()
    assert detector.next_expiry() == 30.2
    assert detector.tick(now=30.2) == (A,)
    assert not detector.is_ejected(A)
    assert detector.next_expiry() is None

    # A fails again right away: the second ejection lasts 60 s.
    second = fail(detector, A, 3, now=31.0)
    assert second == Ejection(A, until=91.0, multiplier=2, times_ejected=2)

    stats = detector.statistics()
    assert (stats.ejections_total, stats.ejections_active, stats.ejections_overflow) == (2, 1, 1)
    assert stats.by_endpoint[A].times_ejected == 2
    assert stats.by_endpoint[B].consecutive_errors == 0


def test_a_success_in_between_resets_the_count() -> None:
    detector = OutlierDetector(config(), [A, B])
    fail(detector, A, 2, now=0.0)
    detector.observe(A, 200, now=0.0)
    assert fail(detector, A, 2, now=0.0) is None
    assert not detector.is_ejected(A)
    detector.observe(A, 404, now=0.0)  # a 4xx is the client's problem: also a reset
    assert fail(detector, A, 2, now=0.0) is None


def test_local_failures_count_like_5xx() -> None:
    """Envoy's default (split_external_local_origin_errors: false): a connect failure, a
    reset or a per-try timeout is an error of the endpoint."""
    detector = OutlierDetector(config(), [A, B])
    detector.observe(A, Failure.CONNECT_FAILURE, now=0.0)
    detector.observe(A, Failure.CONNECTION_RESET, now=0.0)
    assert isinstance(detector.observe(A, Failure.PER_TRY_TIMEOUT, now=0.0), Ejection)


def test_interval_is_not_a_counting_window() -> None:
    """Three errors spread over minutes still count: Envoy's consecutive_5xx has no window."""
    detector = OutlierDetector(config(interval_ms=1_000), [A, B])
    detector.observe(A, 500, now=0.0)
    detector.observe(A, 500, now=100.0)
    assert isinstance(detector.observe(A, 500, now=200.0), Ejection)


def test_requests_finishing_on_an_ejected_endpoint_are_ignored() -> None:
    detector = OutlierDetector(config(), [A, B])
    fail(detector, A, 3, now=0.0)
    assert fail(detector, A, 10, now=1.0) is None
    assert detector.statistics().by_endpoint[A].consecutive_errors == 0
    assert detector.statistics().ejections_total == 1


def test_at_least_one_endpoint_can_be_ejected_whatever_the_percent() -> None:
    """10% of 5 endpoints rounds down to none; App Mesh still ejects one."""
    keys = [f"10.0.0.{i}:80" for i in range(5)]
    detector = OutlierDetector(config(max_ejection_percent=10), keys)
    assert detector.max_ejected() == 1
    assert isinstance(fail(detector, keys[0], 3, now=0.0), Ejection)
    assert isinstance(fail(detector, keys[1], 3, now=0.0), EjectionSkipped)


def test_ten_endpoints_and_thirty_percent_allow_three() -> None:
    keys = [f"10.0.0.{i}:80" for i in range(10)]
    detector = OutlierDetector(config(max_ejection_percent=30), keys)
    verdicts = [fail(detector, key, 3, now=0.0) for key in keys[:5]]
    assert [type(v) for v in verdicts] == [Ejection] * 3 + [EjectionSkipped] * 2


def test_a_skipped_endpoint_needs_a_fresh_run_of_errors() -> None:
    detector = OutlierDetector(config(), [A, B])
    fail(detector, A, 3, now=0.0)
    assert isinstance(fail(detector, B, 3, now=1.0), EjectionSkipped)
    detector.tick(now=30.0)  # A returns, B could now be ejected...
    assert detector.observe(B, 500, now=31.0) is None  # ...after three new errors
    assert isinstance(fail(detector, B, 2, now=31.0), Ejection)


# -- how long -------------------------------------------------------------------------------------


def test_the_multiplier_shrinks_while_the_endpoint_stays_healthy() -> None:
    detector = OutlierDetector(config(interval_ms=10_000), [A, B, C, "d"])
    fail(detector, A, 3, now=0.0)  # 1 x 30 s
    detector.tick(now=30.0)
    fail(detector, A, 3, now=30.0)  # straight back: 2 x 30 s
    detector.tick(now=90.0)
    fail(detector, A, 3, now=90.0)  # 3 x 30 s
    detector.tick(now=180.0)
    # Twenty-five seconds back in service (two full intervals): 3 - 2 + 1 = 2.
    ejection = fail(detector, A, 3, now=205.0)
    assert ejection == Ejection(A, until=265.0, multiplier=2, times_ejected=4)
    detector.tick(now=265.0)
    # Ten minutes of good behaviour forget the past entirely.
    assert fail(detector, A, 3, now=865.0) == Ejection(A, 895.0, 1, 5)


def test_ejections_never_last_longer_than_five_minutes() -> None:
    detector = OutlierDetector(config(base_ejection_ms=100_000), [A, B])
    now = 0.0
    durations = []
    for _ in range(5):
        ejection = fail(detector, A, 3, now=now)
        assert isinstance(ejection, Ejection)
        durations.append(ejection.until - now)
        now = ejection.until
        assert detector.tick(now) == (A,)
    assert durations == [100.0, 200.0, 300.0, 300.0, 300.0]


def test_a_base_ejection_longer_than_five_minutes_is_kept() -> None:
    detector = OutlierDetector(config(base_ejection_ms=600_000), [A, B])
    ejection = fail(detector, A, 3, now=0.0)
    assert isinstance(ejection, Ejection) and ejection.until == 600.0


# -- membership -----------------------------------------------------------------------------------


def test_an_ejected_endpoint_that_leaves_frees_its_slot() -> None:
    detector = OutlierDetector(config(), [A, B])
    fail(detector, A, 3, now=0.0)
    detector.set_endpoints([B, C])
    assert detector.statistics().ejections_active == 0
    assert detector.next_expiry() is None  # A's expiry is forgotten
    assert detector.tick(now=100.0) == ()
    assert isinstance(fail(detector, B, 3, now=1.0), Ejection)


def test_endpoints_kept_across_updates_keep_their_history() -> None:
    detector = OutlierDetector(config(), [A, B])
    fail(detector, A, 2, now=0.0)
    detector.set_endpoints([A, B, C])
    assert isinstance(detector.observe(A, 500, now=0.0), Ejection)
    assert detector.observe("unknown:1", 500, now=0.0) is None


# -- no outlier detection -------------------------------------------------------------------------


def test_a_cluster_without_outlier_detection_never_ejects() -> None:
    detector = outlier_detector(None, [A, B])
    assert isinstance(detector, NullOutlierDetector)
    for _ in range(100):
        assert detector.observe(A, 503, now=0.0) is None
    assert not detector.is_ejected(A)
    assert detector.tick(now=1e9) == ()
    assert detector.next_expiry() is None
    stats = detector.statistics()
    assert (stats.enabled, stats.endpoints, stats.ejections_total) == (False, 2, 0)
    assert isinstance(outlier_detector(config(), [A]), OutlierDetector)


def test_bad_settings_are_refused_with_the_field() -> None:
    with pytest.raises(ValueError, match=r"outlier_detection\.max_server_errors: must be >= 1"):
        OutlierDetector(config(max_server_errors=0))
    with pytest.raises(ValueError, match=r"outlier_detection\.max_ejection_percent"):
        OutlierDetector(config(max_ejection_percent=101))


# -- active health checks (health.py) -------------------------------------------------------------

CHECK = snapshot.HealthCheck(
    protocol="http",
    path="/ping",
    port=8080,
    interval_ms=5_000,
    timeout_ms=2_000,
    healthy_threshold=2,
    unhealthy_threshold=3,
)


def test_an_endpoint_needs_three_failures_to_go_and_two_successes_to_come_back() -> None:
    health = EndpointHealth(healthy_threshold=2, unhealthy_threshold=3)
    assert health.healthy  # the registry said UNKNOWN: not held back before its first probe

    assert health.observe(False, "HTTP 500 from 10.0.0.1:8080/ping") is None
    assert health.observe(False, "HTTP 500 from 10.0.0.1:8080/ping") is None
    assert health.observe(False, "connect timeout") == Transition(
        "HEALTHY", "UNHEALTHY", "connect timeout"
    )
    assert health.observe(True, "HTTP 200") is None
    assert health.observe(False, "HTTP 503") is None  # disagreement resets the streak
    assert health.observe(True, "HTTP 200") is None
    assert health.observe(True, "HTTP 200") == Transition("UNHEALTHY", "HEALTHY", "HTTP 200")


def test_the_registry_status_decides_where_an_endpoint_starts() -> None:
    assert EndpointHealth(2, 3, "HEALTHY").healthy
    assert EndpointHealth(2, 3, "UNKNOWN").healthy
    distrusted = EndpointHealth(2, 3, "UNHEALTHY")
    assert not distrusted.healthy
    assert distrusted.observe(True, "ok") is None
    assert distrusted.observe(True, "ok") is not None


def test_cluster_health_follows_the_endpoint_set() -> None:
    health = ClusterHealth(CHECK, {A: "HEALTHY", B: "UNHEALTHY"})
    assert health.is_healthy(A) and not health.is_healthy(B)
    for _ in range(3):
        health.observe(A, False, "HTTP 500")
    health.set_endpoints({A: "HEALTHY", C: "UNKNOWN"})
    assert not health.is_healthy(A)  # kept its history
    assert health.is_healthy(C)
    assert health.observe(B, True, "gone") is None
    stats = health.statistics()
    assert (stats.endpoints, stats.healthy, stats.probes, stats.failures) == (2, 1, 3, 3)
    assert stats.transitions == 1


def test_without_a_health_check_every_endpoint_counts_as_healthy() -> None:
    tracker = health_tracker(None, {A: "HEALTHY"})
    assert isinstance(tracker, NoHealthCheck)
    assert tracker.observe(A, False, "x") is None
    assert tracker.is_healthy(A)
    assert not tracker.statistics().enabled
    assert isinstance(health_tracker(CHECK, {A: "HEALTHY"}), ClusterHealth)


def test_thresholds_are_validated() -> None:
    with pytest.raises(ValueError, match=r"health_check\.unhealthy_threshold: must be >= 1"):
        EndpointHealth(1, 0)


# -- together: what the load balancer sees ------------------------------------------------------


def test_an_ejected_endpoint_takes_no_picks_until_it_returns() -> None:
    lb = RoundRobin([A, B])
    detector = OutlierDetector(config(), [A, B])
    health = ClusterHealth(CHECK, {A: "HEALTHY", B: "HEALTHY"})

    def refresh(key: str) -> None:
        lb.set_available(key, health.is_healthy(key) and not detector.is_ejected(key))

    # A answers 503 three times: ejected, every request goes to B.
    for _ in range(3):
        verdict = detector.observe(A, 503, now=5.0)
    assert isinstance(verdict, Ejection)
    refresh(A)
    assert {lb.pick() for _ in range(10)} == {B}

    # 30 s later A is back and shares the traffic again.
    for key in detector.tick(now=35.0):
        refresh(key)
    assert {lb.pick() for _ in range(10)} == {A, B}

    # Active checks then fail A three times: out again, by health this time.
    for _ in range(3):
        health.observe(A, False, "HTTP 500")
    refresh(A)
    assert {lb.pick() for _ in range(10)} == {B}
