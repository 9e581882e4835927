"""Retry decisions and the retry budget, attempt by attempt, on a clock the test moves."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from mapmesh.model import snapshot
from mapmesh.proxy.resilience import (
    DONE,
    NO_RETRIES,
    Failure,
    NoRetry,
    NoRetryReason,
    Retry,
    RetryBudget,
    RetryOn,
    RetryPolicy,
)

DEFAULT = snapshot.RetryPolicy(
    max_retries=2,
    per_try_timeout_ms=15_000,
    http_events=("gateway-error",),
    tcp_events=("connection-error",),
    grpc_events=(),
)


def policy(**overrides: object) -> RetryPolicy:
    """The documented default policy without backoff, so decisions are exact."""
    settings: dict[str, object] = {"backoff_base_ms": 0} | overrides
    return RetryPolicy(**settings)  # type: ignore[arg-type]


def no_retry(reason: NoRetryReason) -> NoRetry:
    return NoRetry(reason)


# -- the default policy ------------------------------------------------------------------------


def test_a_503_is_retried_and_the_retry_succeeds() -> None:
    retries = RetryPolicy.from_snapshot(DEFAULT, backoff_base_ms=0)
    state = retries.start(request_deadline=15.0, replayable=True)

    # The first attempt gets 503 from the upstream: retry, it is a gateway error.
    assert state.on_attempt_result(503, now=0.1) == Retry(RetryOn.GATEWAY_ERROR, 0.0)
    # The retry (on another endpoint) answers 200: use it.
    assert state.on_attempt_result(200, now=0.2) is DONE

    assert state.attempts == 2 and state.done
    stats = retries.statistics()
    assert stats.retries == {"gateway-error": 1}
    assert stats.retry_successes == 1

    # A retry that ends in a 500 the policy does not retry on is used, but is no success.
    state = retries.start(request_deadline=15.0, replayable=True)
    state.on_attempt_result(503, now=0.1)
    assert state.on_attempt_result(500, now=0.2) is DONE
    assert retries.statistics().retry_successes == 1


def test_three_503s_use_up_both_retries_and_flag_urx() -> None:
    state = policy().start(request_deadline=None, replayable=True)
    assert isinstance(state.on_attempt_result(503, now=1.0), Retry)
    assert isinstance(state.on_attempt_result(503, now=2.0), Retry)
    decision = state.on_attempt_result(503, now=3.0)
    assert decision == no_retry(NoRetryReason.LIMIT_EXCEEDED)
    assert isinstance(decision, NoRetry) and decision.flag == "URX"
    assert state.attempts == 3


def test_responses_the_policy_does_not_name_are_used_as_they_are() -> None:
    for status in (200, 204, 301, 404, 409, 429, 500, 501, 505):
        state = policy().start(request_deadline=None, replayable=True)
        assert state.on_attempt_result(status, now=0.0) is DONE, status


def test_connection_errors_are_retried_by_default() -> None:
    state = policy().start(request_deadline=None, replayable=True)
    assert state.on_attempt_result(Failure.CONNECT_FAILURE, now=0.0) == Retry(
        RetryOn.CONNECTION_ERROR, 0.0
    )
    assert state.on_attempt_result(Failure.CONNECTION_RESET, now=0.0) == Retry(
        RetryOn.CONNECTION_ERROR, 0.0
    )


def test_a_per_try_timeout_is_retried_as_a_gateway_error() -> None:
    state = policy().start(request_deadline=None, replayable=True)
    assert state.on_attempt_result(Failure.PER_TRY_TIMEOUT, now=15.0) == Retry(
        RetryOn.GATEWAY_ERROR, 0.0
    )
    assert Failure.PER_TRY_TIMEOUT.status == 504
    assert Failure.PER_TRY_TIMEOUT.flag == "UT"


# -- event classes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "outcome", "expected"),
    [
        (("server-error",), 500, RetryOn.SERVER_ERROR),
        (("server-error",), 503, RetryOn.SERVER_ERROR),
        (("server-error", "gateway-error"), 503, RetryOn.GATEWAY_ERROR),
        (("gateway-error",), 502, RetryOn.GATEWAY_ERROR),
        (("gateway-error",), 504, RetryOn.GATEWAY_ERROR),
        (("gateway-error",), 500, None),
        (("client-error",), 409, RetryOn.CLIENT_ERROR),
        (("client-error",), 400, None),
        (("stream-error",), Failure.STREAM_RESET, RetryOn.STREAM_ERROR),
        (("stream-error",), Failure.CONNECT_FAILURE, None),
        (("stream-error",), 503, None),
        (("server-error",), Failure.STREAM_RESET, RetryOn.SERVER_ERROR),
        (("server-error",), Failure.PER_TRY_TIMEOUT, RetryOn.SERVER_ERROR),
        (("gateway-error",), Failure.CONNECT_FAILURE, RetryOn.GATEWAY_ERROR),
        (("client-error",), Failure.PER_TRY_TIMEOUT, None),
    ],
)
def test_event_classes(
    events: tuple[str, ...], outcome: int | Failure, expected: RetryOn | None
) -> None:
    compiled = policy(http_events=events, tcp_events=())
    assert compiled.retry_on(outcome) == expected


def test_connection_error_covers_connects_and_resets_but_not_timeouts() -> None:
    compiled = policy(http_events=(), tcp_events=("connection-error",))
    assert compiled.retry_on(Failure.CONNECT_FAILURE) is RetryOn.CONNECTION_ERROR
    assert compiled.retry_on(Failure.CONNECTION_RESET) is RetryOn.CONNECTION_ERROR
    assert compiled.retry_on(Failure.PER_TRY_TIMEOUT) is None
    assert compiled.retry_on(503) is None


def test_a_local_failure_no_event_covers_is_not_retriable() -> None:
    state = policy(http_events=("client-error",), tcp_events=()).start(
        request_deadline=None, replayable=True
    )
    decision = state.on_attempt_result(Failure.CONNECT_FAILURE, now=0.0)
    assert decision == no_retry(NoRetryReason.NOT_RETRIABLE)
    assert isinstance(decision, NoRetry) and decision.flag is None  # the outcome's UF stands
    assert Failure.CONNECT_FAILURE.flag == "UF"


def test_grpc_status_in_headers_triggers_grpc_events() -> None:
    compiled = policy(grpc_events=("unavailable", "resource-exhausted"))
    state = compiled.start(request_deadline=None, replayable=True)
    assert state.on_attempt_result(200, now=0.0, grpc_status=14) == Retry(RetryOn.UNAVAILABLE, 0.0)
    assert state.on_attempt_result(200, now=0.0, grpc_status=13) is DONE  # internal: not named


# -- what stops a retry ------------------------------------------------------------------------


def test_a_request_whose_body_was_not_buffered_is_not_replayed() -> None:
    state = policy().start(request_deadline=None, replayable=False)
    assert state.on_attempt_result(503, now=0.0) == no_retry(NoRetryReason.NOT_REPLAYABLE)


def test_no_retry_once_the_overall_deadline_has_passed() -> None:
    state = policy().start(request_deadline=15.0, replayable=True)
    decision = state.on_attempt_result(Failure.PER_TRY_TIMEOUT, now=15.0)
    assert decision == no_retry(NoRetryReason.OVERALL_DEADLINE)
    assert isinstance(decision, NoRetry) and decision.flag == "UT"


def test_no_retry_when_the_backoff_would_end_after_the_deadline() -> None:
    compiled = RetryPolicy(backoff_base_ms=1_000, rng=random.Random(1))
    state = compiled.start(request_deadline=10.05, replayable=True)
    # The first backoff is drawn from [0, 1 s): with this seed it overshoots 50 ms.
    assert state.on_attempt_result(503, now=10.0) == no_retry(NoRetryReason.OVERALL_DEADLINE)


def test_max_retries_zero_flags_the_first_failure_urx() -> None:
    state = policy(max_retries=0).start(request_deadline=None, replayable=True)
    assert state.on_attempt_result(503, now=0.0) == no_retry(NoRetryReason.LIMIT_EXCEEDED)


def test_a_decided_request_takes_no_more_results() -> None:
    state = policy().start(request_deadline=None, replayable=True)
    assert state.on_attempt_result(200, now=0.0) is DONE
    with pytest.raises(RuntimeError, match="after a final decision"):
        state.on_attempt_result(503, now=0.0)


def test_tcp_routes_never_retry() -> None:
    for compiled in (NO_RETRIES, RetryPolicy.from_snapshot(None)):
        assert compiled.attempt_deadline(now=5.0, request_deadline=None) is None
        state = compiled.start(request_deadline=None, replayable=True)
        assert state.on_attempt_result(Failure.CONNECT_FAILURE, now=0.0) == no_retry(
            NoRetryReason.NOT_RETRIABLE
        )


def test_statistics_count_refusals_by_reason() -> None:
    compiled = policy(max_retries=0)
    for outcome in (503, 503, Failure.STREAM_RESET):
        compiled.start(request_deadline=None, replayable=True).on_attempt_result(outcome, 0.0)
    compiled.start(request_deadline=None, replayable=False).on_attempt_result(502, 0.0)
    assert compiled.statistics().no_retry == {
        "retry_limit_exceeded": 3,
        "not_replayable": 1,
    }


def test_every_no_retry_reason_names_a_counter() -> None:
    counters = {reason.counter for reason in NoRetryReason}
    assert len(counters) == len(NoRetryReason)
    assert {r.flag for r in NoRetryReason} == {"URX", "UO", "UT", None}


# -- timeouts and backoff ----------------------------------------------------------------------


def test_attempt_deadline_is_the_earlier_of_per_try_and_request() -> None:
    compiled = policy(per_try_timeout_ms=2_000)
    assert compiled.attempt_deadline(now=100.0, request_deadline=115.0) == 102.0
    assert compiled.attempt_deadline(now=114.0, request_deadline=115.0) == 115.0
    assert compiled.attempt_deadline(now=100.0, request_deadline=None) == 102.0
    unbounded = policy(per_try_timeout_ms=0)
    assert unbounded.attempt_deadline(now=100.0, request_deadline=115.0) == 115.0
    assert unbounded.attempt_deadline(now=100.0, request_deadline=None) is None
    state = compiled.start(request_deadline=101.0, replayable=True)
    assert state.attempt_deadline(100.0) == 101.0


def test_backoff_is_jittered_exponential_and_reproducible() -> None:
    def backoffs(seed: int) -> list[float]:
        compiled = RetryPolicy(max_retries=4, backoff_base_ms=25, rng=random.Random(seed))
        state = compiled.start(request_deadline=None, replayable=True)
        delays = []
        for _ in range(4):
            decision = state.on_attempt_result(503, now=0.0)
            assert isinstance(decision, Retry)
            delays.append(decision.backoff)
        return delays

    delays = backoffs(42)
    assert delays == backoffs(42)
    for delay, bound in zip(delays, (0.025, 0.075, 0.175, 0.250), strict=True):
        assert 0.0 <= delay < bound


def test_unknown_events_are_refused_with_the_field() -> None:
    with pytest.raises(ValueError, match=r"retry.http_events\[1\]: unknown event 'server-eror'"):
        RetryPolicy(http_events=("gateway-error", "server-eror"))
    with pytest.raises(ValueError, match=r"retry.tcp_events\[0\]: unknown event 'gateway-error'"):
        RetryPolicy(tcp_events=("gateway-error",))
    with pytest.raises(ValueError, match=r"retry\.max_retries: must be >= 0"):
        RetryPolicy(max_retries=-1)


# -- the retry budget --------------------------------------------------------------------------


@dataclass
class Load:
    active_requests: int = 0
    pending_requests: int = 0


def test_a_quiet_cluster_may_still_have_three_retries_in_flight() -> None:
    load = Load(active_requests=4)
    budget = RetryBudget(load)
    compiled = policy()
    states = [compiled.start(request_deadline=None, replayable=True, budget=budget) for _ in "abcd"]

    decisions = [s.on_attempt_result(503, now=0.0) for s in states]
    assert [type(d) for d in decisions] == [Retry, Retry, Retry, NoRetry]
    assert decisions[3] == no_retry(NoRetryReason.BUDGET_EXHAUSTED)
    assert isinstance(decisions[3], NoRetry) and decisions[3].flag == "UO"
    assert budget.statistics().exhausted == 1

    # The first retry comes back: its slot is free again for someone else.
    assert states[0].on_attempt_result(200, now=0.1) is DONE
    assert budget.active_retries == 2
    other = compiled.start(request_deadline=None, replayable=True, budget=budget)
    assert isinstance(other.on_attempt_result(503, now=0.2), Retry)


def test_a_busy_cluster_may_retry_a_fifth_of_its_requests() -> None:
    load = Load(active_requests=90, pending_requests=10)
    budget = RetryBudget(load, budget_percent=20.0, min_retry_concurrency=3)
    assert budget.limit() == 20
    granted = sum(budget.try_acquire() for _ in range(25))
    assert granted == 20
    stats = budget.statistics()
    assert (stats.active_retries, stats.granted, stats.exhausted) == (20, 20, 5)


def test_closing_a_request_mid_retry_gives_its_slot_back() -> None:
    budget = RetryBudget(Load(), min_retry_concurrency=1)
    state = policy().start(request_deadline=None, replayable=True, budget=budget)
    assert isinstance(state.on_attempt_result(Failure.CONNECT_FAILURE, now=0.0), Retry)
    assert budget.active_retries == 1
    state.close()  # the overall timeout fired while the retry ran
    state.close()
    assert budget.active_retries == 0
    with pytest.raises(RuntimeError):
        budget.release()


def test_budget_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="budget_percent"):
        RetryBudget(Load(), budget_percent=120.0)
    with pytest.raises(ValueError, match="min_retry_concurrency"):
        RetryBudget(Load(), min_retry_concurrency=-1)
