"""HTTP/1.1 framing shared by both directions, and the serialisers for what the proxy sends.

Theory of operation
===================

Both codecs (:mod:`.http1_server` reads requests from downstream, :mod:`.http1_client`
reads responses from upstream) are sans-I/O, like h11: the connection feeds bytes in with
``receive_data(data)`` (``b""`` means EOF) and pulls events out with ``next_event()`` until
it returns None (more bytes needed). Parsing happens lazily inside ``next_event``, so a
connection that stops pulling — say while a pipelined request waits for the one before it
— costs nothing and holds at most the bytes it has already received.

How bytes flow, and what is copied:

1. ``receive_data`` keeps a reference to the bytes when nothing is buffered (the common
   case: a whole request in one read) and only appends to a bytearray when a message spans
   reads. Byte-at-a-time input is linear: the search for the end of the head resumes where
   it stopped.
2. The head ends at the first CRLF CRLF (limited to ``max_head_size``). A head in the
   common shape is validated and read in one pass by the C parser of ``_speedups.c``
   (:data:`.headers.parse_head_fast`), which takes only a strict subset of what llhttp
   accepts. Any other head — that slice, one copy — is fed to a fresh-or-reused httptools
   (llhttp) parser, which validates the start line and every field line strictly (CRLF
   only, no obs-fold, no whitespace before the colon, Content-Length digits, duplicate
   Content-Length, CL+TE) and hands back the target.
3. llhttp never sees a body. It has no "pause after the head" and does not report offsets,
   so letting it run on would make it read into the next pipelined request (and it cannot
   be told a response answers HEAD). The body is framed here instead: a Content-Length
   body is sliced out of the buffer (no copy at all when a read holds exactly the rest of
   the body); a chunked body goes through the decoder below, which is as strict as llhttp
   (chunk-ext grammar, no whitespace, exact CRLFs — the differential fuzz test holds it to
   that, since two parsers that disagree on where a body ends are how requests get
   smuggled); a close-delimited response body is every byte until EOF. After a message with
   a body the llhttp parser is dropped and the next head gets a new one (≈0.2 µs).
4. The fields the codec acts on, and the byte ranges of hop-by-hop lines, are read in the
   same C pass, or by :func:`.headers.scan_head` after llhttp. ``forward_headers`` is
   ``raw_headers`` itself when there are no hop-by-hop lines, else ``raw_headers`` with
   those ranges spliced out.
5. Serialisers join the new start line, ``forward_headers`` and the few added lines into one
   bytes object, so each head is one write.

After a ``ProtocolError`` or the end of a message that ends the connection the codec is
finished: later bytes are ignored, ``next_event`` returns None and ``must_close`` is True.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import ClassVar, Final

from mapmesh.proxy.protocol.events import (
    Body,
    EndBody,
    Event,
    ProtocolError,
    RequestHead,
    ResponseHead,
)
from mapmesh.proxy.protocol.headers import (
    encode_fields,
    find_head_end,
    find_line_end,
    parse_field_block,
    replace_field,
)

__all__ = [
    "CONTINUE_100",
    "DEFAULT_MAX_HEAD_SIZE",
    "LAST_CHUNK",
    "FramingReader",
    "HeadCallbacks",
    "ResponsePlan",
    "encode_chunk",
    "last_chunk",
    "local_response",
    "request_head_bytes",
    "response_head_bytes",
]

DEFAULT_MAX_HEAD_SIZE: Final = 64 * 1024
MAX_CHUNK_LINE: Final = 4096
CONTINUE_100: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK: Final = b"0\r\n\r\n"

_TOKEN: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED: Final = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
# chunk-size [ chunk-ext ] (RFC 9112 §7.1.1), without optional whitespace: llhttp's strictness
_CHUNK_SIZE: Final = re.compile(
    rb"([0-9A-Fa-f]{1,16})(?:;" + _TOKEN + rb"(?:=(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*"
)
_END_BODY: Final = EndBody()
_CRLF: Final = (13, 10)
_head_end: Final = find_head_end  # module constants: no globals look-up per call
_line_end: Final = find_line_end

Step = Callable[[], Event | None]


class HeadCallbacks:
    """The httptools protocol object: what llhttp reports while parsing one head.

    Its ``on_header`` is None: llhttp still validates every field line, but no Python call
    is made per field (the codec reads the few fields it acts on with one regex pass, and
    the full list is built only if someone asks for ``headers``). The callbacks it does not
    want are None rather than missing: httptools looks each one up when it builds a parser
    (once per response with a body), and a missing attribute costs a formatted
    AttributeError each time.
    """

    __slots__ = ("done", "message_done", "url")

    on_header: ClassVar[None] = None
    on_body: ClassVar[None] = None
    on_message_begin: ClassVar[None] = None
    on_chunk_header: ClassVar[None] = None
    on_chunk_complete: ClassVar[None] = None
    on_status: ClassVar[None] = None

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.url = b""
        self.done = False
        self.message_done = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_headers_complete(self) -> None:
        self.done = True

    def on_message_complete(self) -> None:
        self.message_done = True


class FramingReader:
    """The buffer and the body framing both codecs share; subclasses parse heads.

    ``next_event()`` returns the next event, or None when more bytes are needed (or the
    codec is finished). It is an attribute holding the current step (the head, a body
    piece, a chunk size...) rather than a method that dispatches to it: one call per event.

    A subclass implements ``_read_head()`` (called when a head may be buffered) and
    ``_message_done()`` (called once a body has ended), and may override ``_status`` to map
    a failure's status to what its side answers.
    """

    __slots__ = (
        "_body_limit",
        "_body_seen",
        "_buf",
        "_eof",
        "_pos",
        "_remaining",
        "_scan",
        "_stopped",
        "max_head_size",
        "must_close",
        "next_event",
    )

    _start_line = "start line"

    def __init__(self, max_head_size: int = DEFAULT_MAX_HEAD_SIZE) -> None:
        self.max_head_size = max_head_size
        self.must_close = False
        self._buf: bytes | bytearray = b""
        self._pos = 0  # first unconsumed byte of _buf
        self._scan = 0  # where the search for a terminator resumes (absolute in _buf)
        self._eof = False
        self._remaining = 0
        self._body_seen = 0
        self._body_limit: int | None = None
        self.next_event: Step = self._read_head
        self._stopped = False

    # -- input -------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes from the peer; ``b""`` means the peer closed (EOF)."""
        if not data:
            self._eof = True
            return
        if self._stopped:
            return  # the codec is finished: nothing more will be parsed, so keep nothing
        if type(data) is not bytes:
            data = bytes(data)  # never keep a reference to a caller's mutable buffer
        buf = self._buf
        pos = self._pos
        if pos >= len(buf):
            self._buf = data
            self._pos = 0
            self._scan = 0
            return
        if pos or type(buf) is bytes:
            self._buf = bytearray(buf[pos:])
            self._scan = max(self._scan - pos, 0)
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received and not yet turned into events."""
        return len(self._buf) - self._pos

    @property
    def trailing_data(self) -> bytes:
        """The unparsed bytes; after a CONNECT, the first bytes of the tunnel."""
        return bytes(self._buf[self._pos :])

    # -- hooks -------------------------------------------------------------------------

    def _read_head(self) -> Event | None:
        raise NotImplementedError

    def _message_done(self) -> None:
        raise NotImplementedError

    def _status(self, status: int) -> int:
        return status

    # -- shared steps --------------------------------------------------------------------

    def _finished(self) -> Event | None:
        return None

    def _stop(self) -> None:
        """No more messages on this connection: later bytes are dropped, events are None."""
        self.must_close = True
        self._stopped = True
        self.next_event = self._finished

    def _fail(self, status: int, reason: str) -> ProtocolError:
        self._stop()
        self._buf = b""
        self._pos = 0
        return ProtocolError(self._status(status), reason)

    def _find_head(self) -> bytes | ProtocolError | None:
        """The next head's bytes (through CRLF CRLF), an error, or None (need more)."""
        buf = self._buf
        pos = self._pos
        if pos >= len(buf):
            return None  # the common case between messages: nothing buffered
        if isinstance(buf, bytes) and buf[pos] != 13 and buf[pos] != 10:
            # The common case: a whole head in one read. Typed as bytes, the operations
            # compile to direct calls; anything else takes the general path below.
            end = _head_end(buf, max(self._scan, pos))
            if end >= 0 and end + 4 - pos <= self.max_head_size:
                head_end = end + 4
                self._pos = self._scan = head_end
                return buf if pos == 0 and head_end == len(buf) else buf[pos:head_end]
        if buf[pos] in _CRLF:  # empty lines before a message are ignored (llhttp accepts
            while True:  # bare LF here)
                if buf.startswith(b"\r\n", pos):
                    pos += 2
                elif buf.startswith(b"\n", pos):
                    pos += 1
                else:
                    break
            self._pos = pos
        scan = max(self._scan, pos)
        end = _head_end(buf, scan)
        if end < 0:
            if buf.find(b"\n\n", scan) >= 0:  # an LF-only peer: say so now, not at the limit
                return self._fail(400, "malformed head: bare LF")
            size = len(buf) - pos
            if size > self.max_head_size:
                if _line_end(buf, pos) < 0:
                    return self._fail(414, f"{self._start_line} too long")
                return self._fail(431, "header block too large")
            self._scan = max(len(buf) - 3, pos)
            return None
        head_end = end + 4
        if head_end - pos > self.max_head_size:
            return self._fail(431, "header block too large")
        self._pos = self._scan = head_end
        if pos == 0 and head_end == len(buf) and type(buf) is bytes:
            return buf
        return bytes(buf[pos:head_end])

    def _take(self, count: int) -> bytes:
        buf = self._buf
        pos = self._pos
        end = pos + count
        self._pos = end
        if type(buf) is bytes:
            return buf if pos == 0 and end == len(buf) else buf[pos:end]
        return bytes(buf[pos:end])

    def _start_body(self, content_length: int | None, chunked: bool) -> None:
        """Set up the body reader for a message whose head was just returned."""
        self._body_seen = 0
        if chunked:
            self.next_event = self._read_chunk_size
        elif content_length is None:
            self.next_event = self._read_until_close
        elif content_length:
            self._remaining = content_length
            self.next_event = self._read_length
        else:
            self.next_event = self._end_without_body

    def _end(self, event: EndBody) -> EndBody:
        self._message_done()
        return event

    def _end_without_body(self) -> Event | None:
        self._message_done()
        return _END_BODY

    def _over_limit(self, more: int) -> bool:
        limit = self._body_limit
        return limit is not None and self._body_seen + more > limit

    def _read_length(self) -> Event | None:
        available = len(self._buf) - self._pos
        if self._body_seen == 0 and self._over_limit(self._remaining):
            return self._fail(413, "body too large")
        if available <= 0:
            return self._fail(400, "connection closed mid-body") if self._eof else None
        count = min(available, self._remaining)
        self._remaining -= count
        self._body_seen += count
        data = self._take(count)
        if not self._remaining:
            self.next_event = self._end_without_body
        return Body(data)

    def _read_until_close(self) -> Event | None:
        available = len(self._buf) - self._pos
        if available <= 0:
            if self._eof:
                self.must_close = True
                return self._end(_END_BODY)
            return None
        self._body_seen += available
        return Body(self._take(available))

    def _read_chunk_size(self) -> Event | None:
        buf = self._buf
        pos = self._pos
        end = _line_end(buf, pos)
        if end < 0 or end - pos > MAX_CHUNK_LINE:
            if len(buf) - pos > MAX_CHUNK_LINE:
                return self._fail(400, "invalid chunk framing: chunk size line too long")
            return self._fail(400, "connection closed mid-body") if self._eof else None
        match = _CHUNK_SIZE.fullmatch(buf, pos, end)
        if match is None:
            return self._fail(400, "invalid chunk framing: bad chunk size")
        size = int(match.group(1), 16)
        self._pos = end + 2
        if not size:
            self._scan = self._pos
            self.next_event = self._read_trailers
            return self._read_trailers()
        if self._over_limit(size):
            return self._fail(413, "body too large")
        self._remaining = size
        self.next_event = self._read_chunk_data
        return self._read_chunk_data()

    def _read_chunk_data(self) -> Event | None:
        available = len(self._buf) - self._pos
        if available <= 0:
            return self._fail(400, "connection closed mid-body") if self._eof else None
        count = min(available, self._remaining)
        self._remaining -= count
        self._body_seen += count
        data = self._take(count)
        if not self._remaining:
            self.next_event = self._read_chunk_end
        return Body(data)

    def _read_chunk_end(self) -> Event | None:
        buf = self._buf
        pos = self._pos
        available = len(buf) - pos
        if available >= 2:
            if buf[pos] != 13 or buf[pos + 1] != 10:
                return self._fail(400, "invalid chunk framing: missing CRLF after chunk data")
            self._pos = pos + 2
            self.next_event = self._read_chunk_size
            return self._read_chunk_size()
        if available == 1 and buf[pos] != 13:
            return self._fail(400, "invalid chunk framing: missing CRLF after chunk data")
        return self._fail(400, "connection closed mid-body") if self._eof else None

    def _read_trailers(self) -> Event | None:
        buf = self._buf
        pos = self._pos
        if buf.startswith(b"\r\n", pos):
            self._pos = pos + 2
            return self._end(_END_BODY)
        end = _head_end(buf, max(self._scan, pos))
        if end < 0:
            if len(buf) - pos > self.max_head_size:
                return self._fail(431, "trailer section too large")
            self._scan = max(len(buf) - 3, pos)
            return self._fail(400, "connection closed mid-body") if self._eof else None
        if end + 4 - pos > self.max_head_size:
            return self._fail(431, "trailer section too large")
        trailers = parse_field_block(bytes(buf[pos : end + 2]))
        if trailers is None:
            return self._fail(400, "invalid chunk framing: malformed trailer")
        self._pos = end + 4
        return self._end(EndBody(trailers))


