"""Access logs: one line per request, in the format App Mesh's access-log settings ask for.

Where and how
-------------
A snapshot's ``access_log`` (a virtual node's or gateway's ``logging.accessLog.file``) names
the path and the format, and wins over ``--access-log``:

* ``default`` (no format) — Envoy's default line, with the trace id appended in quotes::

    [2026-11-24T07:54:44.123Z] "GET /work HTTP/1.1" 200 - 0 41 3 - "-" "curl/8.5" "<request id>"
    "worker.corp" "127.0.0.1:41234" "<trace id>"

* ``text`` — a pattern of Envoy command operators (``%RESPONSE_CODE%``); a newline is added
  when the pattern does not end with one;
* ``json`` — keys mapped to patterns: a value that is one operator keeps its type (numbers
  stay numbers, a missing value is ``null``), anything else is a string.

Without one, ``--access-log FILE`` writes mapmesh's own JSON line (:data:`MAPMESH_JSON`:
``start_time``, ``listener``, ``method``, ``authority``, ``path``, ``protocol``,
``response_code``, ``response_flags``, ``duration_ms``, ``upstream_host``,
``upstream_cluster``, ``route_name``, ``bytes_received``, ``bytes_sent``, ``request_id``,
``trace_id``). ``/dev/stdout`` (or ``-``) and ``/dev/stderr`` are the process's streams;
every line is written when its request ends.

Operators (:data:`OPERATORS`) follow Envoy's names: ``START_TIME`` (optionally with a
``strftime`` format, plus ``%f``/``%1f``..``%9f`` fractions and ``%s``), ``REQ(H?ALT):N`` /
``RESP(H?ALT):N`` (``:METHOD``, ``:PATH``, ``:AUTHORITY``, ``:SCHEME`` and any header; ``:N``
truncates), ``PROTOCOL``, ``RESPONSE_CODE``, ``RESPONSE_CODE_DETAILS``, ``RESPONSE_FLAGS``,
``RESPONSE_FLAGS_LONG``, ``BYTES_RECEIVED``, ``BYTES_SENT``, ``DURATION``, ``UPSTREAM_HOST``,
``UPSTREAM_CLUSTER``, ``UPSTREAM_REQUEST_ATTEMPT_COUNT``, ``DOWNSTREAM_REMOTE_ADDRESS`` (and
``_WITHOUT_PORT``, ``DOWNSTREAM_DIRECT_REMOTE_ADDRESS``…), ``DOWNSTREAM_LOCAL_ADDRESS``,
``ROUTE_NAME``, ``TRACE_ID``, ``HOSTNAME``. A few Envoy operators whose value the proxy does
not measure (:data:`NOT_MEASURED`) are accepted and log ``-``. Any other operator refuses the
snapshot, naming it, as Envoy refuses such a config.

Cost: a format is compiled once per snapshot into a template and a list of small getters;
per request the logger calls them and writes one line. When no log is kept nothing is built
(the connection checks :attr:`AccessLogger.enabled`).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Protocol

from mapmesh.model import snapshot
from mapmesh.proxy.forwarding import Forwarding
from mapmesh.proxy.protocol.events import RequestHead, ResponseHead
from mapmesh.proxy.telemetry.spans import WALL_OFFSET
from mapmesh.proxy.telemetry.tracing import Trace, parse_amzn_trace_id, parse_traceparent

__all__ = [
    "DEFAULT_FORMAT",
    "MAPMESH_JSON",
    "NOT_MEASURED",
    "OPERATORS",
    "AccessLogger",
    "JsonFormat",
    "LogFormat",
    "TextFormat",
    "compile_format",
]


class _Connection(Protocol):
    transport: asyncio.Transport | None
    listener: str


class DownstreamExchange(Protocol):
    """What a log line is made of: the downstream exchange, once its response ended."""

    head: RequestHead
    status: int
    flags: list[str]
    upstream: str | None
    route_name: str | None
    bytes_received: int
    bytes_sent: int
    request_id: bytes
    added_fields: bytes
    trace: Trace | None
    response: ResponseHead | None
    forwarding: Forwarding | None
    started_mono: float

    @property
    def connection(self) -> _Connection: ...


Value = str | int | float | None
Getter = Callable[[DownstreamExchange, float], Value]
"""(exchange, end time on the monotonic clock) → the value of one operator."""

DEFAULT_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" "%TRACE_ID%"\n'
)

_OPERATOR = re.compile(r"%([A-Z][A-Z0-9_]*)(?:\(([^)]*)\))?(?::(\d+))?%")

# -- getters ------------------------------------------------------------------------------


class _Clock:
    """Envoy's default START_TIME (``2026-11-24T07:54:44.123Z``), the date part cached."""

    __slots__ = ("prefix", "second")

    def __init__(self) -> None:
        self.second = -1
        self.prefix = ""

    def iso(self, wall: float) -> str:
        second = int(wall)
        if second != self.second:
            self.prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self.second = second
        return f"{self.prefix}.{int((wall - second) * 1000):03d}Z"


