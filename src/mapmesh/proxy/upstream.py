"""One keep-alive connection to an upstream endpoint, as an asyncio Protocol.

The connection carries one exchange at a time. The request's forwarding sends a head (and
body) with :meth:`UpstreamConnection.send`, naming itself as the listener that is called
back from ``data_received`` with the response head or the failure — no future, no task.
Once it decides to forward the response it attaches the downstream exchange as the sink,
and from then on body bytes flow straight from ``data_received`` into it. Both are the
concrete classes, not protocols: compiled, a call to either is then a direct C call.
When the response ends and the codec says the connection can carry another request, the
connection goes back to its pool; otherwise it closes.

Requests sent in a burst are written together. When a send follows the previous one within
:data:`BURST_WINDOW` — many requests read in one event-loop iteration, as when a backlog
drains — its bytes, and those of every later send in that iteration, are held and written
when the iteration's I/O callbacks are done, so an upstream that shares the core (the app
beside its sidecar) wakes once for the lot instead of preempting the proxy once per
request. A send after a quiet spell is written at once, so an idle proxy adds no delay.
(The kernel's TCP autocorking makes the same trade for segments.)

``OSError`` and connection loss are translated here, once, into :class:`UpstreamFailure`
with the reason the retry logic and the access log need (STYLE #7).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, cast

from mapmesh.proxy.protocol.events import (
    Body,
    ConnectionClosed,
    EndBody,
    ProtocolError,
    ResponseHead,
)
from mapmesh.proxy.protocol.http1_client import Http1ClientCodec

if TYPE_CHECKING:  # both modules import this one
    from mapmesh.proxy.downstream import DownstreamExchange
    from mapmesh.proxy.forwarding import Forwarding

__all__ = ["UpstreamConnection", "UpstreamFailure", "connect"]

_monotonic: Final = time.monotonic  # called per request: no module attribute look-up

BURST_WINDOW: Final = 50e-6
"""Seconds: a send this soon after the previous one is part of a burst (see above)."""


class UpstreamFailure(Exception):
    """An attempt failed before a usable response head: ``kind`` says how.

    ``connect`` (refused, unreachable, timed out connecting), ``reset`` (closed or reset
    before the response head), ``protocol`` (the upstream broke HTTP: 502).
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


ExchangeEnd = Callable[["UpstreamConnection", bool], None]