# -- serialisers -------------------------------------------------------------------------


def request_head_bytes(
    head: RequestHead,
    *,
    method: bytes | None = None,
    target: bytes | None = None,
    host: bytes | None = None,
    added: bytes = b"",
) -> bytes:
    """The upstream request head for ``head``, as one bytes object.

    ``method`` / ``target`` replace the request line's (``target`` defaults to ``head.path``,
    so absolute-form becomes origin-form); ``host`` replaces the ``Host`` line (a rewrite);
    ``added`` is field lines the proxy adds (``x-request-id``, ``traceparent``…, already
    encoded with :func:`~.headers.encode_fields` or from trusted values). The rest of the
    block is ``head.forward_headers`` untouched. The request always goes out as HTTP/1.1;
    when ``head.chunked`` the caller must send the body through :func:`encode_chunk`.
    """
    block = head.forward_headers
    if host is not None:
        block = replace_field(block, b"host", host)
    if head.chunked:
        added += b"transfer-encoding: chunked\r\n"
    return b"%s %s HTTP/1.1\r\n%s%s\r\n" % (
        method or head.method,
        target or head.path,
        block,
        added,
    )


class ResponsePlan:
    """How to send a response downstream: ``head`` (one bytes object), whether the body
    must go through :func:`encode_chunk` / :data:`LAST_CHUNK`, and whether the downstream
    connection may stay open afterwards."""

    __slots__ = ("chunked", "head", "keep_alive")

    def __init__(self, head: bytes, chunked: bool, keep_alive: bool) -> None:
        self.head = head
        self.chunked = chunked
        self.keep_alive = keep_alive

    def __repr__(self) -> str:
        return f"ResponsePlan({self.head!r}, chunked={self.chunked}, keep_alive={self.keep_alive})"