_iso_time = _Clock().iso


def _start_time(exchange: DownstreamExchange, now: float) -> Value:
    return _iso_time(WALL_OFFSET + exchange.started_mono)


def _start_time_as(form: str) -> Getter:
    """START_TIME(form): strftime in UTC, with ``%f`` (9 digits), ``%1f``..``%9f`` and ``%s``."""
    pieces: list[tuple[str, int]] = []  # (strftime text, 0) | ("f", digits) | ("s", 0)
    for piece in re.split(r"(%[1-9]?f|%s)", form):
        if piece == "%s":
            pieces.append(("s", 0))
        elif re.fullmatch(r"%[1-9]?f", piece):
            pieces.append(("f", int(piece[1:-1] or 9)))
        elif piece:
            pieces.append((piece, -1))

    def getter(exchange: DownstreamExchange, now: float) -> Value:
        wall = WALL_OFFSET + exchange.started_mono
        second = int(wall)
        moment = time.gmtime(second)
        nanos = f"{int((wall - second) * 1e9):09d}"
        out = []
        for text, digits in pieces:
            if digits < 0:
                out.append(time.strftime(text, moment))
            elif text == "f":
                out.append(nanos[:digits])
            else:
                out.append(str(second))
        return "".join(out)

    return getter


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


def _field_pattern(name: str) -> re.Pattern[bytes]:
    """Finds field ``name`` in a raw field block (lines ending CRLF, validated by the codec):
    one regex search, no list of fields built."""
    return re.compile(
        rb"(?:^|\n)" + re.escape(name.encode("latin-1")) + rb":[ \t]*([^\r\n]*)", re.IGNORECASE
    )


def _field(block: bytes, pattern: re.Pattern[bytes]) -> str | None:
    match = pattern.search(block)
    return match.group(1).rstrip(b" \t").decode("latin-1") if match is not None else None


def _request_field(name: str) -> Getter:
    lower = name.lower()
    if lower == ":method":
        return lambda exchange, now: exchange.head.method.decode("latin-1")
    if lower == ":path":
        return lambda exchange, now: exchange.head.path.decode("latin-1")
    if lower in (":authority", "host"):
        return lambda exchange, now: _text(exchange.head.authority)
    if lower == ":scheme":
        return lambda exchange, now: "http"
    if lower == "x-request-id":  # the client's, or the one the proxy made and forwarded
        return lambda exchange, now: exchange.request_id.decode("latin-1")
    pattern = _field_pattern(lower)
    return lambda exchange, now: _field(exchange.head.raw_headers, pattern)


def _response_field(name: str) -> Getter:
    lower = name.lower()
    if lower == ":status":
        return lambda exchange, now: str(exchange.status) if exchange.status else None
    pattern = _field_pattern(lower)

    def getter(exchange: DownstreamExchange, now: float) -> Value:
        response = exchange.response
        return _field(response.raw_headers, pattern) if response is not None else None

    return getter


def _either(first: Getter, second: Getter) -> Getter:
    def getter(exchange: DownstreamExchange, now: float) -> Value:
        value = first(exchange, now)
        return value if value is not None else second(exchange, now)

    return getter


def _header_operator(argument: str | None, field: Callable[[str], Getter], name: str) -> Getter:
    if not argument:
        raise ValueError(f"%{name}(...)% needs a header name")
    main, _, alternative = argument.partition("?")
    getter = field(main.strip())
    return _either(getter, field(alternative.strip())) if alternative else getter


