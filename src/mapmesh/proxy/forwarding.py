"""One request's trip upstream — attempts, retries, timeouts — driven by callbacks.

Theory of operation
-------------------
A :class:`Forwarding` is a small state machine. Nothing on its common path is a coroutine,
future, task or timer: the downstream connection starts it when the request head arrives,
the upstream connection calls it back when the response head (or a failure) arrives, and
deadlines are checked by the process's one periodic :class:`~.deadlines.Deadlines` ticker.
Only the uncommon steps use asyncio objects: opening a connection or queueing for one (a
task around :meth:`Pool.acquire`) and a retry's backoff (one ``call_later``).

Phases::

    BODY ──▶ ATTEMPT ──(idle pooled connection)──▶ HEAD ──▶ DONE (response streams)
                │                                   ▲  │
                └──(connect / queue)──▶ ACQUIRE ─────┘  └──▶ retry: BACKOFF ──▶ ATTEMPT

BODY waits for a request body small enough to replay (408 when the client is too slow).
Each attempt picks an endpoint not tried yet; the breaker may refuse (503 UO with
``x-mapmesh-overloaded: true``). The outcome — a status or a local failure — goes to
outlier detection and to the retry state, which answers Done, Retry (after a short backoff,
on another endpoint when one exists) or NoRetry with a reason. A deadline that passes in
ACQUIRE or HEAD ends the attempt as a per-try timeout (504 UT unless a retry follows).

Every response the proxy generates names its reason in the body and carries an Envoy-style
flag in the access log: UH no healthy upstream, UF connect failure, UC reset, UT timeout,
URX retry limit exceeded, UO overflow, UPE upstream protocol error, DT downstream too slow.

Tracing: ``attempt_started`` (read by the recorder for ``upstream_rq_time``) is set for every
attempt. Only for a sampled request (``exchange.trace``) does an attempt that ends without
giving the response leave a client span, and a retry get a new span id in its ``traceparent``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Set
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from mapmesh.proxy.cluster import ClusterRuntime
from mapmesh.proxy.deadlines import Deadlines
from mapmesh.proxy.pool import EndpointKey
from mapmesh.proxy.protocol.events import ResponseHead
from mapmesh.proxy.protocol.http1 import request_head_bytes
from mapmesh.proxy.resilience.breaker import OVERLOADED_HEADER, Overflow
from mapmesh.proxy.resilience.retry import (
    DONE,
    Failure,
    NoRetry,
    NoRetryReason,
    Outcome,
    Retry,
    RetryDecision,
    RetryPolicy,
    RetryState,
)
from mapmesh.proxy.upstream import UpstreamConnection, UpstreamFailure

if TYPE_CHECKING:  # the downstream module imports this one
    from mapmesh.proxy.downstream import DownstreamExchange

__all__ = ["Forwarding", "LocalReply", "Target"]

log = logging.getLogger("mapmesh.proxy")


@dataclass(frozen=True, slots=True)
class LocalReply:
    """A response the proxy generates: status, reason (the body), flag, extra headers."""

    status: int
    reason: str
    flag: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


_OVERLOADED: Final = ((OVERLOADED_HEADER[0].encode(), OVERLOADED_HEADER[1].encode()),)
OVERFLOW_REPLY: Final = LocalReply(
    503, "upstream overloaded (circuit breaker open)", "UO", _OVERLOADED
)
TIMEOUT_REPLY: Final = LocalReply(504, "upstream request timeout", "UT")
REQUEST_TIMEOUT_REPLY: Final = LocalReply(
    408, "request timeout: the client did not send the whole request in time", "DT"
)
INTERNAL_ERROR_REPLY: Final = LocalReply(500, "internal proxy error", "PE")

BODY_PENDING: Final = object()
"""What ``DownstreamExchange.request_body`` returns while a replayable body is arriving."""


class Target:
    """Where a request goes: cluster, timeouts (request and idle, ms; 0 for none), retry
    policy, gateway rewrites. (A plain class: made per request, and a frozen dataclass's
    ``__init__`` costs several times more. The timeouts are plain ints, not the snapshot's
    ``Timeouts``, whose attributes compiled code can only read by name.)"""

    __slots__ = ("cluster", "host", "idle_ms", "path", "request_ms", "retry_policy")

    def __init__(
        self,
        cluster: ClusterRuntime,
        request_ms: int,
        idle_ms: int,
        retry_policy: RetryPolicy,
        path: str | None = None,
        host: str | None = None,
    ) -> None:
        self.cluster = cluster
        self.request_ms = request_ms
        self.idle_ms = idle_ms
        self.retry_policy = retry_policy
        self.path = path
        self.host = host


_NOTHING_TRIED: Final[frozenset[EndpointKey]] = frozenset()

# Phases
_BODY, _ATTEMPT, _ACQUIRE, _HEAD, _BACKOFF, _DONE = range(6)


class Forwarding:
    __slots__ = (
        "_acquiring",
        "_backoff",
        "_body",
        "_clock",
        "_conn",
        "_deadlines",
        "_head_bytes",
        "_key",
        "_phase",
        "_replayable",
        "_request_deadline",
        "_retry",
        "_tried",
        "attempt_started",
        "cluster",
        "deadline",
        "exchange",
        "target",
    )

    def __init__(
        self,
        exchange: DownstreamExchange,
        target: Target,
        clock: Callable[[], float],
        deadlines: Deadlines,
    ) -> None:
        self.exchange = exchange
        self.target = target
        self.cluster = target.cluster
        self._clock = clock
        self._deadlines = deadlines
        self._phase = _BODY
        self.deadline = 0.0
        self._request_deadline: float | None = None
        self._replayable = False
        self._retry: RetryState | None = None  # made when a first attempt is not final
        self._body: bytes | None = None
        self._head_bytes = b""
        self._tried: Set[EndpointKey] = _NOTHING_TRIED
        self._key: EndpointKey | None = None
        self._conn: UpstreamConnection | None = None
        self._acquiring: asyncio.Task[UpstreamConnection | Overflow] | None = None
        self._backoff: asyncio.TimerHandle | None = None
        self.attempt_started = 0.0  # clock() when the current attempt picked its endpoint

    # -- entry points (each one catches what it raises: a bug answers 500, never hangs) --

    def start(self) -> None:
        try:
            request_ms = self.target.request_ms
            if request_ms:
                self._request_deadline = self._clock() + request_ms / 1000
            body = self.exchange.request_body(self)
            if body is BODY_PENDING:
                if self._request_deadline is not None:
                    self.deadline = self._request_deadline
                    self._deadlines.track(self)
                return
            self._begin(body)  # type: ignore[arg-type]
        except Exception:
            self._internal_error()

    def body_ready(self, body: bytes | None) -> None:
        """The replayable body the request waited for has arrived (from the exchange)."""
        if self._phase != _BODY:
            return
        self._deadlines.untrack(self)
        try:
            self._begin(body)
        except Exception:
            self._internal_error()

    def on_response_head(self, conn: UpstreamConnection, response: ResponseHead) -> None:
        if conn is not self._conn or self._phase != _HEAD:
            return
        try:
            self._answered(conn, response)
        except Exception:
            self._internal_error()

    def on_upstream_failure(self, conn: UpstreamConnection, failure: UpstreamFailure) -> None:
        if conn is not self._conn or self._phase != _HEAD:
            return
        try:
            self._attempt_ended()
            conn.discard()
            self.cluster.observe(self._key_now(), Failure.CONNECTION_RESET)
            if failure.kind == "protocol":
                reply = LocalReply(502, f"upstream protocol error: {failure.detail}", "UPE")
            else:
                reply = LocalReply(503, f"upstream reset: {failure.detail}", "UC")
            self._span_ended(0, reply.flag)
            self._failed(Failure.CONNECTION_RESET, reply)
        except Exception:
            self._internal_error()

    def expire(self, now: float) -> None:
        """A deadline passed (from the ticker)."""
        try:
            phase = self._phase
            if phase == _BODY:
                self._reply(REQUEST_TIMEOUT_REPLY)
            elif phase == _ACQUIRE:
                self._stop_acquiring()
                self._span_ended(0, "UT")
                self._failed(Failure.PER_TRY_TIMEOUT, TIMEOUT_REPLY)
            elif phase == _HEAD:
                conn = self._conn
                self._attempt_ended()
                if conn is not None:
                    conn.discard()
                self.cluster.stats_per_try_timeout.value += 1
                self.cluster.observe(self._key_now(), Failure.PER_TRY_TIMEOUT)
                self._span_ended(0, "UT")
                self._failed(Failure.PER_TRY_TIMEOUT, TIMEOUT_REPLY)
        except Exception:
            self._internal_error()

    def cancel(self) -> None:
        """The client went away: drop whatever is under way."""
        phase = self._phase
        if phase == _DONE:
            return
        self._deadlines.untrack(self)
        if phase == _ACQUIRE:
            self._stop_acquiring()
            self._span_ended(0, "DC")
        elif phase == _HEAD:
            conn = self._conn
            self._attempt_ended()
            if conn is not None:
                conn.discard()
            self._span_ended(0, "DC")
        elif phase == _BACKOFF and self._backoff is not None:
            self._backoff.cancel()
        self._close()

    # -- steps ---------------------------------------------------------------------------

    def _begin(self, body: bytes | None) -> None:
        exchange = self.exchange
        head = exchange.head
        self._body = body
        self._replayable = body is not None or not head.has_body
        target = self.target
        self._head_bytes = request_head_bytes(
            head,
            target=target.path.encode("latin-1") if target.path is not None else None,
            host=target.host.encode("latin-1") if target.host is not None else None,
            added=exchange.added_fields,
        )
        trace = exchange.trace
        if trace is not None and trace.present is not None:  # a client's line to rewrite:
            self._head_bytes = trace.upstream_head(self._head_bytes)  # our span is its parent
        self._attempt()

    def _attempt(self) -> None:
        self._phase = _ATTEMPT
        cluster = self.cluster
        key = cluster.pick(self._tried)
        if key is None:
            self._failed(
                Failure.CONNECT_FAILURE,
                LocalReply(503, f"no healthy upstream in {cluster.name}", "UH"),
            )
            return
        self._key = key
        self.exchange.upstream = key.text
        self.attempt_started = now = self._clock()
        deadline = self.target.retry_policy.attempt_deadline(now, self._request_deadline)
        acquired = cluster.pool.acquire_idle(key)
        if acquired is None:
            self._phase = _ACQUIRE
            task = asyncio.get_running_loop().create_task(cluster.pool.acquire(key))
            self._acquiring = task
            task.add_done_callback(self._acquired)
            if deadline is not None:
                self.deadline = deadline
                self._deadlines.track(self)
        elif isinstance(acquired, Overflow):
            self._reply(OVERFLOW_REPLY)
        else:
            self._send(acquired, deadline)

    def _acquired(self, task: asyncio.Task[UpstreamConnection | Overflow]) -> None:
        if task is not self._acquiring or self._phase != _ACQUIRE:
            return
        self._acquiring = None
        self._deadlines.untrack(self)
        try:
            if task.cancelled():
                return
            error = task.exception()
            if isinstance(error, UpstreamFailure):
                self.cluster.observe(self._key_now(), Failure.CONNECT_FAILURE)
                self._span_ended(0, "UF")
                self._failed(
                    Failure.CONNECT_FAILURE,
                    LocalReply(503, f"upstream connect error: {error.detail}", "UF"),
                )
                return
            if error is not None:
                raise error
            acquired = task.result()
            if isinstance(acquired, Overflow):
                self._reply(OVERFLOW_REPLY)
                return
            self._send(acquired, self._attempt_deadline())
        except Exception:
            self._internal_error()

    def _send(self, conn: UpstreamConnection, deadline: float | None) -> None:
        cluster = self.cluster
        self._conn = conn
        self._phase = _HEAD
        cluster.lb.on_request_start(self._key)  # type: ignore[arg-type]
        cluster.stats_rq_total.value += 1
        body = self._body
        head = self.exchange.head
        try:
            conn.send(head.method, self._head_bytes + body if body else self._head_bytes, self)
        except UpstreamFailure as failure:
            self.on_upstream_failure(conn, failure)
            return
        if body is None and head.has_body:
            self.exchange.stream_body_to(conn)
        if deadline is not None and self._phase == _HEAD:
            self.deadline = deadline
            self._deadlines.track(self)

    def _answered(self, conn: UpstreamConnection, response: ResponseHead) -> None:
        cluster = self.cluster
        key = self._key
        assert key is not None
        self._deadlines.untrack(self)
        self._conn = None
        cluster.lb.on_request_end(key)
        status = response.status
        cluster.observe(key, status)
        cluster.stats_rq_xx[status // 100] += 1
        if self._retry is None and self.target.retry_policy.final_status(status):
            decision: RetryDecision = DONE
        else:
            decision = self._retry_state().on_attempt_result(status, self._clock())
            if isinstance(decision, Retry):
                conn.discard()
                self._span_ended(status, "")
                self._retry_after(decision)
                return
            if isinstance(decision, NoRetry):
                self._count_no_retry(decision)
            self._retry_state().close()
        idle_ms = self.target.idle_ms
        conn.idle_timeout = idle_ms / 1000 if idle_ms else None
        self._phase = _DONE
        self.exchange.respond(response, conn)

    def _failed(self, outcome: Outcome, reply: LocalReply) -> None:
        """The attempt ended without a usable response: retry, or answer ``reply``."""
        decision = self._retry_state().on_attempt_result(outcome, self._clock())
        if isinstance(decision, Retry):
            self._retry_after(decision)
            return
        if isinstance(decision, NoRetry):
            self._count_no_retry(decision)
            if decision.reason is NoRetryReason.OVERALL_DEADLINE:
                reply = TIMEOUT_REPLY
        self._reply(reply)

    def _retry_after(self, decision: Retry) -> None:
        if self._key is not None:
            self._tried = self._tried | {self._key}  # retries go elsewhere when they can
        self.cluster.stats_rq_retry.value += 1
        trace = self.exchange.trace
        if trace is not None:  # the next attempt is a new client span
            self._head_bytes = trace.next_attempt(self._head_bytes)
        if decision.backoff:
            self._phase = _BACKOFF
            self._backoff = asyncio.get_running_loop().call_later(decision.backoff, self._retry_now)
        else:
            self._attempt()

    def _retry_now(self) -> None:
        self._backoff = None
        if self._phase != _BACKOFF:
            return
        try:
            self._attempt()
        except Exception:
            self._internal_error()

    def _count_no_retry(self, decision: NoRetry) -> None:
        cluster = self.cluster
        cluster.count("upstream_rq_" + decision.reason.counter)
        if decision.flag is not None:
            self.exchange.flags.append(decision.flag)
        if decision.reason is NoRetryReason.OVERALL_DEADLINE:
            cluster.stats_rq_timeout.value += 1

    @property
    def attempts(self) -> int:
        """Attempts made so far (the access log's ``UPSTREAM_REQUEST_ATTEMPT_COUNT``)."""
        retry = self._retry
        if retry is not None:
            return max(retry.attempts, 1)
        return 1 if self._key is not None else 0

    # -- helpers -------------------------------------------------------------------------

    def _retry_state(self) -> RetryState:
        retry = self._retry
        if retry is None:
            retry = self._retry = self.target.retry_policy.start(
                request_deadline=self._request_deadline,
                replayable=self._replayable,
                budget=self.cluster.budget,
            )
        return retry

    def _attempt_deadline(self) -> float | None:
        """When the attempt starting now must end: per-try timeout or request deadline."""
        return self.target.retry_policy.attempt_deadline(self._clock(), self._request_deadline)

    def _key_now(self) -> EndpointKey:
        key = self._key
        assert key is not None
        return key

    def _span_ended(self, status: int, flag: str) -> None:
        """The attempt in flight ended without giving the response: its client span."""
        trace = self.exchange.trace
        if trace is not None and self._key is not None:
            trace.attempt_ended(self.attempt_started, self._clock(), self._key.text, status, flag)

    def _attempt_ended(self) -> None:
        """The attempt on ``_conn`` is over, however it ended."""
        self._deadlines.untrack(self)
        self._conn = None
        self.cluster.lb.on_request_end(self._key_now())

    def _stop_acquiring(self) -> None:
        task, self._acquiring = self._acquiring, None
        if task is not None:
            task.cancel()

    def _reply(self, reply: LocalReply) -> None:
        self._phase = _DONE
        self._close()
        self.exchange.reply(reply)

    def _close(self) -> None:
        self._phase = _DONE
        self._deadlines.untrack(self)
        if self._retry is not None:
            self._retry.close()

    def _internal_error(self) -> None:
        log.exception("request failed inside the proxy")
        if self._phase == _HEAD and self._conn is not None:
            conn = self._conn
            self._attempt_ended()
            conn.discard()
        self._stop_acquiring()
        self._reply(INTERNAL_ERROR_REPLY)