def response_head_bytes(
    response: ResponseHead,
    request: RequestHead,
    *,
    keep_alive: bool | None = None,
    extra: Iterable[tuple[bytes, bytes]] = (),
) -> ResponsePlan:
    """The downstream response head for ``response``, answering ``request``.

    ``keep_alive`` (default: what the client asked for) is the proxy's wish; the plan says
    what is possible. A body of unknown length (upstream chunked or close-delimited) is
    re-chunked for an HTTP/1.1 client; an HTTP/1.0 client gets it raw and the connection
    closes after it. ``Connection: close`` / ``keep-alive`` are added as the client's
    version requires. Everything else is ``response.forward_headers`` untouched.
    """
    alive = request.keep_alive if keep_alive is None else keep_alive
    http10 = request.http_version == "1.0"
    chunked = False
    parts = [_status_line(response.status, response.reason), response.forward_headers]
    if extra:
        parts.append(encode_fields(extra))
    if response.has_body and response.content_length is None:
        if http10:
            alive = False
        else:
            chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
    if not alive:
        parts.append(b"connection: close\r\n")
    elif http10:
        parts.append(b"connection: keep-alive\r\n")
    parts.append(b"\r\n")
    return ResponsePlan(b"".join(parts), chunked, alive)


def encode_chunk(data: bytes) -> bytes:
    """One chunk for ``data``; ``b""`` for empty data (an empty chunk would end the body)."""
    if not data:
        return b""
    return b"".join((b"%x\r\n" % len(data), data, b"\r\n"))