def _trace_id(exchange: DownstreamExchange, now: float) -> Value:
    """The trace the request belongs to, sampled or not."""
    trace = exchange.trace
    if trace is not None:
        return trace.trace_id.decode("ascii")
    added = exchange.added_fields
    at = added.find(b"traceparent: 00-")
    if at >= 0:
        return added[at + 16 : at + 48].decode("ascii")
    head = exchange.head
    if head.traceparent is not None:
        parsed = parse_traceparent(head.traceparent)
        return parsed[0].decode("ascii") if parsed is not None else None
    amzn = parse_amzn_trace_id(head.amzn_trace_id or b"")
    return amzn[0].decode("ascii") if amzn is not None else None


def _address(kind: str, port: bool) -> Getter:
    def getter(exchange: DownstreamExchange, now: float) -> Value:
        transport = exchange.connection.transport
        address = transport.get_extra_info(kind) if transport is not None else None
        if not isinstance(address, tuple) or len(address) < 2:
            return None
        return f"{address[0]}:{address[1]}" if port else str(address[0])

    return getter


def _duration(exchange: DownstreamExchange, now: float) -> Value:
    return int((now - exchange.started_mono) * 1000)


def _flags(exchange: DownstreamExchange, now: float) -> Value:
    return ",".join(exchange.flags) or "-"


_LONG_FLAGS = {
    "NR": "NoRouteFound", "UH": "NoHealthyUpstream", "UF": "UpstreamConnectionFailure",
    "UC": "UpstreamConnectionTermination", "UT": "UpstreamRequestTimeout",
    "URX": "UpstreamRetryLimitExceeded", "UO": "UpstreamOverflow",
    "DC": "DownstreamConnectionTermination", "DT": "DurationTimeout",
    "DPE": "DownstreamProtocolError", "UPE": "UpstreamProtocolError", "RL": "RateLimited",
    "NC": "NoClusterFound", "PE": "InternalError",
}  # fmt: skip


def _long_flags(exchange: DownstreamExchange, now: float) -> Value:
    return ",".join(_LONG_FLAGS.get(flag, flag) for flag in exchange.flags) or "-"


def _details(exchange: DownstreamExchange, now: float) -> Value:
    if exchange.response is not None:
        return "via_upstream"
    return "local_reply" if exchange.status else None


def _cluster(exchange: DownstreamExchange, now: float) -> Value:
    forwarding = exchange.forwarding
    return forwarding.cluster.name if forwarding is not None else None


def _attempts(exchange: DownstreamExchange, now: float) -> Value:
    forwarding = exchange.forwarding
    return forwarding.attempts if forwarding is not None else 0


def _nothing(exchange: DownstreamExchange, now: float) -> Value:
    return None


_HOSTNAME = socket.gethostname()

OPERATORS: dict[str, Getter] = {
    "START_TIME": _start_time,
    "PROTOCOL": lambda exchange, now: f"HTTP/{exchange.head.http_version}",
    "RESPONSE_CODE": lambda exchange, now: exchange.status,
    "RESPONSE_CODE_DETAILS": _details,
    "RESPONSE_FLAGS": _flags,
    "RESPONSE_FLAGS_LONG": _long_flags,
    "BYTES_RECEIVED": lambda exchange, now: exchange.bytes_received,
    "BYTES_SENT": lambda exchange, now: exchange.bytes_sent,
    "DURATION": _duration,
    "UPSTREAM_HOST": lambda exchange, now: exchange.upstream,
    "UPSTREAM_CLUSTER": _cluster,
    "UPSTREAM_REQUEST_ATTEMPT_COUNT": _attempts,
    "DOWNSTREAM_REMOTE_ADDRESS": _address("peername", True),
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": _address("peername", False),
    "DOWNSTREAM_DIRECT_REMOTE_ADDRESS": _address("peername", True),
    "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT": _address("peername", False),
    "DOWNSTREAM_LOCAL_ADDRESS": _address("sockname", True),
    "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT": _address("sockname", False),
    "ROUTE_NAME": lambda exchange, now: exchange.route_name,
    "TRACE_ID": _trace_id,
    "HOSTNAME": lambda exchange, now: _HOSTNAME,
}
"""Operators without an argument (START_TIME, REQ, RESP also take one)."""

