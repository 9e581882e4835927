"""Invariants of the proxy's resilience state machines under random operation sequences.

1. Circuit breaker: counts are never negative and never above their limits, and every
   decision is the one the documented table gives for the counts at that moment.
2. Outlier detector: the ejected share never exceeds ``max_ejection_percent`` (or one
   endpoint), every ejection ends at its announced time, and none outlives the maximum.
3. Retry state: a request makes at most ``1 + max_retries`` attempts, nothing is decided
   twice, and the retry budget's count is exactly the retries in flight.
4. Active health: a status only flips after a threshold's worth of consecutive disagreeing
   results.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from mapmesh.model import snapshot
from mapmesh.proxy.resilience import (
    ADMIT_ASSIGN,
    ADMIT_CONNECT,
    ADMIT_QUEUE,
    CircuitBreaker,
    Ejection,
    EjectionSkipped,
    EndpointHealth,
    Failure,
    NoRetry,
    OutlierDetector,
    Overflow,
    OverflowReason,
    Retry,
    RetryBudget,
    RetryPolicy,
    RetryState,
)
from mapmesh.proxy.resilience.outlier import MAX_EJECTION_MS

MACHINE = settings(max_examples=60, stateful_step_count=40, deadline=None)

outcomes = st.sampled_from([200, 404, 409, 500, 502, 503, 504, *Failure])


# -- 1. circuit breaker ------------------------------------------------------------------------


class BreakerMachine(RuleBasedStateMachine):
    breaker: CircuitBreaker

    @initialize(
        max_connections=st.integers(0, 4),
        max_pending=st.integers(0, 4),
        max_requests=st.integers(0, 6),
    )
    def limits(self, max_connections: int, max_pending: int, max_requests: int) -> None:
        self.breaker = CircuitBreaker(max_connections, max_pending, max_requests)
        self.connections = self.pending = self.active = 0

    @rule(idle=st.booleans())
    def a_request_arrives(self, idle: bool) -> None:
        b = self.breaker
        decision = b.try_acquire_request(idle_connection=idle)
        if self.active >= b.max_requests:
            assert decision == Overflow(OverflowReason.MAX_REQUESTS)
        elif idle:
            assert decision is ADMIT_ASSIGN
            self.active += 1
        elif self.connections < b.max_connections:
            assert decision is ADMIT_CONNECT
            self.active += 1
            self.connections += 1
        elif self.pending < b.max_pending_requests:
            assert decision is ADMIT_QUEUE
            self.pending += 1
        else:
            assert decision == Overflow(OverflowReason.MAX_PENDING_REQUESTS)

    @precondition(lambda self: self.active > 0)
    @rule()
    def a_request_ends(self) -> None:
        self.breaker.release_request()
        self.active -= 1

    @precondition(lambda self: self.pending > 0)
    @rule()
    def a_queued_request_gets_a_connection(self) -> None:
        decision = self.breaker.assign_pending()
        self.pending -= 1
        if self.active >= self.breaker.max_requests:
            assert isinstance(decision, Overflow)
        else:
            assert decision is ADMIT_ASSIGN
            self.active += 1

    @precondition(lambda self: self.pending > 0)
    @rule()
    def a_queued_request_gives_up(self) -> None:
        self.breaker.abandon_pending()
        self.pending -= 1

    @precondition(lambda self: self.connections > 0)
    @rule()
    def a_connection_closes(self) -> None:
        self.breaker.on_connection_closed()
        self.connections -= 1

    @rule()
    def the_pool_opens_a_connection_if_it_may(self) -> None:
        if self.breaker.may_open_connection():
            self.breaker.on_connection_opening()
            self.connections += 1
        else:
            assert self.connections >= self.breaker.max_connections

    @invariant()
    def counts_match_and_stay_within_limits(self) -> None:
        b = self.breaker
        assert (b.connections, b.pending_requests, b.active_requests) == (
            self.connections,
            self.pending,
            self.active,
        )
        assert 0 <= b.connections <= b.max_connections
        assert 0 <= b.pending_requests <= b.max_pending_requests
        assert 0 <= b.active_requests <= b.max_requests


TestBreaker = BreakerMachine.TestCase
TestBreaker.settings = MACHINE


# -- 2. outlier detector -----------------------------------------------------------------------


class OutlierMachine(RuleBasedStateMachine):
    @initialize(
        n=st.integers(1, 8),
        threshold=st.integers(1, 3),
        percent=st.integers(0, 100),
        base_ms=st.sampled_from([0, 1_000, 30_000, 200_000]),
        interval_ms=st.sampled_from([0, 1_000, 10_000]),
    )
    def cluster(self, n: int, threshold: int, percent: int, base_ms: int, interval_ms: int) -> None:
        self.keys = [f"10.0.0.{i}:80" for i in range(n)]
        self.percent = percent
        self.max_duration = max(MAX_EJECTION_MS, base_ms) / 1000.0
        self.detector = OutlierDetector(
            snapshot.OutlierDetection(
                max_server_errors=threshold,
                interval_ms=interval_ms,
                base_ejection_ms=base_ms,
                max_ejection_percent=percent,
            ),
            self.keys,
        )
        self.now = 0.0
        self.until: dict[str, float] = {}

    @rule(i=st.integers(0, 7), outcome=outcomes)
    def an_attempt_ends(self, i: int, outcome: int | Failure) -> None:
        key = self.keys[i % len(self.keys)]
        verdict = self.detector.observe(key, outcome, self.now)
        if isinstance(verdict, Ejection):
            assert key not in self.until
            assert self.now <= verdict.until <= self.now + self.max_duration
            self.until[key] = verdict.until
        elif isinstance(verdict, EjectionSkipped):
            assert len(self.until) >= self.allowed()

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 10.0, 30.0, 120.0, 400.0]))
    def time_passes_and_the_timer_fires(self, dt: float) -> None:
        self.now += dt
        returned = set(self.detector.tick(self.now))
        due = {key for key, until in self.until.items() if until <= self.now}
        assert returned == due
        for key in due:
            del self.until[key]

    @rule()
    def the_driver_wakes_at_the_next_expiry(self) -> None:
        expiry = self.detector.next_expiry()
        assert expiry == (min(self.until.values()) if self.until else None)
        if expiry is not None:
            self.now = max(self.now, expiry)
            self.time_passes_and_the_timer_fires(0.0)

    def allowed(self) -> int:
        return max(1, self.percent * len(self.keys) // 100)

    @invariant()
    def ejected_share_stays_under_the_cap(self) -> None:
        ejected = [k for k in self.keys if self.detector.is_ejected(k)]
        assert set(ejected) == set(self.until)
        assert len(ejected) <= self.allowed()
        assert self.detector.statistics().ejections_active == len(ejected)

    def teardown(self) -> None:
        # Every ejection ends: after the longest possible ejection, nobody is out.
        if hasattr(self, "detector"):
            self.detector.tick(self.now + self.max_duration)
            assert not any(self.detector.is_ejected(k) for k in self.keys)
            assert self.detector.next_expiry() is None


TestOutlier = OutlierMachine.TestCase
TestOutlier.settings = MACHINE


# -- 3. retry state ----------------------------------------------------------------------------


class Load:
    active_requests = 10
    pending_requests = 0


class RetryMachine(RuleBasedStateMachine):
    @initialize(
        max_retries=st.integers(0, 3),
        events=st.sets(st.sampled_from(["server-error", "gateway-error", "client-error"])),
        tcp=st.booleans(),
        min_concurrency=st.integers(0, 3),
    )
    def route(self, max_retries: int, events: set[str], tcp: bool, min_concurrency: int) -> None:
        self.policy = RetryPolicy(
            max_retries=max_retries,
            http_events=sorted(events),
            tcp_events=("connection-error",) if tcp else (),
            backoff_base_ms=0,
        )
        self.budget = RetryBudget(Load(), budget_percent=0.0, min_retry_concurrency=min_concurrency)
        self.open: list[RetryState] = []
        self.retrying: set[int] = set()  # ids of states whose latest decision was Retry

    @rule(replayable=st.booleans())
    def a_request_starts(self, replayable: bool) -> None:
        state = self.policy.start(request_deadline=100.0, replayable=replayable, budget=self.budget)
        self.open.append(state)

    @precondition(lambda self: bool(self.open))
    @rule(pick=st.integers(0, 50), outcome=outcomes, now=st.sampled_from([1.0, 99.0, 100.0]))
    def an_attempt_ends(self, pick: int, outcome: int | Failure, now: float) -> None:
        state = self.open[pick % len(self.open)]
        decision = state.on_attempt_result(outcome, now)
        self.retrying.discard(id(state))
        assert state.attempts <= 1 + self.policy.max_retries
        if isinstance(decision, Retry):
            assert not state.done
            self.retrying.add(id(state))
        else:
            assert state.done
            if isinstance(decision, NoRetry) and now >= 100.0:
                assert decision.reason.counter in {
                    "overall_deadline",
                    "not_retriable",
                    "not_replayable",
                    "retry_limit_exceeded",
                }
            self.open.remove(state)

    @precondition(lambda self: bool(self.open))
    @rule(pick=st.integers(0, 50))
    def a_request_is_abandoned(self, pick: int) -> None:
        state = self.open.pop(pick % len(self.open))
        state.close()
        self.retrying.discard(id(state))

    @invariant()
    def the_budget_counts_exactly_the_retries_in_flight(self) -> None:
        assert self.budget.active_retries == len(self.retrying)
        assert self.budget.active_retries <= self.budget.limit()


TestRetry = RetryMachine.TestCase
TestRetry.settings = MACHINE


# -- 4. active health --------------------------------------------------------------------------


class HealthMachine(RuleBasedStateMachine):
    @initialize(
        healthy=st.integers(1, 4),
        unhealthy=st.integers(1, 4),
        registry=st.sampled_from(["HEALTHY", "UNHEALTHY", "UNKNOWN"]),
    )
    def endpoint(self, healthy: int, unhealthy: int, registry: snapshot.HealthState) -> None:
        self.health = EndpointHealth(healthy, unhealthy, registry)
        self.status = registry != "UNHEALTHY"
        self.disagreeing = 0

    @rule(ok=st.booleans())
    def a_probe_completes(self, ok: bool) -> None:
        transition = self.health.observe(ok, "probe")
        if ok is self.status:
            self.disagreeing = 0
            assert transition is None
            return
        self.disagreeing += 1
        threshold = self.health.healthy_threshold if ok else self.health.unhealthy_threshold
        if self.disagreeing == threshold:
            assert transition is not None and transition.status == (
                "HEALTHY" if ok else "UNHEALTHY"
            )
            self.status = ok
            self.disagreeing = 0
        else:
            assert transition is None

    @invariant()
    def state_matches_the_model(self) -> None:
        assert self.health.healthy is self.status
        assert self.health.streak == self.disagreeing


TestHealth = HealthMachine.TestCase
TestHealth.settings = MACHINE
