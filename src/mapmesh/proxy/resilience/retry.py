"""Retry decisions for one request: attempt outcomes in, ``Done`` / ``Retry`` / ``NoRetry`` out.

Theory of operation
-------------------
A route's :class:`RetryPolicy` is compiled once from the snapshot (App Mesh's ``retryPolicy``,
or the default of ``docs/defaults.md``: gateway-error and connection-error, 2 retries, 15 s per
try). Each request gets a small :class:`RetryState` from :meth:`RetryPolicy.start`; after every
attempt the caller reports how the attempt ended and gets a :data:`RetryDecision`:

* :class:`Done` — use this result (a response the policy does not retry on);
* :class:`Retry` — try again, after ``backoff`` seconds, preferably on another endpoint;
* :class:`NoRetry` — a failure that will not be retried; ``reason`` names why, and maps one to
  one to a counter and an access-log flag (``URX`` when the retries are used up).

An attempt ends in an :data:`Outcome`: the response status (``int``), or a locally originated
:class:`Failure` — connect failure, connection reset before a response, stream reset/refused,
per-try timeout. Only outcomes before the response started count; once response bytes went
downstream nothing can be retried.

Which outcome is retried on which event (App Mesh's names, Envoy's semantics)::

    event             statuses         local failures
    server-error      500-599          CONNECT_FAILURE CONNECTION_RESET STREAM_RESET PER_TRY_TIMEOUT
    gateway-error     502, 503, 504    CONNECT_FAILURE CONNECTION_RESET STREAM_RESET PER_TRY_TIMEOUT
    client-error      409              -
    stream-error      -                STREAM_RESET (a reset or refused HTTP/2 stream)
    connection-error  -                CONNECT_FAILURE CONNECTION_RESET (before any response)
    gRPC events       grpc-status in the response headers: cancelled 1, deadline-exceeded 4,
                      resource-exhausted 8, internal 13, unavailable 14

Envoy retries resets, connect failures and per-try timeouts under ``5xx`` and
``gateway-error`` because it would answer them itself with 503/504; mapmesh does the same. A
per-try timeout is therefore retried by default (the default policy has gateway-error).

Checks, in order, for an outcome that matches an event: the request body must be fully
buffered (``replayable``) → ``NOT_REPLAYABLE``; at most ``max_retries`` retries →
``LIMIT_EXCEEDED`` (URX); the backoff must end before the overall request deadline →
``OVERALL_DEADLINE`` (UT, 504); the cluster's retry budget must have a slot →
``BUDGET_EXHAUSTED`` (UO). Local failures that match no event → ``NOT_RETRIABLE``.

Timeouts: an attempt may run until :meth:`RetryPolicy.attempt_deadline` =
``min(now + per_try_timeout, request_deadline)``; ``per_try_timeout_ms == 0`` disables the
per-try bound. Time is whatever monotonic clock the caller uses (``loop.time()``, seconds);
nothing here reads a clock or arms a timer.

Backoff between attempts is Envoy's default: full jitter over ``base * (2**n - 1)``, capped at
``10 * base`` (base 25 ms), drawn from the policy's ``rng`` — a seed reproduces it; ``base 0``
disables it.

Cost: ``on_attempt_result`` is O(1): one tuple index for a status (the status → event table is
built with the policy), decisions other than ``Retry`` are preallocated.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Final

from mapmesh.model import snapshot
from mapmesh.proxy.resilience.budget import UNLIMITED, Budget

__all__ = [
    "DONE",
    "GRPC_STATUS_EVENTS",
    "NO_RETRIES",
    "Done",
    "Failure",
    "NoRetry",
    "NoRetryReason",
    "Outcome",
    "Retry",
    "RetryDecision",
    "RetryOn",
    "RetryPolicy",
    "RetryState",
    "RetryStatistics",
]


class Failure(Enum):
    """How an attempt ended without a response. ``status`` is what the proxy answers when it
    gives up on it, ``flag`` the access-log response flag."""

    CONNECT_FAILURE = "connect_failure"
    CONNECTION_RESET = "connection_reset"
    STREAM_RESET = "stream_reset"
    PER_TRY_TIMEOUT = "per_try_timeout"

    @property
    def status(self) -> int:
        return 504 if self is Failure.PER_TRY_TIMEOUT else 503

    @property
    def flag(self) -> str:
        return _FAILURE_FLAGS[self]


_FAILURE_FLAGS: Final = {
    Failure.CONNECT_FAILURE: "UF",
    Failure.CONNECTION_RESET: "UC",
    Failure.STREAM_RESET: "UR",
    Failure.PER_TRY_TIMEOUT: "UT",
}

Outcome = int | Failure
"""How an attempt ended: the upstream's response status, or a local :class:`Failure`."""


