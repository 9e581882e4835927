"""The upstream side: responses arriving from an upstream (pooled) connection, as events.

Usage, one request at a time per connection (no upstream pipelining)::

    codec.start_request(b"GET")           # before or right after writing the request
    codec.receive_data(data)              # b"" at EOF
    while (event := codec.next_event()) is not None:
        ...   # InformationalResponse*, ResponseHead, Body*, EndBody | ProtocolError
    if codec.reusable: pool.put_back(connection)

Framing follows RFC 9112 §6.3: no body for responses to HEAD, for 1xx, 204 and 304
(whatever their Content-Length says); else chunked, else Content-Length, else the body
runs until the upstream closes, and the connection is then not reusable. ``keep_alive``
on the head also honours ``Connection: close`` and HTTP/1.0 rules.

Every failure is the upstream's fault and carries status hint 502: anything llhttp rejects,
a version other than 1.0/1.1, a 101 (the proxy never forwards ``Upgrade``), a transfer
coding other than ``chunked``, bad chunk framing, EOF inside a response, bytes arriving
when no request is outstanding. EOF before any byte of the response is reported with the
reason :data:`CLOSED_BEFORE_RESPONSE`, so the router can tell a pooled connection that the
upstream had just closed (the keep-alive race) from a broken response.
"""

from __future__ import annotations

from typing import Final, cast

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from mapmesh.proxy.protocol.events import (
    ConnectionClosed,
    Event,
    InformationalResponse,
    ProtocolError,
    ResponseHead,
)
from mapmesh.proxy.protocol.headers import (
    cut_lines,
    fields_of,
    find_line_end,
    parse_head_fast,
    scan_head,
)
from mapmesh.proxy.protocol.http1 import DEFAULT_MAX_HEAD_SIZE, FramingReader, HeadCallbacks

__all__ = ["CLOSED_BEFORE_RESPONSE", "Http1ClientCodec"]

CLOSED_BEFORE_RESPONSE: Final = "upstream closed the connection before responding"
_FILLER: Final = memoryview(bytes(16384))  # stands in for a short body (_end_parser_message)
_line_end: Final = find_line_end  # module constants: no globals look-up per call
_parse_fast: Final = parse_head_fast


