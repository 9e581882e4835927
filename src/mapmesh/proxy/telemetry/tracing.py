"""The trace context of one request: what arrived, whether it is sampled, what goes upstream.

Theory of operation
-------------------
A trace is decided at its first hop and followed by every later one. When a request
arrives, :func:`trace_fields` reads what the client sent — a W3C ``traceparent``
(``00-<trace id>-<parent span id>-<flags>``, sampled when flag bit 0 is set) or, without one,
X-Ray's ``X-Amzn-Trace-Id`` (``Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;
Sampled=1``: the trace id is the 8 + 24 hex digits of Root; ``Sampled=?`` or none leaves the
decision to us) — and answers three things: the request id (the client's ``x-request-id`` or
a new one), the field lines to add upstream, and a :class:`Trace` when the request is sampled
(else None: an unsampled request makes no trace object at all).

Without a usable context the proxy starts a trace and decides with its :class:`Sampler`: a
share of such requests (``--trace-sampling``), at most so many a second across the proxy
(``--trace-rate-limit``), so that a busy proxy's traces — and the work of exporting them — stay
bounded whatever its request rate (X-Ray's and Jaeger's samplers cap the same way). The
decision travels as the ``traceparent`` flag, so every later hop honours it whatever its own
rate. A sampled request has a *server* span (this hop, from the request head to the end of the
response) and one *client* span per upstream attempt, whose id is the parent id in the
``traceparent`` that attempt carries — so the next proxy's server span is the child of this
proxy's client span, and a retry is a sibling attempt with its own id. An unsampled context is
forwarded as it came (flag 00 stays 00); an invalid ``traceparent`` is replaced when this hop
starts a sampled trace, else forwarded untouched. ``tracestate`` and ``X-Amzn-Trace-Id`` are
ordinary fields and are forwarded unchanged; the ``traceparent`` added next to an X-Ray
header carries the same trace id.

Cost: the common first hop (no context, no request id) draws all its ids with one call to a
PRNG seeded from the OS (ids must be unique, not secret) and formats two field lines — as
before tracing existed; sampling at 1.0 adds one small :class:`Trace`. Parsing runs only for
requests that carry a context.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable
from typing import Final

from mapmesh.proxy import speedups
from mapmesh.proxy.protocol.events import RequestHead

__all__ = [
    "DEFAULT_RATE_LIMIT",
    "NEVER",
    "Attempt",
    "Sampler",
    "Trace",
    "new_span_id",
    "parse_amzn_trace_id",
    "parse_traceparent",
    "trace_fields",
]

_ids: Final = random.Random(os.urandom(16))
_bits: Final = _ids.getrandbits
_random: Final = _ids.random

_TRACEPARENT: Final = re.compile(
    rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?"
)
_ZERO_TRACE: Final = b"0" * 32
_ZERO_SPAN: Final = b"0" * 16
_AMZN_ROOT: Final = re.compile(rb"1-([0-9a-fA-F]{8})-([0-9a-fA-F]{24})")
_HEX16: Final = re.compile(rb"[0-9a-fA-F]{16}")

Attempt = tuple[bytes, float, float, str, int, str]
"""A finished upstream attempt (a client span): (span id, start, end — monotonic seconds —,
endpoint ``address:port``, status (0: none), response flag or "")."""


def _random_hex_python(count: int) -> bytes:
    return b"%0*x" % (count, _bits(count * 4))


_random_hex: Final[Callable[[int], bytes]] = (
    speedups.C.random_hex if speedups.C is not None else _random_hex_python
)
"""``count`` random lower-case hex digits: one C call where the speedups are built."""


def new_span_id() -> bytes:
    return _random_hex(16)


class Trace:
    """A sampled request's trace: ids, and the client spans of attempts already over.

    ``client_id`` is the span id of the attempt in flight (the parent id the upstream sees);
    ``present`` is the ``traceparent`` value the upstream head holds now and that
    :meth:`upstream_head` replaces (None: the proxy added its own line, already right).
    """

    __slots__ = ("attempts", "client_id", "parent_id", "present", "span_id", "trace_id")

    def __init__(
        self,
        trace_id: bytes,
        span_id: bytes,
        parent_id: bytes | None,
        client_id: bytes,
        present: bytes | None = None,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.client_id = client_id
        self.present = present
        self.attempts: list[Attempt] | None = None  # made by the first attempt that fails

    @property
    def traceparent(self) -> bytes:
        """The value the upstream request of the current attempt carries."""
        return b"00-%s-%s-01" % (self.trace_id, self.client_id)

    def upstream_head(self, head: bytes) -> bytes:
        """``head`` (a whole upstream request head) with its ``traceparent`` naming the
        current client span: the field value after the request line is replaced in place."""
        present = self.present
        if present is None:
            return head
        value = self.traceparent
        at = head.find(present, head.find(b"\r\n"))
        if at < 0:
            return head
        self.present = value
        return head[:at] + value + head[at + len(present) :]

    def next_attempt(self, head: bytes) -> bytes:
        """A retry: a new client span id, and ``head`` carrying it."""
        if self.present is None:
            self.present = self.traceparent
        self.client_id = new_span_id()
        return self.upstream_head(head)

    def attempt_ended(
        self, start: float, end: float, endpoint: str, status: int, flag: str
    ) -> None:
        """Record the client span of an attempt that did not give the response."""
        attempt = (self.client_id, start, end, endpoint, status, flag)
        if self.attempts is None:
            self.attempts = [attempt]
        else:
            self.attempts.append(attempt)


DEFAULT_RATE_LIMIT: Final = 50.0
"""Traces a proxy starts per second at most, by default."""


class Sampler:
    """Decides for requests that arrive without a sampling decision: ``rate`` (0..1) of them
    start a trace, but no more than ``per_second`` a second (None: no cap), with bursts of up
    to one second's worth. One per proxy, shared by its listeners."""

    __slots__ = ("_clock", "_last", "_tokens", "per_second", "rate")

    def __init__(
        self,
        rate: float,
        per_second: float | None = DEFAULT_RATE_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"trace sampling: must be from 0 to 1, got {rate}")
        if per_second is not None and per_second <= 0:
            raise ValueError(f"trace rate limit: must be above 0, got {per_second}")
        self.rate = rate
        self.per_second = per_second
        self._clock = clock
        self._tokens = per_second or 0.0
        self._last = clock()

    def sample(self) -> bool:
        """Whether the next such request starts a sampled trace."""
        rate = self.rate
        if rate <= 0.0 or (rate < 1.0 and _random() >= rate):
            return False
        per_second = self.per_second
        if per_second is None:
            return True
        now = self._clock()
        tokens = min(per_second, self._tokens + (now - self._last) * per_second)
        self._last = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True