class RetryOn(StrEnum):
    """Retry events, named as in App Mesh's ``httpRetryEvents`` / ``tcpRetryEvents`` /
    ``grpcRetryEvents``."""

    SERVER_ERROR = "server-error"
    GATEWAY_ERROR = "gateway-error"
    CLIENT_ERROR = "client-error"
    STREAM_ERROR = "stream-error"
    CONNECTION_ERROR = "connection-error"
    CANCELLED = "cancelled"
    DEADLINE_EXCEEDED = "deadline-exceeded"
    INTERNAL = "internal"
    RESOURCE_EXHAUSTED = "resource-exhausted"
    UNAVAILABLE = "unavailable"


_HTTP_EVENTS: Final = (
    RetryOn.SERVER_ERROR,
    RetryOn.GATEWAY_ERROR,
    RetryOn.CLIENT_ERROR,
    RetryOn.STREAM_ERROR,
)
_TCP_EVENTS: Final = (RetryOn.CONNECTION_ERROR,)
GRPC_STATUS_EVENTS: Final[Mapping[int, RetryOn]] = {
    1: RetryOn.CANCELLED,
    4: RetryOn.DEADLINE_EXCEEDED,
    8: RetryOn.RESOURCE_EXHAUSTED,
    13: RetryOn.INTERNAL,
    14: RetryOn.UNAVAILABLE,
}
"""gRPC status code → the gRPC retry event it triggers."""
_GRPC_EVENTS: Final = tuple(GRPC_STATUS_EVENTS.values())

# Which events cover a local failure, most specific first: the first configured one names
# the retry.
_FAILURE_EVENTS: Final = {
    Failure.CONNECT_FAILURE: (
        RetryOn.CONNECTION_ERROR,
        RetryOn.GATEWAY_ERROR,
        RetryOn.SERVER_ERROR,
    ),
    Failure.CONNECTION_RESET: (
        RetryOn.CONNECTION_ERROR,
        RetryOn.GATEWAY_ERROR,
        RetryOn.SERVER_ERROR,
    ),
    Failure.STREAM_RESET: (RetryOn.STREAM_ERROR, RetryOn.GATEWAY_ERROR, RetryOn.SERVER_ERROR),
    Failure.PER_TRY_TIMEOUT: (RetryOn.GATEWAY_ERROR, RetryOn.SERVER_ERROR),
}


class NoRetryReason(Enum):
    """Why a failed attempt is final. ``counter`` is the statistic it increments, ``flag``
    the response flag it adds to the access log (None: the outcome's own flag stands)."""

    LIMIT_EXCEEDED = "retry_limit_exceeded"
    NOT_RETRIABLE = "not_retriable"
    NOT_REPLAYABLE = "not_replayable"
    BUDGET_EXHAUSTED = "retry_overflow"
    OVERALL_DEADLINE = "overall_deadline"

    @property
    def counter(self) -> str:
        return self.value

    @property
    def flag(self) -> str | None:
        return _NO_RETRY_FLAGS.get(self)


_NO_RETRY_FLAGS: Final = {
    NoRetryReason.LIMIT_EXCEEDED: "URX",
    NoRetryReason.BUDGET_EXHAUSTED: "UO",
    NoRetryReason.OVERALL_DEADLINE: "UT",
}


