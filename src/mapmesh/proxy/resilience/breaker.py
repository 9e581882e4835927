"""Circuit breaker: a cluster's connection-pool accounting against its limits.

Theory of operation
-------------------
Envoy's resource manager (``resource_manager_impl.h``), reduced to what App Mesh configures —
``maxConnections``, ``maxPendingRequests``, ``maxRequests`` (``docs/defaults.md``: 1024 each).
The breaker only counts; the pool owns the connections and asks before acting, then reports
what it did (decide synchronously, then do the I/O).

Three counters, each always within ``[0, limit]``:

* ``connections`` — upstream connections open or being opened;
* ``active_requests`` — requests on a connection or waiting for the connection opened for them;
* ``pending_requests`` — requests waiting because ``connections`` is at its limit.

A request arrives (:meth:`CircuitBreaker.try_acquire_request`)::

    active_requests == max_requests            -> Overflow(MAX_REQUESTS)         503 UO
    the pool has an idle connection            -> Admit(ASSIGN)    active += 1
    connections < max_connections              -> Admit(CONNECT)   active += 1, connections += 1
    pending_requests < max_pending_requests    -> Admit(QUEUE)     pending += 1
    otherwise                                  -> Overflow(MAX_PENDING_REQUESTS) 503 UO

Every overflow is answered at once with 503 and ``x-mapmesh-overloaded: true`` (flag UO). A
queued request waits — up to its request timeout, which its driver enforces — until the pool
hands it a connection (:meth:`~CircuitBreaker.assign_pending`, which checks ``max_requests``
again) or it gives up (:meth:`~CircuitBreaker.abandon_pending`). When a connection closes and
requests are queued, the pool asks :meth:`~CircuitBreaker.may_open_connection` and reports the
new one with :meth:`~CircuitBreaker.on_connection_opening`. A request that ends calls
:meth:`~CircuitBreaker.release_request`; a connection that closes (or fails to open) calls
:meth:`~CircuitBreaker.on_connection_closed`. Every operation is O(1); the decisions are
preallocated, so nothing is allocated per request.

Approximations against Envoy, deliberate:

* one set of limits per cluster and proxy process — no priorities, no per-host limits;
* a request waiting for a connection opened for it counts as active, not pending: mapmesh's
  ``max_pending_requests`` is App Mesh's "requests queued after max connections", not Envoy's
  "every request without a ready connection";
* ``max_requests`` applies to HTTP/1.1 too (as in Envoy, where it rarely binds there);
* Envoy's ``max_retries`` resource is replaced by the retry budget (:mod:`.budget`), which
  reads :attr:`~CircuitBreaker.active_requests` and :attr:`~CircuitBreaker.pending_requests`.

Statistics count admissions by action and overflows by reason; the remaining capacity of each
limit is derived on read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

from mapmesh.model import snapshot

__all__ = [
    "ADMIT_ASSIGN",
    "ADMIT_CONNECT",
    "ADMIT_QUEUE",
    "OVERLOADED_HEADER",
    "Action",
    "Admission",
    "Admit",
    "BreakerStatistics",
    "CircuitBreaker",
    "Overflow",
    "OverflowReason",
]

OVERLOADED_HEADER: Final = ("x-mapmesh-overloaded", "true")
"""The header every overflow answer carries."""


class Action(Enum):
    """What the pool does with an admitted request."""

    ASSIGN = "assign"  # put it on an idle connection
    CONNECT = "connect"  # open a connection for it (the slot is already reserved)
    QUEUE = "queue"  # let it wait for a connection


class OverflowReason(Enum):
    """Which limit was full. ``counter`` is the statistic; the flag is always UO."""

    MAX_REQUESTS = "overflow_max_requests"
    MAX_PENDING_REQUESTS = "overflow_max_pending_requests"

    @property
    def counter(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Admit:
    action: Action


@dataclass(frozen=True, slots=True)
class Overflow:
    """Answer 503 at once with :data:`OVERLOADED_HEADER`; access-log flag UO."""

    reason: OverflowReason
    status: int = 503
    flag: str = "UO"


Admission = Admit | Overflow

ADMIT_ASSIGN: Final = Admit(Action.ASSIGN)
ADMIT_CONNECT: Final = Admit(Action.CONNECT)
ADMIT_QUEUE: Final = Admit(Action.QUEUE)
_OVERFLOW_REQUESTS: Final = Overflow(OverflowReason.MAX_REQUESTS)
_OVERFLOW_PENDING: Final = Overflow(OverflowReason.MAX_PENDING_REQUESTS)


@dataclass(frozen=True, slots=True)
class BreakerStatistics:
    """Current counts, their limits, and how many requests were admitted and refused."""

    connections: int
    max_connections: int
    pending_requests: int
    max_pending_requests: int
    active_requests: int
    max_requests: int
    admitted: dict[str, int]
    overflows: dict[str, int]


class CircuitBreaker:
    """Counters of one cluster against its connection-pool limits (module docstring)."""

    __slots__ = (
        "_active",
        "_assigned",
        "_connected",
        "_connections",
        "_overflow_pending",
        "_overflow_requests",
        "_pending",
        "_queued",
        "max_connections",
        "max_pending_requests",
        "max_requests",
    )

    def __init__(
        self,
        max_connections: int = 1024,
        max_pending_requests: int = 1024,
        max_requests: int = 1024,
    ) -> None:
        for name, value in (
            ("max_connections", max_connections),
            ("max_pending_requests", max_pending_requests),
            ("max_requests", max_requests),
        ):
            if value < 0:
                raise ValueError(f"connection_pool.{name}: must be >= 0, got {value}")
        self.max_connections = max_connections
        self.max_pending_requests = max_pending_requests
        self.max_requests = max_requests
        self._connections = 0
        self._pending = 0
        self._active = 0
        # Plain int counters: enum-keyed dicts would cost a Python-level hash per request.
        self._assigned = self._connected = self._queued = 0
        self._overflow_requests = self._overflow_pending = 0

    @classmethod
    def from_snapshot(cls, pool: snapshot.ConnectionPool) -> CircuitBreaker:
        return cls(pool.max_connections, pool.max_pending_requests, pool.max_requests)

    # -- counts (read by the retry budget) ---------------------------------------------------

    @property
    def connections(self) -> int:
        return self._connections

    @property
    def active_requests(self) -> int:
        return self._active

    @property
    def pending_requests(self) -> int:
        return self._pending

    # -- requests ----------------------------------------------------------------------------

    def try_acquire_request(self, *, idle_connection: bool = False) -> Admission:
        """Admit a new request or refuse it; ``idle_connection``: the pool has one ready."""
        if self._active >= self.max_requests:
            self._overflow_requests += 1
            return _OVERFLOW_REQUESTS
        if idle_connection:
            self._active += 1
            self._assigned += 1
            return ADMIT_ASSIGN
        if self._connections < self.max_connections:
            self._connections += 1
            self._active += 1
            self._connected += 1
            return ADMIT_CONNECT
        if self._pending < self.max_pending_requests:
            self._pending += 1
            self._queued += 1
            return ADMIT_QUEUE
        self._overflow_pending += 1
        return _OVERFLOW_PENDING

    def assign_pending(self) -> Admission:
        """A queued request got a connection: it leaves the queue and becomes active — unless
        ``max_requests`` filled up meanwhile (then answer it with the overflow)."""
        self._leave_queue()
        if self._active >= self.max_requests:
            self._overflow_requests += 1
            return _OVERFLOW_REQUESTS
        self._active += 1
        return ADMIT_ASSIGN

    def abandon_pending(self) -> None:
        """A queued request gave up (request timeout, client gone)."""
        self._leave_queue()

    def release_request(self) -> None:
        """An active request ended, whatever its outcome."""
        if self._active <= 0:
            raise RuntimeError("release_request without an active request")
        self._active -= 1

    # -- connections -------------------------------------------------------------------------

    def may_open_connection(self) -> bool:
        """Whether one more upstream connection fits under ``max_connections``."""
        return self._connections < self.max_connections

    def on_connection_opening(self) -> None:
        """The pool opens a connection outside :meth:`try_acquire_request` (for a queued
        request, after another connection closed)."""
        if self._connections >= self.max_connections:
            raise RuntimeError("on_connection_opening over max_connections")
        self._connections += 1

    def on_connection_closed(self) -> None:
        """A connection closed, or failed to open."""
        if self._connections <= 0:
            raise RuntimeError("on_connection_closed without an open connection")
        self._connections -= 1

    # -- visibility --------------------------------------------------------------------------

    def statistics(self) -> BreakerStatistics:
        return BreakerStatistics(
            connections=self._connections,
            max_connections=self.max_connections,
            pending_requests=self._pending,
            max_pending_requests=self.max_pending_requests,
            active_requests=self._active,
            max_requests=self.max_requests,
            admitted={
                Action.ASSIGN.value: self._assigned,
                Action.CONNECT.value: self._connected,
                Action.QUEUE.value: self._queued,
            },
            overflows={
                OverflowReason.MAX_REQUESTS.counter: self._overflow_requests,
                OverflowReason.MAX_PENDING_REQUESTS.counter: self._overflow_pending,
            },
        )

    def __repr__(self) -> str:
        return (
            f"<CircuitBreaker connections={self._connections}/{self.max_connections}"
            f" pending={self._pending}/{self.max_pending_requests}"
            f" active={self._active}/{self.max_requests}>"
        )

    def _leave_queue(self) -> None:
        if self._pending <= 0:
            raise RuntimeError("no pending request to dequeue")
        self._pending -= 1