class UpstreamConnection(asyncio.Protocol):
    """``on_exchange_end(conn, reusable)`` runs exactly once per exchange, however it ends;
    ``on_close(conn)`` once when the connection is gone. The pool does its accounting there."""

    def __init__(
        self, on_exchange_end: ExchangeEnd, on_close: Callable[[UpstreamConnection], None]
    ) -> None:
        self._codec = Http1ClientCodec()
        self._on_exchange_end = on_exchange_end
        self._on_close = on_close
        self.transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: Forwarding | None = None
        self._head_delivered = False  # body events wait for a sink from here on
        self._sink: DownstreamExchange | None = None
        self._draining = False
        self._in_exchange = False
        self.closed = False
        self.closed_locally = False
        self.requests = 0
        self.last_activity = _monotonic()
        self.idle_timeout: float | None = None  # while a response streams: the route's idle
        self._held = b""  # bytes of a burst, written at the end of the loop iteration

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        # Once per connection: asyncio.get_running_loop() makes a getpid system call, too
        # dear for every send.
        self._loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        self.last_activity = _monotonic()
        self._codec.receive_data(data)
        self._drain_events()

    def eof_received(self) -> bool:
        self._codec.receive_data(b"")
        self._drain_events()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        detail = str(exc) if exc else "upstream closed the connection"
        if self._listener is not None:
            listener, self._listener = self._listener, None
            listener.on_upstream_failure(self, UpstreamFailure("reset", detail))
        if self._sink is not None:
            sink, self._sink = self._sink, None
            sink.abort("upstream connection lost mid-response", "UPE")
        self._end_exchange(False)
        self._on_close(self)

    # -- the exchange --------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Idle and able to carry a request (the upstream may have closed it meanwhile)."""
        return not self.closed and not self._in_exchange and self._codec.reusable

    def send(self, method: bytes, data: bytes, listener: Forwarding) -> None:
        """Start an exchange: write the request head (and any body bytes already known);
        ``listener`` hears about the response head or the failure, exactly once."""
        assert self.transport is not None and self._loop is not None
        if not self.usable:
            raise UpstreamFailure("reset", "the upstream closed the pooled connection")
        self._codec.start_request(method)
        self._in_exchange = True
        self.idle_timeout = None
        now = _monotonic()
        self.last_activity = now
        self.requests += 1
        self._listener = listener
        self._head_delivered = False
        bursts = _BURSTS
        loop = self._loop
        if not self._held and (now - bursts.last_send < BURST_WINDOW or bursts.is_open(loop)):
            self._held = data
            bursts.hold(self, loop)
        else:
            self._write(data)
        bursts.last_send = now

    def send_body(self, data: bytes) -> None:
        if data:
            self._write(data)

    def _write(self, data: bytes) -> None:
        """Write now, or after the bytes held for the burst (then with them)."""
        assert self.transport is not None
        if self._held:
            self._held += data
        else:
            self.transport.write(data)

    def write_held(self) -> None:
        """Write the bytes held since :meth:`send` (the burst's end)."""
        data, self._held = self._held, b""
        if data and not self.closed and self.transport is not None:
            self.transport.write(data)

    @property
    def draining(self) -> bool:
        """Events are being read right now: a sink attached now gets the buffered body
        before control returns to the reader (and ``flush`` when the bytes run out)."""
        return self._draining

    def forward_to(self, sink: DownstreamExchange) -> None:
        """Stream the rest of the response (body, end) into ``sink``."""
        self._sink = sink
        self._head_delivered = False
        self._drain_events()

    def discard(self) -> None:
        """Drop the exchange (its response is not forwarded); never reuse the connection."""
        self._sink = None
        self._listener = None
        self._head_delivered = False
        self._end_exchange(False)
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed_locally = True
        self.closed = True
        self._held = b""
        if self.transport is not None:
            self.transport.close()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def _drain_events(self) -> None:
        # Re-entrant calls (a listener or sink calling back into this connection) return at
        # once: the loop below picks up whatever they changed.
        if self._draining:
            return
        self._draining = True
        codec = self._codec
        try:
            while True:
                if self._head_delivered:
                    return  # body events wait until a sink is attached (or the exchange ends)
                event = codec.next_event()
                if event is None:
                    if self._sink is not None:
                        self._sink.flush()  # the head waited for body bytes that did not come
                    return
                if isinstance(event, ResponseHead):
                    listener, self._listener = self._listener, None
                    if listener is not None:
                        self._head_delivered = True
                        listener.on_response_head(self, event)
                        if self.closed:
                            return  # discarded: nothing more of this response matters
                elif isinstance(event, Body):
                    if self._sink is not None:
                        self._sink.body(event.data)
                elif isinstance(event, EndBody):
                    self._finish(event)
                elif isinstance(event, ProtocolError):
                    self._fail(UpstreamFailure("protocol", event.reason))
                    return
                elif isinstance(event, ConnectionClosed):
                    self.close()
                    return
                # else an InformationalResponse (1xx): not forwarded; the response follows
        finally:
            self._draining = False

    def _finish(self, end: EndBody) -> None:
        sink, self._sink = self._sink, None
        reusable = self._codec.reusable and not self.closed
        self._end_exchange(reusable)
        if sink is not None:
            sink.end(end.trailers)
        if not reusable:
            self.close()

    def _fail(self, failure: UpstreamFailure) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            listener.on_upstream_failure(self, failure)
        elif self._sink is not None:
            sink, self._sink = self._sink, None
            sink.abort(failure.detail, "UT" if failure.kind == "timeout" else "UPE")
        self._end_exchange(False)
        self.close()

    def expire(self, now: float, keepalive_idle: float) -> None:
        """Enforce idle timeouts (called by the pool's periodic sweep, not a timer each):
        a response silent for longer than its route's idle timeout is cut; a keep-alive
        connection unused for ``keepalive_idle`` seconds is closed."""
        silent = now - self.last_activity
        if self._in_exchange:
            if self.idle_timeout is not None and silent > self.idle_timeout:
                self._fail(UpstreamFailure("timeout", "upstream idle timeout"))
        elif silent > keepalive_idle:
            self.close()

    def _end_exchange(self, reusable: bool) -> None:
        if self._in_exchange:
            self._in_exchange = False
            self._on_exchange_end(self, reusable)


class _Bursts:
    """The connections whose sends are held until the current loop iteration ends."""

    __slots__ = ("held", "last_send", "loop")

    def __init__(self) -> None:
        self.last_send = 0.0
        self.held: list[UpstreamConnection] = []
        self.loop: asyncio.AbstractEventLoop | None = None

    def is_open(self, loop: asyncio.AbstractEventLoop) -> bool:
        """A flush is due at the end of ``loop``'s iteration: sends on it join it."""
        return bool(self.held) and self.loop is loop

    def hold(self, conn: UpstreamConnection, loop: asyncio.AbstractEventLoop) -> None:
        if not self.held or loop is not self.loop:  # (a stopped loop's burst is dropped)
            self.held = []
            self.loop = loop
            loop.call_soon(self.flush)  # runs after this iteration's I/O callbacks
        self.held.append(conn)

    def flush(self) -> None:
        held, self.held = self.held, []
        for conn in held:
            conn.write_held()


_BURSTS: Final = _Bursts()


async def connect(
    address: str,
    port: int,
    timeout: float,
    on_exchange_end: ExchangeEnd,
    on_close: Callable[[UpstreamConnection], None],
) -> UpstreamConnection:
    """Open a connection; failures become :class:`UpstreamFailure` ("connect")."""
    loop = asyncio.get_running_loop()

    def factory() -> UpstreamConnection:
        return UpstreamConnection(on_exchange_end, on_close)

    try:
        _, protocol = await asyncio.wait_for(
            loop.create_connection(factory, address, port), timeout
        )
    except TimeoutError:
        raise UpstreamFailure("connect", f"connect timeout after {timeout:g}s") from None
    except OSError as exc:
        raise UpstreamFailure("connect", exc.strerror or str(exc)) from None
    return protocol
