"""TLS termination on a listener: contexts from certificate files, and the accept side that
follows the listener's TLS mode as snapshots change it.

Theory of operation
-------------------
*Contexts.* :meth:`TlsListeners.prepare` turns the snapshot's listener TLS (App Mesh's
``ListenerTls`` / ``VirtualGatewayListenerTls``) into an :class:`ssl.SSLContext` per listener
before the snapshot is applied, so a missing or unreadable certificate, a key that does not
match it, or a source the proxy cannot use (``sds``, ``acm``) refuses the snapshot with the
reason and the last good configuration stays. :meth:`~TlsListeners.commit` then hands the new
TLS to the listeners. A context is rebuilt only when the listener's TLS or one of its files
(size, mtime, inode) changed, so unrelated snapshots leave the listeners alone and a rotated
certificate takes effect with the next snapshot.

*Modes* (App Mesh's): ``STRICT`` — TLS only (a plain-text client fails the handshake and is
disconnected); ``PERMISSIVE`` — TLS and plain text on the same port, told apart by the first
byte the client sends (``0x16``, a TLS handshake record, means TLS); ``DISABLED`` (or no TLS)
— plain text. A ``validation.trust.file`` makes client certificates required and verified
against that CA bundle (mutual TLS); subject alternative names cannot be matched yet, so a
validation that names some refuses the snapshot rather than accepting more than configured.

*Listening.* Each listener binds one socket for its lifetime (:class:`ListenerServer`). What
accepts on it is swappable: a native server (``create_server(sock=dup, ssl=...)``: uvloop's
accept and TLS, for plain text and STRICT) or, for PERMISSIVE, a small accept loop that peeks
at the first byte and then hands the socket to ``connect_accepted_socket`` with or without
TLS. A new mode opens the new acceptor on a duplicate of the socket before closing the old
one, so the port never stops accepting and pending connections are not lost. New connections
follow the new mode within milliseconds of the snapshot being applied; connections accepted
under the old one are drained (as Envoy drains a replaced listener): closed when idle, or
after the response in flight, through the protocol's ``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from mapmesh.model import snapshot

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "ListenerServer",
    "ListenerTlsError",
    "ServerTls",
    "TlsListeners",
    "server_context",
]

log = logging.getLogger("mapmesh.proxy")

HANDSHAKE_TIMEOUT = 10.0  # seconds for a client to finish its TLS handshake (or, in
# PERMISSIVE mode, to send its first byte)
TLS_HANDSHAKE_RECORD = 0x16
_TLS_KINDS = {"gateway": "virtualGateway", "inbound": "virtualNode"}

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


class ListenerTlsError(ValueError):
    """A listener's TLS cannot be served as configured; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class ServerTls:
    """The TLS a listener serves: its mode (STRICT or PERMISSIVE) and context."""

    mode: Literal["STRICT", "PERMISSIVE"]
    context: ssl.SSLContext


# -- contexts --------------------------------------------------------------------------------


def server_context(tls: snapshot.ListenerTls, where: str = "tls") -> ssl.SSLContext:
    """A server-side context for ``tls`` (certificate files; client certificates required
    when a trust file is given). Raises :class:`ListenerTlsError` naming the field."""
    certificate = tls.certificate
    if certificate.source != "file":
        raise ListenerTlsError(
            f"{where}.certificate: source {certificate.source} is not supported by mapmesh "
            "proxies; give the certificate as files (certificate.file)"
        )
    chain, key = certificate.certificate_chain, certificate.private_key
    if not chain or not key:
        raise ListenerTlsError(f"{where}.certificate.file: certificateChain and privateKey needed")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])  # the listeners speak HTTP/1.1
    for field, path in (("certificateChain", chain), ("privateKey", key)):
        _readable(f"{where}.certificate.file.{field}", path)
    try:
        context.load_cert_chain(chain, key)
    except (ssl.SSLError, OSError) as exc:
        raise ListenerTlsError(
            f"{where}.certificate.file: {chain} and {key} are not a PEM certificate chain "
            f"and its private key ({_reason(exc)})"
        ) from None
    validation = tls.validation
    if validation is not None:
        _require_client_certificates(context, validation, f"{where}.validation")
    return context