class Http1ClientCodec(FramingReader):
    """Sans-I/O reader of HTTP/1.x responses from one upstream connection."""

    __slots__ = ("_awaiting", "_callbacks", "_head_request", "_parser", "_responded")

    _start_line = "status line"

    def __init__(self, *, max_head_size: int = DEFAULT_MAX_HEAD_SIZE) -> None:
        super().__init__(max_head_size)
        self._callbacks = HeadCallbacks()
        self._parser: HttpResponseParser | None = None
        self._awaiting = False
        self._head_request = False
        self._responded = False

    def start_request(self, method: bytes) -> None:
        """Announce the request just sent on this connection (HEAD → bodiless response)."""
        if self._awaiting or self.must_close:
            raise RuntimeError("this upstream connection cannot take a request now")
        self._awaiting = True
        self._head_request = method == b"HEAD"
        self._responded = False

    @property
    def reusable(self) -> bool:
        """The last response was read to its end and the connection may carry another."""
        return not (self.must_close or self._awaiting or len(self._buf) > self._pos)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if data and not self._awaiting:
            self.must_close = True  # bytes nobody asked for: never reuse this connection
        super().receive_data(data)

    def _status(self, status: int) -> int:
        return 502

    def _read_head(self) -> Event | None:
        if not self._awaiting:
            if self.buffered:
                return self._fail(502, "unsolicited bytes from upstream")
            if self._eof:
                self._stop()
                return ConnectionClosed()
            return None
        found = self._find_head()
        if found is None:
            if not self._eof:
                return None
            if self.buffered or self._responded:
                return self._fail(502, "upstream closed the connection mid-response")
            return self._fail(502, CLOSED_BEFORE_RESPONSE)
        if isinstance(found, ProtocolError):
            return found
        self._responded = True
        return self._parse_head(found)

    def _parse_head(self, head: bytes) -> Event:
        # A head in the common shape is validated and read in one C pass; llhttp decides on
        # every other (see _speedups.c: what the C parser takes, llhttp also accepts).
        parsed = _parse_fast(head, False) if _parse_fast is not None else None
        parser: HttpResponseParser | None = None
        if parsed is not None:
            reason = cast(bytes, parsed[0])
            status = cast(int, parsed[1])
            http_version = "1.1" if parsed[2] else "1.0"
            line_end = cast(int, parsed[3])
        else:
            callbacks = self._callbacks
            callbacks.reset()
            parser = self._parser
            if parser is None:
                parser = self._parser = HttpResponseParser(callbacks)
            try:
                parser.feed_data(head)
            except HttpParserUpgrade:
                return self._fail(502, "upstream switched protocols unasked")
            except HttpParserError as exc:
                return self._fail(502, f"malformed response: {exc}")
            if not callbacks.done:
                return self._fail(502, "malformed response: incomplete head")

            # llhttp accepted the status line: "HTTP/d.d", one space, exactly three digits.
            # Reading those bytes is cheaper than asking llhttp through a method call.
            if head.startswith(b"HTTP/1.1 "):
                http_version = "1.1"
            elif head.startswith(b"HTTP/1.0 "):
                http_version = "1.0"
            else:
                return self._fail(502, "unsupported HTTP version from upstream")
            status = head[9] * 100 + head[10] * 10 + head[11] - 5328  # 5328 = 48 * 111
            line_end = _line_end(head, 0)
            reason = _reason(head, line_end)
        block_end = len(head) - 2
        raw_headers = head[line_end + 2 : block_end]
        if status < 200:
            if status == 101:
                return self._fail(502, "upstream switched protocols unasked")
            return InformationalResponse(status, reason, None, raw_headers)

        scan = fields_of(parsed, 4) if parsed is not None else scan_head(head, line_end)
        chunked = False
        if scan.transfer_encoding:
            if scan.transfer_encoding != (b"chunked",):
                return self._fail(502, "unsupported transfer coding from upstream")
            if scan.content_length is not None:
                return self._fail(502, "both Content-Length and Transfer-Encoding")
            chunked = True
        content_length = int(scan.content_length) if scan.content_length is not None else None
        has_body = not (self._head_request or status == 204 or status == 304)
        connection = scan.connection
        keep_alive = b"close" not in connection and (
            http_version == "1.1" or b"keep-alive" in connection
        )
        if has_body and not chunked and content_length is None:
            keep_alive = False
        if not keep_alive:
            self.must_close = True
        forward_headers = raw_headers
        if scan.spans:
            forward_headers = cut_lines(head, scan.spans, line_end + 2, block_end)
        if parser is not None and not self._callbacks.message_done:
            self._end_parser_message(parser, None if chunked else content_length)

        self._body_limit = None
        if has_body:
            self._start_body(content_length, chunked)
        else:
            self._start_body(0, False)
        return ResponseHead(
            status,
            reason,
            http_version,
            None,
            raw_headers,
            forward_headers,
            keep_alive,
            content_length,
            chunked,
            has_body,
        )

    def _end_parser_message(self, parser: HttpResponseParser, length: int | None) -> None:
        """Make ``parser`` ready for the next head, or drop it. llhttp was fed only the head
        and now waits for a body this reader frames itself, and httptools cannot reset a
        parser (a new one costs about 0.3 µs). llhttp skips a Content-Length body's bytes
        without a callback, so that many filler bytes end its message when the body is
        short."""
        if length is not None and length <= len(_FILLER) and not self.must_close:
            try:
                parser.feed_data(_FILLER[:length])
            except HttpParserError:
                self._parser = None
                return
            if self._callbacks.message_done:
                return
        self._parser = None

    def _message_done(self) -> None:
        self._awaiting = False
        if self.must_close:
            self._stop()
            return
        if self.buffered:  # bytes beyond the response: reported by the next pull, as when
            self.must_close = True  # they arrive in a later read
        self.next_event = self._read_head


def _reason(head: bytes, line_end: int) -> bytes:
    """The reason phrase of a status line llhttp accepted (``HTTP/1.1 200 OK``)."""
    return head[13:line_end] if line_end > 13 else b""