NOT_MEASURED = frozenset(
    (
        "REQUEST_DURATION", "REQUEST_TX_DURATION", "RESPONSE_DURATION", "RESPONSE_TX_DURATION",
        "UPSTREAM_LOCAL_ADDRESS", "UPSTREAM_TRANSPORT_FAILURE_REASON", "REQUESTED_SERVER_NAME",
        "CONNECTION_ID", "TRAILER", "DOWNSTREAM_PEER_SUBJECT", "DOWNSTREAM_PEER_URI_SAN",
        "DOWNSTREAM_LOCAL_SUBJECT", "DOWNSTREAM_TLS_VERSION", "UPSTREAM_TLS_VERSION",
    )
)  # fmt: skip
"""Envoy operators the proxy accepts but does not measure: they log ``-`` (JSON: null)."""


def _operator(name: str, argument: str | None, length: str | None) -> Getter:
    if name == "REQ":
        getter = _header_operator(argument, _request_field, name)
    elif name == "RESP":
        getter = _header_operator(argument, _response_field, name)
    elif name == "START_TIME" and argument:
        getter = _start_time_as(argument)
    elif name in OPERATORS:
        getter = OPERATORS[name]
    elif name in NOT_MEASURED:
        getter = _nothing
    else:
        raise ValueError(f"unknown command operator %{name}%")
    if length is None:
        return getter
    limit = int(length)

    def truncated(exchange: DownstreamExchange, now: float) -> Value:
        value = getter(exchange, now)
        return value[:limit] if isinstance(value, str) else value

    return truncated


# -- formats -----------------------------------------------------------------------------


class TextFormat:
    """A pattern: literal text with operators; a missing value is ``-``."""

    __slots__ = ("_getters", "_template")

    def __init__(self, pattern: str) -> None:
        getters: list[Getter] = []
        pieces: list[str] = []
        position = 0
        for match in _OPERATOR.finditer(pattern):
            pieces.append(pattern[position : match.start()].replace("%", "%%"))
            pieces.append("%s")
            getters.append(_operator(*match.groups()))
            position = match.end()
        pieces.append(pattern[position:].replace("%", "%%"))
        self._template = "".join(pieces)
        self._getters = tuple(getters)

    def line(self, exchange: DownstreamExchange, now: float) -> str:
        values = [getter(exchange, now) for getter in self._getters]
        if None in values:
            values = ["-" if value is None else value for value in values]
        return self._template % tuple(values)