def _require_client_certificates(
    context: ssl.SSLContext, validation: snapshot.TlsValidation, where: str
) -> None:
    if validation.trust != "file" or not validation.certificate_chain:
        raise ListenerTlsError(
            f"{where}.trust: {validation.trust} trust is not supported by mapmesh proxies; "
            "give the CA bundle as a file (trust.file.certificateChain)"
        )
    if validation.subject_alternative_names:
        raise ListenerTlsError(
            f"{where}.subjectAlternativeNames: matching client certificate names is not "
            "supported yet; remove them to accept any certificate the trusted CA signed"
        )
    path = validation.certificate_chain
    _readable(f"{where}.trust.file.certificateChain", path)
    try:
        context.load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError) as exc:
        raise ListenerTlsError(
            f"{where}.trust.file.certificateChain: {path} is not a PEM CA bundle ({_reason(exc)})"
        ) from None
    context.verify_mode = ssl.CERT_REQUIRED


def _readable(field: str, path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ListenerTlsError(f"{field}: cannot read {path}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _fingerprint(tls: snapshot.ListenerTls) -> tuple[Any, ...]:
    """What a context depends on: the configuration and the files' identity and age."""
    paths = (
        tls.certificate.certificate_chain,
        tls.certificate.private_key,
        tls.validation.certificate_chain if tls.validation is not None else None,
    )
    stats: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            found = os.stat(path) if path else None
        except OSError:
            found = None
        stats.append((found.st_ino, found.st_size, found.st_mtime_ns) if found else None)
    return (tls, *stats)


# -- the listeners' TLS across snapshots ----------------------------------------------------

TlsPlan = dict[str, ServerTls | None]  # listener kind ("gateway", "inbound") → its TLS


class TlsListeners:
    """The TLS of a proxy's TLS-capable listeners (a gateway's, a sidecar's inbound one),
    prepared from each snapshot and handed to the listeners when the snapshot is applied."""

    def __init__(self, handshake_timeout: float = HANDSHAKE_TIMEOUT) -> None:
        self._handshake_timeout = handshake_timeout
        self._wanted: TlsPlan = {}
        self._built: dict[tuple[Any, ...], ssl.SSLContext] = {}
        self._prepared: dict[tuple[Any, ...], ssl.SSLContext] = {}
        self._servers: dict[str, ListenerServer] = {}

    def prepare(self, snap: snapshot.Snapshot) -> TlsPlan:
        """The TLS each listener kind should serve under ``snap``; raises
        :class:`ListenerTlsError` when it cannot (nothing changes then)."""
        plan: TlsPlan = {}
        built: dict[tuple[Any, ...], ssl.SSLContext] = {}
        for kind, proxy_kind in _TLS_KINDS.items():
            if snap.kind != proxy_kind or not snap.listeners:
                continue
            listener = snap.listeners[0]  # the listener this process serves
            tls = listener.tls
            if tls is None or tls.mode == "DISABLED":
                plan[kind] = None
                continue
            key = _fingerprint(tls)
            context = self._built.get(key) or built.get(key)
            if context is None:
                context = server_context(tls, f"listener {listener.port} tls")
            built[key] = context
            plan[kind] = ServerTls(tls.mode, context)
        self._prepared = built
        return plan

    def commit(self, plan: TlsPlan) -> None:
        """Apply a prepared plan: listeners whose TLS changed switch for new connections."""
        self._built = self._prepared
        self._wanted = dict(plan)
        for kind, server in self._servers.items():
            server.want(self._wanted.get(kind))

    async def listen(
        self, kind: str, factory: ProtocolFactory, host: str, port: int, backlog: int = 1024
    ) -> asyncio.Server | ListenerServer:
        """Open a listener: a TLS-capable kind gets a :class:`ListenerServer` serving the TLS
        in force; any other kind a plain server."""
        loop = asyncio.get_running_loop()
        if kind not in _TLS_KINDS:
            return await loop.create_server(factory, host, port, backlog=backlog)
        server = ListenerServer(factory, host, port, backlog, self._handshake_timeout)
        await server.open(self._wanted.get(kind))
        self._servers[kind] = server
        return server


# -- one listening socket, its acceptor swappable --------------------------------------------


HandOver = Callable[[socket.socket, bool], Awaitable[None]]


class _Sniffer:
    """PERMISSIVE: accept, wait for the first byte, then hand the socket over saying whether
    it starts a TLS handshake. Closing stops accepting; sockets already accepted are still
    handed over (under whatever TLS is in force by then), so none is lost in a switch."""

    def __init__(self, sock: socket.socket, hand_over: HandOver, timeout: float) -> None:
        self._sock = sock
        self._hand_over = hand_over
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._pending: set[asyncio.Task[None]] = set()
        self._task = self._loop.create_task(self._accept())

    async def _accept(self) -> None:
        while True:
            try:
                conn, _ = await self._loop.sock_accept(self._sock)
            except OSError as exc:  # out of descriptors and the like: breathe, go on
                log.warning("accept failed", extra={"error": str(exc)})
                await asyncio.sleep(0.1)
                continue
            task = self._loop.create_task(self._start(conn))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _start(self, conn: socket.socket) -> None:
        try:
            first = await asyncio.wait_for(self._first_byte(conn), self._timeout)
            if not first:
                conn.close()
                return
            await self._hand_over(conn, first[0] == TLS_HANDSHAKE_RECORD)
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            log.debug("downstream connection dropped before it started", extra={"error": str(exc)})
            conn.close()
        except asyncio.CancelledError:
            conn.close()
            raise

    async def _first_byte(self, conn: socket.socket) -> bytes:
        readable: asyncio.Future[None] = self._loop.create_future()
        fd = conn.fileno()

        def wake() -> None:
            if not readable.done():
                readable.set_result(None)

        self._loop.add_reader(fd, wake)
        try:
            await readable
        finally:
            self._loop.remove_reader(fd)
        return conn.recv(1, socket.MSG_PEEK)

    def close(self) -> None:
        """Stop accepting (connections being sniffed still start)."""
        self._task.cancel()
        self._sock.close()

    def abort(self) -> None:
        """Stop everything, connections being sniffed included."""
        self.close()
        for task in list(self._pending):
            task.cancel()


class _Accepted:
    """The connections one acceptor made, to drain them when it is replaced.

    A plain set pruned of closed connections whenever it has doubled since the last pruning
    (amortised O(1) per connection): the compiled protocol classes cannot be weakly referenced.
    """

    __slots__ = ("_factory", "_live", "_prune_at")

    def __init__(self, factory: ProtocolFactory) -> None:
        self._factory = factory
        self._live: set[asyncio.BaseProtocol] = set()
        self._prune_at = 64

    def make(self) -> asyncio.BaseProtocol:
        """The protocol factory to accept with: ``factory()``, remembered."""
        protocol = self._factory()
        live = self._live
        live.add(protocol)
        if len(live) >= self._prune_at:
            self._live = live = {p for p in live if not _closed(p)}
            self._prune_at = max(64, 2 * len(live))
        return protocol

    def live(self) -> list[asyncio.BaseProtocol]:
        return [protocol for protocol in self._live if not _closed(protocol)]


def _closed(protocol: asyncio.BaseProtocol) -> bool:
    transport = getattr(protocol, "transport", None)  # None: still in its TLS handshake
    return transport is not None and bool(transport.is_closing())


class ListenerServer(asyncio.AbstractServer):
    """A listener's one socket, and whatever accepts on it under the TLS in force.

    :meth:`want` switches the acceptor (in the background, in order) when the TLS changes.
    """

    def __init__(
        self, factory: ProtocolFactory, host: str, port: int, backlog: int, timeout: float
    ) -> None:
        self._factory = factory
        self._timeout = timeout
        self._backlog = backlog
        self._sock = socket.create_server((host, port), backlog=backlog)
        self._sock.setblocking(False)
        self._loop = asyncio.get_running_loop()
        self._acceptor: asyncio.Server | _Sniffer | None = None
        # the connections the current acceptor made, drained when it is replaced
        self._accepted = _Accepted(factory)
        self._make: ProtocolFactory = self._accepted.make
        self._serving: ServerTls | None = None
        self._wanted: ServerTls | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return (self._sock,)

    @property
    def tls(self) -> ServerTls | None:
        """The TLS new connections get now."""
        return self._serving

    async def open(self, tls: ServerTls | None) -> None:
        self._wanted = tls
        await self._switch()

    def want(self, tls: ServerTls | None) -> None:
        if tls != self._wanted and not self._closed:
            self._wanted = tls
            self._loop.create_task(self._switch())

    async def _switch(self) -> None:
        async with self._lock:
            tls = self._wanted
            if self._closed or (self._acceptor is not None and tls == self._serving):
                return
            sock = self._sock.dup()
            accepted = _Accepted(self._factory)
            factory = accepted.make
            try:
                acceptor: asyncio.Server | _Sniffer
                if tls is not None and tls.mode == "PERMISSIVE":
                    acceptor = _Sniffer(sock, self._hand_over, self._timeout)
                else:
                    acceptor = await self._loop.create_server(
                        factory,
                        sock=sock,
                        backlog=self._backlog,
                        ssl=tls.context if tls is not None else None,
                        ssl_handshake_timeout=self._timeout if tls is not None else None,
                    )
            except OSError as exc:
                sock.close()
                log.error("cannot switch the listener's TLS", extra={"error": str(exc)})
                return
            old, self._acceptor, self._serving = self._acceptor, acceptor, tls
            drained, self._accepted, self._make = self._accepted, accepted, factory
            if old is not None:
                old.close()
            self._drain(drained.live(), self._loop.time() + self._timeout + 1.0)
            log.info("listener serving", extra={"tls": tls.mode if tls else "DISABLED"})

    async def _hand_over(self, conn: socket.socket, starts_tls: bool) -> None:
        """Start a sniffed connection under the TLS in force now (it may have changed while
        the client was sending its first byte)."""
        tls = self._serving
        if self._closed:
            conn.close()
            return
        context = None
        if tls is not None and (tls.mode == "STRICT" or starts_tls):
            context = tls.context
        await self._loop.connect_accepted_socket(
            self._make,
            conn,
            ssl=context,
            ssl_handshake_timeout=self._timeout if context is not None else None,
        )

    def _drain(self, protocols: list[asyncio.BaseProtocol], until: float) -> None:
        """Ask each connection to close when idle. One still in its TLS handshake has no
        transport yet and would forget the request, so it is asked again until it has one
        (or the handshake must have ended)."""
        waiting = []
        for protocol in protocols:
            if getattr(protocol, "transport", None) is None:
                waiting.append(protocol)
                continue
            close = getattr(protocol, "close", None)
            if callable(close):
                close()
        if waiting and self._loop.time() < until:
            self._loop.call_later(0.1, self._drain, waiting, until)

    # -- asyncio.AbstractServer ----------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        acceptor = self._acceptor
        if isinstance(acceptor, _Sniffer):
            acceptor.abort()
        elif acceptor is not None:
            acceptor.close()
        self._sock.close()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return not self._closed and self._acceptor is not None

    async def start_serving(self) -> None:
        return None

    async def serve_forever(self) -> None:
        while not self._closed:
            await asyncio.sleep(3600)

    async def wait_closed(self) -> None:
        acceptor = self._acceptor
        if isinstance(acceptor, asyncio.Server):
            with contextlib.suppress(Exception):
                await acceptor.wait_closed()
