"""Circuit-breaker accounting, told as a pool would live it."""

from __future__ import annotations

import pytest

from mapmesh.model import snapshot
from mapmesh.proxy.resilience import (
    ADMIT_ASSIGN,
    ADMIT_CONNECT,
    ADMIT_QUEUE,
    OVERLOADED_HEADER,
    CircuitBreaker,
    Overflow,
    OverflowReason,
    RetryBudget,
)


def test_requests_open_connections_then_queue_then_overflow() -> None:
    breaker = CircuitBreaker(max_connections=2, max_pending_requests=1, max_requests=10)

    # Two requests, no idle connection: each gets a connection opened for it.
    assert breaker.try_acquire_request() is ADMIT_CONNECT
    assert breaker.try_acquire_request() is ADMIT_CONNECT
    # Connections are at their limit: the third waits, the fourth is refused at once.
    assert breaker.try_acquire_request() is ADMIT_QUEUE
    overflow = breaker.try_acquire_request()
    assert overflow == Overflow(OverflowReason.MAX_PENDING_REQUESTS)
    assert isinstance(overflow, Overflow)
    assert (overflow.status, overflow.flag) == (503, "UO")
    assert OVERLOADED_HEADER == ("x-mapmesh-overloaded", "true")

    # The first request ends; its connection goes to the queued one.
    breaker.release_request()
    assert breaker.assign_pending() is ADMIT_ASSIGN
    assert (breaker.connections, breaker.active_requests, breaker.pending_requests) == (2, 2, 0)

    stats = breaker.statistics()
    assert stats.admitted == {"assign": 0, "connect": 2, "queue": 1}
    assert stats.overflows == {"overflow_max_requests": 0, "overflow_max_pending_requests": 1}


def test_an_idle_connection_is_reused_without_opening_one() -> None:
    breaker = CircuitBreaker(max_connections=1, max_pending_requests=0, max_requests=10)
    assert breaker.try_acquire_request() is ADMIT_CONNECT
    breaker.release_request()  # the connection stays open, idle
    assert breaker.try_acquire_request(idle_connection=True) is ADMIT_ASSIGN
    assert breaker.connections == 1


def test_max_requests_refuses_at_once_even_with_room_in_the_queue() -> None:
    breaker = CircuitBreaker(max_connections=100, max_pending_requests=100, max_requests=2)
    breaker.try_acquire_request()
    breaker.try_acquire_request(idle_connection=True)
    assert breaker.try_acquire_request() == Overflow(OverflowReason.MAX_REQUESTS)
    assert breaker.try_acquire_request(idle_connection=True) == Overflow(
        OverflowReason.MAX_REQUESTS
    )


def test_a_queued_request_that_finds_max_requests_full_is_refused() -> None:
    breaker = CircuitBreaker(max_connections=1, max_pending_requests=5, max_requests=2)
    assert breaker.try_acquire_request() is ADMIT_CONNECT  # A opens the only connection
    assert breaker.try_acquire_request() is ADMIT_QUEUE  # B waits: no idle connection yet
    # C finds the (multiplexed) connection ready and takes the last request slot.
    assert breaker.try_acquire_request(idle_connection=True) is ADMIT_ASSIGN
    # When B's turn comes, two requests are active: B is answered with the overflow.
    assert breaker.assign_pending() == Overflow(OverflowReason.MAX_REQUESTS)
    assert (breaker.active_requests, breaker.pending_requests) == (2, 0)


def test_a_queued_request_that_gives_up_frees_its_slot() -> None:
    breaker = CircuitBreaker(max_connections=0, max_pending_requests=1, max_requests=10)
    assert breaker.try_acquire_request() is ADMIT_QUEUE
    assert isinstance(breaker.try_acquire_request(), Overflow)
    breaker.abandon_pending()  # its request timeout fired
    assert breaker.try_acquire_request() is ADMIT_QUEUE


def test_a_closed_connection_may_be_replaced_for_a_waiting_request() -> None:
    breaker = CircuitBreaker(max_connections=1, max_pending_requests=1, max_requests=10)
    assert breaker.try_acquire_request() is ADMIT_CONNECT
    assert breaker.try_acquire_request() is ADMIT_QUEUE
    assert not breaker.may_open_connection()

    # The upstream closes the connection under the first request.
    breaker.on_connection_closed()
    breaker.release_request()
    assert breaker.may_open_connection()
    breaker.on_connection_opening()  # opened for the waiting request
    assert breaker.assign_pending() is ADMIT_ASSIGN
    with pytest.raises(RuntimeError, match="over max_connections"):
        breaker.on_connection_opening()


def test_counts_never_go_negative() -> None:
    breaker = CircuitBreaker()
    with pytest.raises(RuntimeError):
        breaker.release_request()
    with pytest.raises(RuntimeError):
        breaker.on_connection_closed()
    with pytest.raises(RuntimeError):
        breaker.abandon_pending()
    with pytest.raises(RuntimeError):
        breaker.assign_pending()
    stats = breaker.statistics()
    assert (stats.connections, stats.pending_requests, stats.active_requests) == (0, 0, 0)


def test_limits_come_from_the_snapshot() -> None:
    pool = snapshot.ConnectionPool(max_connections=3, max_pending_requests=4, max_requests=5)
    breaker = CircuitBreaker.from_snapshot(pool)
    assert (breaker.max_connections, breaker.max_pending_requests, breaker.max_requests) == (
        3,
        4,
        5,
    )
    assert repr(breaker) == "<CircuitBreaker connections=0/3 pending=0/4 active=0/5>"
    with pytest.raises(ValueError, match=r"connection_pool\.max_requests: must be >= 0"):
        CircuitBreaker(1, 1, -1)


def test_the_defaults_are_envoys_1024() -> None:
    breaker = CircuitBreaker()
    assert (breaker.max_connections, breaker.max_pending_requests, breaker.max_requests) == (
        1024,
        1024,
        1024,
    )


def test_the_retry_budget_reads_the_breakers_counts() -> None:
    breaker = CircuitBreaker(max_connections=50, max_pending_requests=50, max_requests=100)
    budget = RetryBudget(breaker, budget_percent=20.0, min_retry_concurrency=3)
    assert budget.limit() == 3
    for _ in range(60):
        breaker.try_acquire_request()  # 50 connect, 10 queue
    assert (breaker.active_requests, breaker.pending_requests) == (50, 10)
    assert budget.limit() == 12