@dataclass(frozen=True, slots=True)
class Done:
    """Use this attempt's result."""


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again after ``backoff`` seconds; ``reason`` is the event that matched."""

    reason: RetryOn
    backoff: float


@dataclass(frozen=True, slots=True)
class NoRetry:
    """The attempt failed and will not be retried, because of ``reason``."""

    reason: NoRetryReason

    @property
    def flag(self) -> str | None:
        return self.reason.flag


RetryDecision = Done | Retry | NoRetry

DONE: Final = Done()
_NO_RETRY: Final = {reason: NoRetry(reason) for reason in NoRetryReason}


@dataclass(frozen=True, slots=True)
class RetryStatistics:
    """Counters of one route's policy: retries by event, refusals by reason
    (:attr:`NoRetryReason.counter`), and requests that succeeded after a retry."""

    retries: Mapping[str, int]
    no_retry: Mapping[str, int]
    retry_successes: int


class RetryPolicy:
    """A route's retry policy, compiled for O(1) decisions (see the module docstring)."""

    __slots__ = (
        "_by_failure",
        "_by_grpc",
        "_by_status",
        "_no_retry",
        "_random",
        "_retries",
        "_successes",
        "backoff_base",
        "backoff_max",
        "events",
        "max_retries",
        "per_try_timeout",
    )

    def __init__(
        self,
        *,
        max_retries: int = 2,
        per_try_timeout_ms: int = 15_000,
        http_events: Iterable[str] = (RetryOn.GATEWAY_ERROR,),
        tcp_events: Iterable[str] = (RetryOn.CONNECTION_ERROR,),
        grpc_events: Iterable[str] = (),
        backoff_base_ms: int = 25,
        backoff_max_ms: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"retry.max_retries: must be >= 0, got {max_retries}")
        if per_try_timeout_ms < 0:
            raise ValueError(f"retry.per_try_timeout_ms: must be >= 0, got {per_try_timeout_ms}")
        if backoff_base_ms < 0:
            raise ValueError(f"retry.backoff_base_ms: must be >= 0, got {backoff_base_ms}")
        events = (
            _events("retry.http_events", http_events, _HTTP_EVENTS)
            | _events("retry.tcp_events", tcp_events, _TCP_EVENTS)
            | _events("retry.grpc_events", grpc_events, _GRPC_EVENTS)
        )
        self.max_retries = max_retries
        self.per_try_timeout = per_try_timeout_ms / 1000.0 if per_try_timeout_ms else None
        self.events = events
        self.backoff_base = backoff_base_ms / 1000.0
        self.backoff_max = (
            10 * self.backoff_base if backoff_max_ms is None else backoff_max_ms / 1000.0
        )
        self._random = (rng if rng is not None else random.Random()).random
        self._by_status = tuple(_status_event(status, events) for status in range(600))
        self._by_failure = {
            failure: next((e for e in candidates if e in events), None)
            for failure, candidates in _FAILURE_EVENTS.items()
        }
        self._by_grpc = {code: e for code, e in GRPC_STATUS_EVENTS.items() if e in events}
        self._retries = dict.fromkeys(RetryOn, 0)
        self._no_retry = dict.fromkeys(NoRetryReason, 0)
        self._successes = 0

    @classmethod
    def from_snapshot(
        cls,
        policy: snapshot.RetryPolicy | None,
        *,
        backoff_base_ms: int = 25,
        rng: random.Random | None = None,
    ) -> RetryPolicy:
        """The policy of a route; ``None`` (tcp routes) never retries and has no per-try
        timeout."""
        if policy is None:
            return cls(max_retries=0, per_try_timeout_ms=0, http_events=(), tcp_events=(), rng=rng)
        return cls(
            max_retries=policy.max_retries,
            per_try_timeout_ms=policy.per_try_timeout_ms,
            http_events=policy.http_events,
            tcp_events=policy.tcp_events,
            grpc_events=policy.grpc_events,
            backoff_base_ms=backoff_base_ms,
            rng=rng,
        )

    def attempt_deadline(self, now: float, request_deadline: float | None) -> float | None:
        """When an attempt started at ``now`` must end: ``min(now + per_try, request_deadline)``;
        None when neither bound is set."""
        return _earlier(now, self.per_try_timeout, request_deadline)

    def final_status(self, status: int) -> bool:
        """A first attempt answered ``status``: is that the request's answer whatever the
        state (no retry event matches)? Lets callers skip making a :class:`RetryState`."""
        return 0 <= status < 600 and self._by_status[status] is None

    def retry_on(self, outcome: Outcome, grpc_status: int | None = None) -> RetryOn | None:
        """The configured event ``outcome`` matches, if any."""
        if isinstance(outcome, Failure):
            return self._by_failure[outcome]
        event = self._by_status[outcome] if 0 <= outcome < 600 else None
        if event is None and grpc_status is not None:
            event = self._by_grpc.get(grpc_status)
        return event

    def start(
        self,
        *,
        request_deadline: float | None,
        replayable: bool,
        budget: Budget = UNLIMITED,
    ) -> RetryState:
        """The retry state of one request. ``replayable``: its body is fully buffered."""
        return RetryState(self, request_deadline, replayable, budget)

    def statistics(self) -> RetryStatistics:
        return RetryStatistics(
            retries={str(event): n for event, n in self._retries.items() if n},
            no_retry={reason.counter: n for reason, n in self._no_retry.items() if n},
            retry_successes=self._successes,
        )

    def __repr__(self) -> str:
        events = ",".join(sorted(self.events))
        return f"<RetryPolicy max_retries={self.max_retries} on={events}>"

    def _backoff(self, retry: int) -> float:
        base = self.backoff_base
        if base <= 0.0:
            return 0.0
        return self._random() * min(base * ((1 << min(retry, 30)) - 1), self.backoff_max)