class JsonFormat:
    """Keys and patterns: one JSON object per line."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Sequence[tuple[str, str | Getter]]) -> None:
        compiled: list[tuple[str, Getter]] = []
        for key, pattern in fields:
            if not isinstance(pattern, str):
                compiled.append((key, pattern))
                continue
            only = _OPERATOR.fullmatch(pattern)
            if only is not None:
                compiled.append((key, _operator(*only.groups())))
            else:
                compiled.append((key, _text_value(TextFormat(pattern))))
        self._fields = tuple(compiled)

    def line(self, exchange: DownstreamExchange, now: float) -> str:
        document = {key: getter(exchange, now) for key, getter in self._fields}
        return json.dumps(document, separators=(",", ":")) + "\n"


def _text_value(text: TextFormat) -> Getter:
    return text.line


LogFormat = TextFormat | JsonFormat


def _duration_ms(exchange: DownstreamExchange, now: float) -> Value:
    return round((now - exchange.started_mono) * 1000, 3)


MAPMESH_JSON: tuple[tuple[str, str | Getter], ...] = (
    ("start_time", "%START_TIME%"),
    ("listener", lambda exchange, now: exchange.connection.listener),
    ("method", "%REQ(:METHOD)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("path", "%REQ(:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("duration_ms", _duration_ms),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER%"),
    ("route_name", "%ROUTE_NAME%"),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("trace_id", "%TRACE_ID%"),
)
"""The line ``--access-log`` writes when the snapshot configures no access log."""


def compile_format(configured: snapshot.AccessLog | None) -> LogFormat:
    """The format a snapshot's access log asks for (None: mapmesh's JSON line); raises
    ValueError naming the problem (``access_log.text: unknown command operator %FOO%``)."""
    if configured is None:
        return JsonFormat(MAPMESH_JSON)
    try:
        if configured.format == "json":
            if not configured.json_fields:
                raise ValueError("needs at least one key")
            return JsonFormat(configured.json_fields)
        if configured.format == "text":
            pattern = configured.text or ""
            if not pattern:
                raise ValueError("is empty")
            return TextFormat(pattern if pattern.endswith("\n") else pattern + "\n")
        return TextFormat(DEFAULT_FORMAT)
    except ValueError as exc:
        where = "json" if configured.format == "json" else "text"
        raise ValueError(f"access_log.{where}: {exc}") from None


# -- the logger --------------------------------------------------------------------------


class _Output:
    """An open log: a file opened for appending, or the process's stdout / stderr. Each line
    is one ``write`` system call on the descriptor (no buffer to lose or to flush, and lines
    of several proxies appending to one file do not interleave)."""

    _FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC

    def __init__(self, path: str) -> None:
        self.path = path
        self.shared = path in ("-", "/dev/stdout", "/dev/stderr")
        self.stream: IO[str] | None = None  # a stream without a descriptor (captured)
        if self.shared:
            stream = sys.stderr if path == "/dev/stderr" else sys.stdout
            stream.flush()  # whatever Python buffered goes first
            try:
                self.fd = stream.fileno()
            except (OSError, ValueError):
                self.stream, self.fd = stream, -1
        else:
            try:
                self.fd = os.open(path, self._FLAGS, 0o644)
            except OSError as exc:
                raise ValueError(
                    f"access_log.path: cannot open {path}: {exc.strerror or exc}"
                ) from None

    def write(self, line: str) -> None:
        if self.stream is not None:
            self.stream.write(line)
            self.stream.flush()
            return
        data = line.encode("utf-8", "replace")
        written = os.write(self.fd, data)
        while written < len(data):  # a pipe may take less at once
            data = data[written:]
            written = os.write(self.fd, data)

    def close(self) -> None:
        if not self.shared:
            os.close(self.fd)


class _Plan:
    """A prepared configuration (see :meth:`AccessLogger.prepare`)."""

    def __init__(self, form: LogFormat, output: _Output | None) -> None:
        self.form = form
        self.output = output


class AccessLogger:
    """The process's access log: ``--access-log`` (``path``) unless the snapshot sets one.

    A snapshot's settings are prepared (format compiled, file opened) before the snapshot is
    applied — a bad one refuses the snapshot — and committed with it; an unchanged path keeps
    its open file."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._flag_path = path
        try:
            self._output: _Output | None = _Output(path) if path else None
        except ValueError as exc:  # --access-log: the process cannot start, like a busy port
            raise OSError(str(exc).replace("access_log.path", "--access-log", 1)) from None
        self._format: LogFormat = compile_format(None)
        self.enabled = self._output is not None

    def prepare(self, configured: snapshot.AccessLog | None) -> _Plan:
        form = compile_format(configured)
        path = configured.path if configured is not None else self._flag_path
        if not path:
            return _Plan(form, None)
        current = self._output
        if current is not None and current.path == path:
            return _Plan(form, current)
        return _Plan(form, _Output(path))

    def commit(self, plan: _Plan) -> None:
        previous = self._output
        if previous is not None and previous is not plan.output:
            previous.close()
        self._format = plan.form
        self._output = plan.output
        self.path = plan.output.path if plan.output is not None else None
        self.enabled = plan.output is not None

    def discard(self, plan: _Plan) -> None:
        """A prepared plan that was not committed: close what it opened."""
        if plan.output is not None and plan.output is not self._output:
            plan.output.close()

    def record(self, exchange: DownstreamExchange, now: float) -> None:
        """Write the line of ``exchange``, whose response ended at ``now`` (monotonic)."""
        output = self._output
        if output is not None:
            output.write(self._format.line(exchange, now))

    def close(self) -> None:
        if self._output is not None:
            self._output.close()
            self._output = None
        self.enabled = False