def last_chunk(trailers: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
    """The zero-size chunk that ends a chunked body, with ``trailers`` if any."""
    if not trailers:
        return LAST_CHUNK
    return b"".join((b"0\r\n", encode_fields(trailers), b"\r\n"))


def local_response(
    status: int,
    reason: str,
    *,
    headers: Iterable[tuple[bytes, bytes]] = (),
    keep_alive: bool = True,
    http10: bool = False,
    head_only: bool = False,
) -> bytes:
    """A complete response the proxy itself generates, as one bytes object.

    The body is ``reason`` as short plain text (DESIGN: every response the proxy generates
    names its reason), e.g. ``local_response(503, "overloaded", headers=[(b"x-mapmesh-
    overloaded", b"true")])``. ``head_only`` omits the body (answering HEAD).
    """
    body = reason.encode("utf-8", "replace") + b"\n"
    parts = [
        _status_line(status, _phrase(status)),
        b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n" % len(body),
    ]
    if headers:
        parts.append(encode_fields(headers))
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    elif http10:
        parts.append(b"connection: keep-alive\r\n")
    parts.append(b"\r\n")
    if not head_only:
        parts.append(body)
    return b"".join(parts)


_STATUS_LINES: Final[dict[tuple[int, bytes], bytes]] = {}


def _status_line(status: int, reason: bytes) -> bytes:
    key = (status, reason)
    line = _STATUS_LINES.get(key)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        if len(_STATUS_LINES) < 512:
            _STATUS_LINES[key] = line
    return line


def _phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""
