"""UDP and TCP front end of the DNS table, on a thread and event loop of its own.

Why a thread: the control plane's loop also pushes snapshots to proxies, serves the APIs
and runs health checks; pushing to 1,000 proxies held DNS answers ~18 ms when they shared a
loop. Here a daemon thread runs its own uvloop loop and only ever reads the table, which
the control plane rebuilds in place (see :mod:`mapmesh.dns.zone` for why that is safe).

Why no per-query task: a UDP query is answered synchronously inside
``datagram_received`` (parse, look up, join, ``sendto``); a TCP connection is a Protocol
that unframes the 2-byte length prefixes, answers every complete query in the buffer and
writes all replies at once. TCP connections are capped (new ones beyond the cap are
closed at once) and closed after an idle timeout checked by one timer per connection that
is re-armed only when it fires.

Sockets are bound synchronously in :meth:`DnsServer.start` (UDP and TCP on one port, also
when asked for port 0), so a port conflict raises ``OSError`` to the caller.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, cast

import uvloop

from mapmesh.dns.wire import MAX_UDP_PAYLOAD

__all__ = ["Answerer", "DnsServer", "ServerStatistics"]

log = logging.getLogger(__name__)

_RCODE_NAMES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED")
_BIND_ATTEMPTS = 50  # port 0: tries to find a number free for both UDP and TCP
_TCP_BACKLOG = 128


class Answerer(Protocol):
    """What the server answers from (:class:`~mapmesh.dns.zone.DnsTable`)."""

    def answer(self, query: bytes, max_udp: int | None) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    """Counters since start. ``responses`` is keyed by the header's RCODE name."""

    queries: int
    udp_queries: int
    tcp_queries: int
    responses: Mapping[str, int]
    truncated: int
    dropped: int
    errors: int
    tcp_connections_open: int
    tcp_connections_total: int
    tcp_connections_rejected: int
    tcp_idle_closed: int


class _Counters:
    """Mutated on the DNS thread only; read (racily, as plain ints) by ``statistics()``."""

    __slots__ = (
        "dropped",
        "errors",
        "rcodes",
        "tcp_connections_rejected",
        "tcp_connections_total",
        "tcp_idle_closed",
        "tcp_queries",
        "truncated",
        "udp_queries",
    )

    def __init__(self) -> None:
        self.udp_queries = 0
        self.tcp_queries = 0
        self.rcodes = [0] * 16
        self.truncated = 0
        self.dropped = 0
        self.errors = 0
        self.tcp_connections_total = 0
        self.tcp_connections_rejected = 0
        self.tcp_idle_closed = 0


class _Responder:
    """Asks the table and counts the outcome; never raises."""

    def __init__(self, table: Answerer, counters: _Counters) -> None:
        self._table = table
        self._counters = counters

    def __call__(self, query: bytes, max_udp: int | None) -> bytes | None:
        counters = self._counters
        try:
            reply = self._table.answer(query, max_udp)
        except Exception:
            counters.errors += 1
            log.exception("DNS answer failed; query dropped")
            return None
        if reply is None:
            counters.dropped += 1
            return None
        counters.rcodes[reply[3] & 0x0F] += 1
        if reply[2] & 0x02:
            counters.truncated += 1
        return reply


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, respond: _Responder, counters: _Counters, max_udp: int) -> None:
        self._respond = respond
        self._counters = counters
        self._max_udp = max_udp
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)  # uvloop: no subclass

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._counters.udp_queries += 1
        reply = self._respond(data, self._max_udp)
        if reply is not None and self._transport is not None:
            self._transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("DNS UDP socket error: %s", exc)


class _TcpConnections:
    """The TCP side's shared state: limits, open connections, counters."""

    def __init__(
        self, respond: _Responder, counters: _Counters, limit: int, idle_timeout: float
    ) -> None:
        self.respond = respond
        self.counters = counters
        self.limit = limit
        self.idle_timeout = idle_timeout
        self.open: set[_TcpConnection] = set()

    def new(self) -> _TcpConnection:
        return _TcpConnection(self)

    def close_all(self) -> None:
        for connection in list(self.open):
            connection.abort()


class _TcpConnection(asyncio.Protocol):
    """DNS over TCP (RFC 7766): length-prefixed queries, pipelined, idle timeout."""

    def __init__(self, shared: _TcpConnections) -> None:
        self._shared = shared
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_activity = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        shared = self._shared
        if len(shared.open) >= shared.limit:
            shared.counters.tcp_connections_rejected += 1
            transport.abort()
            return
        self._transport = transport
        shared.open.add(self)
        shared.counters.tcp_connections_total += 1
        loop = asyncio.get_running_loop()
        self._last_activity = loop.time()
        self._timer = loop.call_later(shared.idle_timeout, self._check_idle)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        self._last_activity = asyncio.get_running_loop().time()
        buffer = self._buffer
        buffer += data
        replies: list[bytes] = []
        while len(buffer) >= 2:
            size = buffer[0] << 8 | buffer[1]
            if len(buffer) < 2 + size:
                break
            query = bytes(buffer[2 : 2 + size])
            del buffer[: 2 + size]
            self._shared.counters.tcp_queries += 1
            reply = self._shared.respond(query, None)
            if reply is None:  # unreadable: nothing sensible follows on this stream
                self._flush(transport, replies)
                transport.close()
                self._transport = None
                return
            replies.append(len(reply).to_bytes(2, "big"))
            replies.append(reply)
        self._flush(transport, replies)

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._shared.open.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport = None

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _check_idle(self) -> None:
        loop = asyncio.get_running_loop()
        remaining = self._last_activity + self._shared.idle_timeout - loop.time()
        if remaining > 0:
            self._timer = loop.call_later(remaining, self._check_idle)
            return
        self._timer = None
        if self._transport is not None:
            self._shared.counters.tcp_idle_closed += 1
            self._transport.close()

    @staticmethod
    def _flush(transport: asyncio.Transport, replies: list[bytes]) -> None:
        if replies:
            transport.write(b"".join(replies))