class RetryState:
    """Attempts of one request so far, and the decision after each (module docstring)."""

    __slots__ = ("_budget", "_final", "_holding", "_policy", "attempts", "deadline", "replayable")

    def __init__(
        self,
        policy: RetryPolicy,
        request_deadline: float | None,
        replayable: bool,
        budget: Budget = UNLIMITED,
    ) -> None:
        self._policy = policy
        self._budget = budget
        self._final = False
        self._holding = False
        self.attempts = 0
        self.replayable = replayable
        self.deadline = request_deadline

    @property
    def done(self) -> bool:
        """A final decision (``Done`` or ``NoRetry``) was returned."""
        return self._final

    def attempt_deadline(self, now: float) -> float | None:
        """When the attempt starting at ``now`` must end."""
        return _earlier(now, self._policy.per_try_timeout, self.deadline)

    def on_attempt_result(
        self, outcome: Outcome, now: float, grpc_status: int | None = None
    ) -> RetryDecision:
        """Record how the latest attempt ended (at ``now``) and decide what comes next."""
        if self._final:
            raise RuntimeError("on_attempt_result after a final decision")
        self.attempts += 1
        if self._holding:
            self._holding = False
            self._budget.release()
        policy = self._policy
        if grpc_status is None and outcome.__class__ is int and 0 <= outcome < 600:
            event = policy._by_status[outcome]  # the common case, without a call
        else:
            event = policy.retry_on(outcome, grpc_status)
        if event is None:
            self._final = True
            if isinstance(outcome, Failure):
                return self._refuse(NoRetryReason.NOT_RETRIABLE)
            if self.attempts > 1 and outcome < 500:
                policy._successes += 1
            return DONE
        if not self.replayable:
            return self._refuse(NoRetryReason.NOT_REPLAYABLE)
        if self.attempts > policy.max_retries:
            return self._refuse(NoRetryReason.LIMIT_EXCEEDED)
        backoff = policy._backoff(self.attempts)
        if self.deadline is not None and now + backoff >= self.deadline:
            return self._refuse(NoRetryReason.OVERALL_DEADLINE)
        if not self._budget.try_acquire():
            return self._refuse(NoRetryReason.BUDGET_EXHAUSTED)
        self._holding = True
        policy._retries[event] += 1
        return Retry(event, backoff)

    def close(self) -> None:
        """The request is over (answered, abandoned, timed out): give back a budget slot a
        retry still holds. Idempotent."""
        self._final = True
        if self._holding:
            self._holding = False
            self._budget.release()

    def __repr__(self) -> str:
        state = "final" if self._final else "open"
        return f"<RetryState attempts={self.attempts} {state}>"

    def _refuse(self, reason: NoRetryReason) -> NoRetry:
        self._final = True
        self._policy._no_retry[reason] += 1
        return _NO_RETRY[reason]


def _earlier(now: float, per_try: float | None, request_deadline: float | None) -> float | None:
    if per_try is None:
        return request_deadline
    attempt = now + per_try
    if request_deadline is None or attempt < request_deadline:
        return attempt
    return request_deadline


def _events(field: str, names: Iterable[str], allowed: tuple[RetryOn, ...]) -> frozenset[RetryOn]:
    events: set[RetryOn] = set()
    for i, name in enumerate(names):
        event = next((e for e in allowed if e == name), None)
        if event is None:
            known = ", ".join(allowed)
            raise ValueError(f"{field}[{i}]: unknown event {name!r} (known: {known})")
        events.add(event)
    return frozenset(events)


def _status_event(status: int, events: frozenset[RetryOn]) -> RetryOn | None:
    if status in (502, 503, 504) and RetryOn.GATEWAY_ERROR in events:
        return RetryOn.GATEWAY_ERROR
    if 500 <= status <= 599 and RetryOn.SERVER_ERROR in events:
        return RetryOn.SERVER_ERROR
    if status == 409 and RetryOn.CLIENT_ERROR in events:
        return RetryOn.CLIENT_ERROR
    return None


NO_RETRIES: Final = RetryPolicy(max_retries=0, per_try_timeout_ms=0, http_events=(), tcp_events=())
"""The null policy (tcp routes): failures are final, responses are used as they are, and no
per-try bound applies."""
