"""A client connection to one of the proxy's listeners, as an asyncio Protocol.

Theory of operation
-------------------
Bytes go into the server codec; its events drive one :class:`DownstreamExchange` at a time
(pipelined requests wait, unparsed, in the codec until the response before them is
complete; reading pauses only when more than ``PIPELINE_BUFFER`` bytes of them pile up).
For each request the router either answers at once or starts a
:class:`~mapmesh.proxy.forwarding.Forwarding` with the config in force when the head
arrived — synchronously, from ``data_received``: no task per request.

Request bodies up to ``replay_limit`` bytes are collected before the first attempt, so a
retry can send them again; larger or chunked bodies are streamed to the one upstream
connection they go to (no retries then). Responses stream back as they arrive — re-chunked
when the client speaks HTTP/1.1 and the length is unknown — with backpressure: when the
client reads slowly, the upstream connection stops being read.

The exchange records its statistics, traffic edge and (when sampled) spans, and one
access-log line, when the response ends (:mod:`.telemetry.recorder`). Its trace context —
request id, ``traceparent`` for the upstream, the sampling decision — is settled when the head
arrives (:func:`~.telemetry.tracing.trace_fields`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final, cast

from mapmesh.proxy.accesslog import AccessLogger
from mapmesh.proxy.cluster import ClusterRuntime
from mapmesh.proxy.config import ProxyConfig
from mapmesh.proxy.forwarding import BODY_PENDING, INTERNAL_ERROR_REPLY, Forwarding
from mapmesh.proxy.protocol.events import (
    Body,
    ConnectionClosed,
    EndBody,
    ProtocolError,
    RequestHead,
    ResponseHead,
)
from mapmesh.proxy.protocol.http1 import (
    encode_chunk,
    last_chunk,
    local_response,
    response_head_bytes,
)
from mapmesh.proxy.protocol.http1_server import Http1ServerCodec
from mapmesh.proxy.router import LocalReply, Router
from mapmesh.proxy.stats import Stats
from mapmesh.proxy.telemetry.recorder import ListenerTelemetry
from mapmesh.proxy.telemetry.tracing import Trace, trace_fields
from mapmesh.proxy.upstream import UpstreamConnection

__all__ = ["DownstreamConnection", "DownstreamExchange"]

_monotonic: Final = time.monotonic  # called per request: no module attribute look-up

log = logging.getLogger("mapmesh.proxy")

REPLAY_LIMIT: Final = 64 * 1024
# Bytes of later (pipelined) requests kept while one is answered, before reading pauses.
PIPELINE_BUFFER: Final = 64 * 1024

# Wall-clock time of monotonic 0, so an exchange reads one clock and the log converts.
_WALL_OFFSET: Final = time.time() - time.monotonic()


class DownstreamExchange:
    """One request from downstream and its response (what a forwarding serves)."""

    __slots__ = (
        "_body_done",
        "_body_waiter",
        "_chunked_out",
        "_chunks",
        "_pending_head",
        "_stream_to",
        "added_fields",
        "bytes_received",
        "bytes_sent",
        "connection",
        "destination",
        "finished",
        "flags",
        "forwarding",
        "head",
        "request_id",
        "response",
        "route_name",
        "started_mono",
        "status",
        "trace",
        "upstream",
    )

    def __init__(self, connection: DownstreamConnection, head: RequestHead, now: float) -> None:
        self.connection = connection
        self.head = head
        self.trace: Trace | None
        self.request_id, self.added_fields, self.trace = trace_fields(head, connection.sampler)
        self.flags: list[str] = []
        self.upstream: str | None = None
        self.route_name: str | None = None
        self.destination: str | None = None  # the virtual service asked for (the router's)
        self.response: ResponseHead | None = None  # the upstream's, once one is forwarded
        self.forwarding: Forwarding | None = None
        self.started_mono = now
        self.status = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.finished = False
        self._chunks: list[bytes] = []
        self._body_done = not head.has_body
        self._body_waiter: Forwarding | None = None  # told when a replayable body is in
        self._stream_to: UpstreamConnection | None = None
        self._chunked_out = False
        self._pending_head = b""

    # -- request body (from the codec) ---------------------------------------------------

    def request_body(self, waiter: Forwarding) -> object:
        head = self.head
        if not head.has_body:
            return b""
        if head.content_length is None or head.content_length > REPLAY_LIMIT:
            return None  # too large to keep for a replay: stream it
        if self._body_done:
            return self._take_chunks()
        self._body_waiter = waiter
        return BODY_PENDING

    def _take_chunks(self) -> bytes:
        chunks, self._chunks = self._chunks, []
        return b"".join(chunks)

    def on_body(self, data: bytes) -> None:
        self.bytes_received += len(data)
        if self._stream_to is not None:
            self._stream_to.send_body(encode_chunk(data) if self.head.chunked else data)
        else:
            self._chunks.append(data)

    def on_body_end(self) -> None:
        self._body_done = True
        if self._stream_to is not None:
            if self.head.chunked:
                self._stream_to.send_body(last_chunk())
        elif self._body_waiter is not None:
            waiter, self._body_waiter = self._body_waiter, None
            waiter.body_ready(self._take_chunks())

    def stream_body_to(self, conn: UpstreamConnection) -> None:
        self._stream_to = conn
        for chunk in self._chunks:
            conn.send_body(encode_chunk(chunk) if self.head.chunked else chunk)
        self._chunks = []
        if self._body_done and self.head.chunked:
            conn.send_body(last_chunk())

    # -- response ------------------------------------------------------------------------

    def respond(self, response: ResponseHead, conn: UpstreamConnection) -> None:
        """Stream ``response`` (whose body ``conn`` delivers) to the client."""
        if self.finished:
            conn.discard()
            return
        connection = self.connection
        self.status = response.status
        self.response = response
        plan = response_head_bytes(response, self.head, keep_alive=connection.keep_alive)
        self._chunked_out = plan.chunked
        connection.keep_alive = plan.keep_alive and connection.keep_alive
        connection.current_upstream = conn
        # The head waits for the body bytes already received, so a small response leaves in
        # one write (one syscall); whatever is not here yet streams after it.
        self._pending_head = plan.head
        conn.forward_to(self)
        if not conn.draining and self._pending_head:
            self._flush_head()

    def flush(self) -> None:
        if self._pending_head:
            self._flush_head()

    def _flush_head(self, then: bytes = b"") -> None:
        head, self._pending_head = self._pending_head, b""
        if head or then:
            self.connection.write(head + then if then else head)

    def body(self, data: bytes) -> None:
        self.bytes_sent += len(data)
        self._flush_head(encode_chunk(data) if self._chunked_out else data)

    def end(self, trailers: list[tuple[bytes, bytes]]) -> None:
        self._flush_head(last_chunk(trailers) if self._chunked_out else b"")
        self._finish()

    def abort(self, reason: str, flag: str) -> None:
        """The upstream failed mid-response: the client can only see a cut connection."""
        self.flags.append(flag)
        self.connection.keep_alive = False
        self._finish()

    def reply(self, reply: LocalReply) -> None:
        if self.finished:
            return
        self.status = reply.status
        if reply.flag and reply.flag not in self.flags:
            self.flags.append(reply.flag)
        connection = self.connection
        keep = connection.keep_alive and self._body_done and reply.status < 500
        connection.keep_alive = keep
        headers = (*reply.headers, (b"x-request-id", self.request_id))
        data = local_response(
            reply.status,
            reply.reason,
            headers=headers,
            keep_alive=keep,
            http10=self.head.http_version == "1.0",
            head_only=self.head.method == b"HEAD",
        )
        self.bytes_sent += len(data)
        connection.write(data)
        self._finish()

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.connection.exchange_finished(self)

    @property
    def started(self) -> float:
        """Wall-clock start time (seconds since the epoch)."""
        return _WALL_OFFSET + self.started_mono

    @property
    def duration_ms(self) -> float:
        return (_monotonic() - self.started_mono) * 1000


class DownstreamConnection(asyncio.Protocol):
    def __init__(
        self,
        router: Router,
        config: Callable[[], ProxyConfig | None],
        stats: Stats,
        access_log: AccessLogger,
        listener: str,
        on_close: Callable[[DownstreamConnection], None],
        *,
        telemetry: ListenerTelemetry,
    ) -> None:
        self._router = router
        self._config = config
        self._stats = stats
        self._access_log = access_log
        self.listener = listener
        self._labels = (("listener", listener),)
        self._rq_total = stats.cell("downstream_rq_total", self._labels)
        self._telemetry = telemetry
        self._recorder = telemetry.recorder()  # downstream_rq_xx, _time: from edges
        self.sampler = telemetry.sampler
        self._on_close = on_close
        self._codec = Http1ServerCodec()
        self.transport: asyncio.Transport | None = None
        self.keep_alive = True
        self.current: DownstreamExchange | None = None
        self.current_upstream: UpstreamConnection | None = None
        self._closed = False
        self._paused_by_us = False
        self._pumping = False
        self._request_read = False  # the current request's EndBody has been seen

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._stats.inc("downstream_cx_total", self._labels)
        self._stats.inc("downstream_cx_active", self._labels)

    def data_received(self, data: bytes) -> None:
        codec = self._codec
        codec.receive_data(data)
        if self._request_read and self.current is not None:
            if codec.buffered > PIPELINE_BUFFER:
                self._pause()  # a client pipelining faster than it is answered
            return
        self._pump()

    def eof_received(self) -> bool:
        self._codec.receive_data(b"")
        self._pump()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._stats.inc("downstream_cx_active", self._labels, -1)
        exchange = self.current
        if exchange is not None and not exchange.finished:
            exchange.flags.append("DC")
            if exchange.forwarding is not None:
                exchange.forwarding.cancel()
            if self.current_upstream is not None:
                self.current_upstream.discard()
            exchange.finished = True
            self._log(exchange)
        self._on_close(self)

    def pause_writing(self) -> None:
        if self.current_upstream is not None:
            self.current_upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.current_upstream is not None:
            self.current_upstream.resume_reading()

    # -- events --------------------------------------------------------------------------

    def _pump(self) -> None:
        # An exchange can finish while this loop runs (a local reply, a response that was
        # already complete): exchange_finished then calls back here, and the loop that is
        # already running picks the next request up, so pipelining never recurses.
        if self._pumping:
            return
        self._pumping = True
        codec = self._codec
        try:
            while not self._closed:
                current = self.current
                if current is not None and (current.finished or self._request_read):
                    return  # later requests wait until this one is answered
                event = codec.next_event()
                if event is None:
                    return
                kind = type(event)
                if kind is RequestHead:
                    self._start(event)  # type: ignore[arg-type]
                elif kind is EndBody:
                    if current is not None:
                        self._request_read = True
                        current.on_body_end()
                elif kind is Body:
                    if current is not None:
                        current.on_body(event.data)  # type: ignore[attr-defined]
                elif kind is ProtocolError:
                    self._protocol_error(event)  # type: ignore[arg-type]
                    return
                elif kind is ConnectionClosed:
                    if self.current is None and self.transport is not None:
                        self.transport.close()
                    return
        finally:
            self._pumping = False

    def _start(self, head: RequestHead) -> None:
        exchange = DownstreamExchange(self, head, _monotonic())
        self.current = exchange
        self.current_upstream = None
        self._request_read = False
        self.keep_alive = head.keep_alive
        self._rq_total.value += 1
        config = self._config()
        if config is None:
            exchange.reply(LocalReply(503, "no configuration received yet", "NC"))
            return
        try:
            exchange.forwarding = self._router.handle(config, exchange)
        except Exception:
            log.exception("request failed inside the proxy")
            exchange.reply(INTERNAL_ERROR_REPLY)

    def _protocol_error(self, error: ProtocolError) -> None:
        self.keep_alive = False
        exchange = self.current
        if exchange is not None and not exchange.finished:
            if exchange.status:  # a response is under way: just cut
                self._close()
                return
            if exchange.forwarding is not None:
                exchange.forwarding.cancel()
            exchange.reply(LocalReply(error.status_hint, error.reason, "DPE"))
            return
        self._stats.inc("downstream_rq_rejected", (("reason", "protocol_error"),))
        self.write(local_response(error.status_hint, error.reason, keep_alive=False))
        self._close()

    def exchange_finished(self, exchange: DownstreamExchange) -> None:
        self._log(exchange)
        self.current = None
        self.current_upstream = None
        self._request_read = False
        if not self.keep_alive or self._codec.must_close:
            self._close()
            return
        self._resume()
        self._pump()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self._closed:
            self.transport.write(data)

    def _log(self, exchange: DownstreamExchange) -> None:
        """Record the finished exchange, then drop its link to the forwarding: the two refer
        to each other, and a cycle per request would be left to the cyclic GC (its pauses
        show in the p99, and every request's objects would outlive it)."""
        now = _monotonic()
        forwarding = exchange.forwarding
        cluster = forwarding.cluster if forwarding is not None else None
        # When the attempt whose response was forwarded started (None: no upstream answered).
        answered_at = (
            forwarding.attempt_started
            if forwarding is not None and exchange.response is not None
            else None
        )
        self._recorder.record(
            cluster,
            exchange.destination,
            exchange.status,
            now - exchange.started_mono,
            now - answered_at if answered_at is not None else -1.0,
            exchange.flags,
        )
        if exchange.trace is not None:
            self._traced(exchange, exchange.trace, now, cluster, answered_at)
        if self._access_log.enabled:
            self._access_log.record(exchange, now)
        exchange.forwarding = None

    def _traced(
        self,
        exchange: DownstreamExchange,
        trace: Trace,
        now: float,
        cluster: ClusterRuntime | None,
        answered_at: float | None,
    ) -> None:
        """A sampled request ended: its spans' makings go to the listener's exporters."""
        telemetry = self._telemetry
        head = exchange.head
        telemetry.traced(
            (
                trace, exchange.started_mono, now, exchange.status, exchange.flags,
                exchange.upstream, cluster.name if cluster is not None else None,
                telemetry.name, telemetry.destination or exchange.destination or "",
                head.method, head.path, exchange.request_id, answered_at,
            )
        )  # fmt: skip

    def _pause(self) -> None:
        if self.transport is not None and not self._paused_by_us:
            self._paused_by_us = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self.transport is not None and self._paused_by_us and not self._closed:
            self._paused_by_us = False
            self.transport.resume_reading()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        """Drain: close now when idle, else after the response in flight."""
        self.keep_alive = False
        if self.current is None:
            self._close()
