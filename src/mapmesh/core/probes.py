"""Health probes (HTTP, HTTPS, TCP) shared by the control plane's checker and the proxy.

Route 53's rules, which Cloud Map's ``HealthCheckConfig`` uses:

* ``TCP``: healthy iff a TCP connection opens within the timeout.
* ``HTTP``: ``GET resource_path`` (default ``/``) with ``Host: ip:port``; healthy iff a status
  line with a 2xx or 3xx code arrives within the timeout. Redirects are not followed.
* ``HTTPS``: the same over TLS, **without** certificate or hostname verification (Route 53 does
  not validate certificates either), and without SNI since the target is an IP address.

The whole probe — connect, TLS handshake, request, status line — is bounded by one timeout.
Only the status line is read (at most :data:`MAX_STATUS_LINE` bytes); the connection is always
closed afterwards. ``OSError``, ``ssl.SSLError`` and timeouts are translated into a
:class:`ProbeResult` in exactly one place (``_failure``), named after the phase they hit
(connect, TLS handshake, response); each :class:`ProbeOutcome` maps to one failure counter in
the runner's statistics.

Cost: one connection per probe (no keep-alive: a probe every ``interval`` seconds does not
justify holding connections to every instance), one write, one read of a few dozen bytes.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from enum import Enum, StrEnum
from urllib.parse import quote

from mapmesh.model.health import HealthCheckType

__all__ = [
    "MAX_STATUS_LINE",
    "USER_AGENT",
    "ProbeOutcome",
    "ProbeResult",
    "ProbeTarget",
    "probe",
]

MAX_STATUS_LINE = 1024
"""Most bytes read from a response: the status line must end within them."""

USER_AGENT = "mapmesh-health-check/1"

_CLOSE_GRACE = 0.5
"""Longest wait for a clean close (TLS close_notify) before the connection is aborted."""

# RFC 3986 path/query characters (and existing %-escapes) stay as they are; everything else —
# spaces, control characters, '#', non-ASCII — is percent-encoded, so a stored resource path
# can never break the request line or inject a header.
_SAFE_PATH_CHARS = "/?[]@!$&'()*+,;=:-._~%"


class ProbeOutcome(StrEnum):
    """Why a probe ended; every value but ``OK`` is a failure."""

    OK = "ok"
    BAD_STATUS = "bad_status"
    NO_ADDRESS = "no_address"
    CONNECT_TIMEOUT = "connect_timeout"
    CONNECT_REFUSED = "connect_refused"
    CONNECT_ERROR = "connect_error"
    TLS_ERROR = "tls_error"
    RESPONSE_TIMEOUT = "response_timeout"
    BAD_RESPONSE = "bad_response"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    outcome: ProbeOutcome
    reason: str

    @property
    def ok(self) -> bool:
        return self.outcome is ProbeOutcome.OK


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """Where and how to probe one instance. Equal targets compare equal (a schedule key)."""

    type: HealthCheckType
    host: str | None  # None: the instance has neither AWS_INSTANCE_IPV4 nor AWS_INSTANCE_IPV6
    port: int
    path: str = "/"

    @property
    def authority(self) -> str:
        """``ip:port`` as written in a Host header (IPv6 in brackets)."""
        host = self.host or ""
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @property
    def label(self) -> str:
        """How reasons name the target: ``127.0.0.1:8080/health``, or ``ip:port`` for TCP."""
        if self.type is HealthCheckType.TCP:
            return self.authority
        return f"{self.authority}{self.request_path}"

    @property
    def request_path(self) -> str:
        path = self.path if self.path.startswith("/") else f"/{self.path}"
        return quote(path, safe=_SAFE_PATH_CHARS)


class _BadResponse(Exception):
    """The peer answered, but not with a readable HTTP status line."""


def _client_tls_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # Route 53 does not validate certificates.
    return context


_TLS = _client_tls_context()


class _Phase(Enum):
    """How far a probe got; a timeout or socket error is named after the phase it hit."""

    CONNECT = "connect"
    HANDSHAKE = "TLS handshake"
    RESPONSE = "response"


async def probe(target: ProbeTarget, timeout: float) -> ProbeResult:
    """Probe ``target`` once, within ``timeout`` seconds; never raises (except cancellation)."""
    if target.host is None:
        return ProbeResult(ProbeOutcome.NO_ADDRESS, "no address attribute")
    if not 0 < target.port < 65536:
        return ProbeResult(ProbeOutcome.CONNECT_ERROR, f"invalid port {target.port}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    phase = _Phase.CONNECT
    writer: asyncio.StreamWriter | None = None
    try:
        try:
            async with asyncio.timeout_at(deadline):
                reader, writer = await asyncio.open_connection(
                    target.host, target.port, limit=MAX_STATUS_LINE
                )
                if target.type is HealthCheckType.TCP:
                    return ProbeResult(ProbeOutcome.OK, f"TCP connect to {target.authority} ok")
                if target.type is HealthCheckType.HTTPS:
                    phase = _Phase.HANDSHAKE
                    await writer.start_tls(_TLS)  # no server_hostname: no SNI, no name check
                phase = _Phase.RESPONSE
                status = await _exchange(reader, writer, target)
        except (OSError, TimeoutError, ValueError, _BadResponse) as exc:  # ValueError: odd host
            return _failure(exc, phase, target, timeout)
    except BaseException:
        if writer is not None:
            writer.transport.abort()
        raise
    finally:
        if writer is not None and not writer.transport.is_closing():
            await _close(writer, deadline - loop.time())
    scheme = "HTTPS" if target.type is HealthCheckType.HTTPS else "HTTP"
    outcome = ProbeOutcome.OK if 200 <= status < 400 else ProbeOutcome.BAD_STATUS
    return ProbeResult(outcome, f"{scheme} {status} from {target.label}")


def _failure(exc: Exception, phase: _Phase, target: ProbeTarget, timeout: float) -> ProbeResult:
    """The one place where socket, TLS and timeout errors become probe outcomes."""
    where = target.authority
    if isinstance(exc, _BadResponse):
        return ProbeResult(ProbeOutcome.BAD_RESPONSE, f"{exc} from {target.label}")
    if isinstance(exc, TimeoutError):
        if phase is _Phase.CONNECT:
            return ProbeResult(
                ProbeOutcome.CONNECT_TIMEOUT, f"connect timeout after {timeout}s to {where}"
            )
        if phase is _Phase.HANDSHAKE:
            return ProbeResult(
                ProbeOutcome.TLS_ERROR, f"TLS handshake timeout after {timeout}s with {where}"
            )
        return ProbeResult(
            ProbeOutcome.RESPONSE_TIMEOUT, f"no response within {timeout}s from {target.label}"
        )
    if isinstance(exc, ssl.SSLError):
        return ProbeResult(ProbeOutcome.TLS_ERROR, f"TLS error with {where}: {exc.reason or exc}")
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    if phase is _Phase.CONNECT:
        if isinstance(exc, ConnectionRefusedError):
            return ProbeResult(ProbeOutcome.CONNECT_REFUSED, f"connection refused by {where}")
        return ProbeResult(ProbeOutcome.CONNECT_ERROR, f"connect to {where} failed: {detail}")
    if phase is _Phase.HANDSHAKE:
        return ProbeResult(ProbeOutcome.TLS_ERROR, f"TLS handshake with {where} failed: {detail}")
    return ProbeResult(
        ProbeOutcome.BAD_RESPONSE,
        f"connection error before a status line from {target.label}: {detail}",
    )


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: ProbeTarget
) -> int:
    """Send the GET and return the status code of the response's status line."""
    request = (
        f"GET {target.request_path} HTTP/1.1\r\n"
        f"Host: {target.authority}\r\n"
        f"User-Agent: {USER_AGENT}\r\n"
        "Accept: */*\r\n"
        "Connection: close\r\n"
        "\r\n"
    )
    writer.write(request.encode("ascii"))
    await writer.drain()
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError:
        raise _BadResponse("connection closed before a status line") from None
    except asyncio.LimitOverrunError:
        raise _BadResponse(f"status line longer than {MAX_STATUS_LINE} bytes") from None
    return _status_code(line)


def _status_code(line: bytes) -> int:
    """``HTTP/1.1 200 OK`` -> 200; anything else is a :class:`_BadResponse`."""
    parts = line.split(None, 2)
    if (
        len(parts) < 2
        or not parts[0].startswith(b"HTTP/")
        or len(parts[1]) != 3
        or not parts[1].isdigit()
    ):
        raise _BadResponse(f"malformed status line {line[:64]!r}")
    return int(parts[1])


async def _close(writer: asyncio.StreamWriter, grace: float) -> None:
    """Close cleanly if the peer allows it within ``grace`` (capped), else abort the transport.

    The verdict is already made: closing never changes it and never outlasts the probe's
    deadline (``grace`` is what is left of it).
    """
    writer.close()
    try:
        async with asyncio.timeout(min(max(grace, 0.0), _CLOSE_GRACE)):
            await writer.wait_closed()
    except (TimeoutError, OSError, ssl.SSLError):
        writer.transport.abort()
    except BaseException:
        writer.transport.abort()
        raise