class DnsServer:
    """Serves ``table`` over UDP and TCP on ``host:port`` from a dedicated thread."""

    def __init__(
        self,
        table: Answerer,
        host: str,
        port: int,
        *,
        max_udp: int = MAX_UDP_PAYLOAD,
        tcp_idle_timeout: float = 10.0,
        max_tcp_connections: int = 256,
    ) -> None:
        self._table = table
        self._host = host
        self._requested_port = port
        self._max_udp = max_udp
        self._tcp_idle_timeout = tcp_idle_timeout
        self._max_tcp_connections = max_tcp_connections
        self._counters = _Counters()
        self._tcp: _TcpConnections | None = None
        self._bound_port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def port(self) -> int:
        """The bound port (UDP and TCP), also when constructed with port 0."""
        if self._bound_port is None:
            raise RuntimeError("DnsServer is not started")
        return self._bound_port

    def start(self) -> None:
        """Bind both sockets (``OSError`` on conflict), then serve on the DNS thread."""
        if self._thread is not None:
            raise RuntimeError("DnsServer already started")
        udp, tcp = _bind(self._host, self._requested_port)
        self._bound_port = int(udp.getsockname()[1])
        ready = threading.Event()
        self._failure = None
        self._loop = uvloop.new_event_loop()
        self._thread = threading.Thread(
            target=self._run,
            args=(self._loop, udp, tcp, ready),
            name=f"mapmesh-dns-{self._bound_port}",
            daemon=True,
        )
        self._thread.start()
        ready.wait()
        if self._failure is not None:
            self._thread.join()
            self._thread = None
            self._bound_port = None
            raise self._failure

    def stop(self) -> None:
        """Close the sockets and every TCP connection; return once the thread ended."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = None
        self._loop = None

    def statistics(self) -> ServerStatistics:
        c = self._counters
        rcodes = list(c.rcodes)
        responses = {name: rcodes[code] for code, name in enumerate(_RCODE_NAMES)}
        return ServerStatistics(
            queries=c.udp_queries + c.tcp_queries,
            udp_queries=c.udp_queries,
            tcp_queries=c.tcp_queries,
            responses=responses,
            truncated=c.truncated,
            dropped=c.dropped,
            errors=c.errors,
            tcp_connections_open=len(self._tcp.open) if self._tcp is not None else 0,
            tcp_connections_total=c.tcp_connections_total,
            tcp_connections_rejected=c.tcp_connections_rejected,
            tcp_idle_closed=c.tcp_idle_closed,
        )

    # -- the DNS thread ------------------------------------------------------------------

    def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        udp: socket.socket,
        tcp: socket.socket,
        ready: threading.Event,
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            udp_transport, tcp_server = loop.run_until_complete(self._open(udp, tcp))
        except BaseException as exc:  # handed to start()'s caller
            self._failure = exc
            udp.close()
            tcp.close()
            loop.close()
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._close(udp_transport, tcp_server))
            loop.close()

    async def _open(
        self, udp: socket.socket, tcp: socket.socket
    ) -> tuple[asyncio.BaseTransport, asyncio.AbstractServer]:
        loop = asyncio.get_running_loop()
        respond = _Responder(self._table, self._counters)
        udp_transport, _ = await loop.create_datagram_endpoint(
            _udp_factory(respond, self._counters, self._max_udp), sock=udp
        )
        self._tcp = _TcpConnections(
            respond, self._counters, self._max_tcp_connections, self._tcp_idle_timeout
        )
        server = await loop.create_server(self._tcp.new, sock=tcp)
        return udp_transport, server

    async def _close(
        self, udp_transport: asyncio.BaseTransport, tcp_server: asyncio.AbstractServer
    ) -> None:
        udp_transport.close()
        tcp_server.close()
        if self._tcp is not None:
            self._tcp.close_all()
        await tcp_server.wait_closed()
        await asyncio.sleep(0)  # let connection_lost callbacks run


def _udp_factory(
    respond: _Responder, counters: _Counters, max_udp: int
) -> Callable[[], _UdpProtocol]:
    return lambda: _UdpProtocol(respond, counters, max_udp)


_UDP_RECEIVE_BUFFER = 1 << 20


def _bind(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """UDP and TCP sockets bound to one port number (found by retrying for port 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(_BIND_ATTEMPTS if port == 0 else 1):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        # A burst must queue in the kernel rather than be dropped (NSD uses 1 MiB too);
        # the kernel caps this at net.core.rmem_max.
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_RECEIVE_BUFFER)
        try:
            udp.bind((host, port))
        except OSError:
            udp.close()
            raise
        bound = udp.getsockname()[1]
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, bound))
            tcp.listen(_TCP_BACKLOG)
        except OSError as exc:
            tcp.close()
            udp.close()
            if port == 0 and exc.errno == errno.EADDRINUSE:
                continue
            raise
        return udp, tcp
    raise OSError(errno.EADDRINUSE, f"no port free for both UDP and TCP on {host}")