NEVER: Final = Sampler(0.0)
"""A sampler that starts no trace (contexts that arrive sampled are still followed)."""


def trace_fields(head: RequestHead, sampler: Sampler) -> tuple[bytes, bytes, Trace | None]:
    """(request id, field lines to add upstream, the trace when sampled) for ``head``;
    ``sampler`` decides for requests that arrive without a sampling decision."""
    request_id = head.request_id
    if head.traceparent is None and head.amzn_trace_id is None:  # a first hop
        if sampler.sample():
            ids = _random_hex(96)  # one draw: request, trace, 2 spans
            trace_id = ids[32:64]
            client = ids[64:80]
            trace = Trace(trace_id, ids[80:], None, client)
            if request_id is None:
                request_id = ids[:32]
                added = b"x-request-id: %s\r\ntraceparent: 00-%s-%s-01\r\n" % (
                    request_id,
                    trace_id,
                    client,
                )
            else:
                added = b"traceparent: 00-%s-%s-01\r\n" % (trace_id, client)
            return request_id, added, trace
        ids = _random_hex(80)
        if request_id is None:
            request_id = ids[:32]
            added = b"x-request-id: %s\r\ntraceparent: 00-%s-%s-00\r\n" % (
                request_id,
                ids[32:64],
                ids[64:],
            )
        else:
            added = b"traceparent: 00-%s-%s-00\r\n" % (ids[32:64], ids[64:])
        return request_id, added, None
    return _continued(head, request_id, sampler)


def _continued(
    head: RequestHead, request_id: bytes | None, sampler: Sampler
) -> tuple[bytes, bytes, Trace | None]:
    """A request that carries a trace context (or a broken one)."""
    added = b""
    if request_id is None:
        request_id = _random_hex(32)
        added = b"x-request-id: %s\r\n" % request_id
    traceparent = head.traceparent
    if traceparent is not None:
        parsed = parse_traceparent(traceparent)
        if parsed is not None:
            if not parsed[2]:
                return request_id, added, None  # honoured: forwarded as it came
            trace = Trace(parsed[0], new_span_id(), parsed[1], new_span_id(), traceparent)
            return request_id, added, trace
        if not sampler.sample():
            return request_id, added, None
        trace_id = _random_hex(32)
        return request_id, added, Trace(trace_id, new_span_id(), None, new_span_id(), traceparent)
    amzn = parse_amzn_trace_id(head.amzn_trace_id or b"")
    trace_id, parent, decided = amzn if amzn is not None else (_random_hex(32), None, None)
    sampled = sampler.sample() if decided is None else decided
    client = new_span_id()
    if not sampled:
        return request_id, added + b"traceparent: 00-%s-%s-00\r\n" % (trace_id, client), None
    added += b"traceparent: 00-%s-%s-01\r\n" % (trace_id, client)
    return request_id, added, Trace(trace_id, new_span_id(), parent, client)


def parse_traceparent(value: bytes) -> tuple[bytes, bytes, bool] | None:
    """(trace id, parent span id, sampled) of a W3C ``traceparent``; None when invalid.

    Version ``ff`` and all-zero ids are invalid; a version above 00 may carry more fields
    after the flags (read as version 00, as the specification asks)."""
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_id, parent, flags, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest) or trace_id == _ZERO_TRACE:
        return None
    if parent == _ZERO_SPAN:
        return None
    return trace_id, parent, bool(int(flags, 16) & 1)


def parse_amzn_trace_id(value: bytes) -> tuple[bytes, bytes | None, bool | None] | None:
    """(trace id, parent, sampled — None when ``?`` or absent) of an ``X-Amzn-Trace-Id``;
    None without a valid ``Root``. The trace id is Root's 8 + 24 hex digits, lower case."""
    root = parent = None
    sampled: bool | None = None
    for part in value.split(b";"):
        key, _, item = part.strip().partition(b"=")
        key = key.strip().lower()
        item = item.strip()
        if key == b"root":
            match = _AMZN_ROOT.fullmatch(item)
            if match is None:
                return None
            root = (match.group(1) + match.group(2)).lower()
        elif key == b"parent" and _HEX16.fullmatch(item):
            parent = item.lower()
        elif key == b"sampled":
            sampled = True if item == b"1" else False if item == b"0" else None
    if root is None or root == _ZERO_TRACE:
        return None
    if parent == _ZERO_SPAN:
        parent = None
    return root, parent, sampled
