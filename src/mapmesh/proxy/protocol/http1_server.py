"""The downstream side: requests arriving from clients, as mapmesh events.

Usage (the connection's ``data_received`` / ``eof_received`` do only this)::

    codec = Http1ServerCodec()
    codec.receive_data(data)              # b"" at EOF
    while (event := codec.next_event()) is not None:
        ...                               # RequestHead, Body*, EndBody | ProtocolError
    if codec.must_close: ...              # after an error, Connection: close, HTTP/1.0…

Pipelined requests come out one after another; pull the next head only when the previous
response is under way. Each message gets the default body limit (``max_body_size``, None =
unlimited streaming); a caller that buffers calls :meth:`limit_body` right after the head.

What is refused, and the answer the router should send (then close):
400 — anything llhttp rejects (request line, field syntax, bare LF, obs-fold, whitespace
before a colon, bad or duplicate Content-Length, Content-Length with Transfer-Encoding),
HTTP/0.9, several ``Host`` fields, ``Transfer_Encoding`` / ``Content_Length`` (servers
behind us may read ``_`` as ``-``), an HTTP/1.1 request without ``Host``, Transfer-Encoding
in an HTTP/1.0 request, invalid chunk framing or trailers, EOF inside a request;
413 — body over the limit; 414 — request line over ``max_head_size``; 431 — head or
trailer section over ``max_head_size``; 501 — a transfer coding other than ``chunked``;
505 — an HTTP version other than 1.0/1.1.

After a CONNECT request the codec stops (``must_close``): the bytes that follow belong to
a tunnel, which is the router's business. Upgrade requests (WebSocket) are reported in
``RequestHead.upgrade`` and otherwise read as ordinary requests, since the hop-by-hop
``Upgrade`` field is not forwarded.
"""

from __future__ import annotations

from typing import Final, cast

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from mapmesh.proxy.protocol.events import ConnectionClosed, Event, ProtocolError, RequestHead
from mapmesh.proxy.protocol.headers import (
    FieldScan,
    cut_lines,
    fields_of,
    find_line_end,
    parse_head_fast,
    replace_field,
    scan_head,
)
from mapmesh.proxy.protocol.http1 import DEFAULT_MAX_HEAD_SIZE, FramingReader, HeadCallbacks

__all__ = ["Http1ServerCodec", "split_absolute_form"]

_VERSIONS: Final = {b"HTTP/1.1": "1.1", b"HTTP/1.0": "1.0"}
_line_end: Final = find_line_end  # module constants: no globals look-up per call
_parse_fast: Final = parse_head_fast


class Http1ServerCodec(FramingReader):
    """Sans-I/O reader of HTTP/1.x requests from one downstream connection."""

    __slots__ = ("_callbacks", "_close_after", "_parser", "max_body_size")

    _start_line = "request line"

    def __init__(
        self, *, max_head_size: int = DEFAULT_MAX_HEAD_SIZE, max_body_size: int | None = None
    ) -> None:
        super().__init__(max_head_size)
        self.max_body_size = max_body_size
        self._callbacks = HeadCallbacks()
        self._parser: HttpRequestParser | None = None
        self._close_after = False

    def limit_body(self, max_bytes: int | None) -> None:
        """Limit the body of the request whose head was just returned (413 beyond it)."""
        self._body_limit = max_bytes

    def _read_head(self) -> Event | None:
        found = self._find_head()
        if found is None:
            if not self._eof:
                return None
            if self.buffered:
                return self._fail(400, "connection closed mid-request")
            self._stop()
            return ConnectionClosed()
        if isinstance(found, ProtocolError):
            return found
        return self._parse_head(found)

    def _parse_head(self, head: bytes) -> Event:
        # A head in the common shape is validated and read in one C pass; llhttp decides on
        # every other (see _speedups.c: what the C parser takes, llhttp also accepts).
        parsed = _parse_fast(head, True) if _parse_fast is not None else None
        if parsed is not None:
            method = cast(bytes, parsed[0])
            target = cast(bytes, parsed[1])
            http_version = "1.1" if parsed[2] else "1.0"
            scan = fields_of(parsed, 4)
            line_end = cast(int, parsed[3])
        else:
            checked = self._parse_with_llhttp(head)
            if isinstance(checked, ProtocolError):
                return checked
            method, target, http_version, line_end, scan = checked
        http11 = http_version == "1.1"

        if scan.ambiguous:
            return self._fail(400, "framing field spelled with an underscore")
        if scan.host_count > 1:
            return self._fail(400, "multiple Host fields")
        host = scan.host
        framing = _body_framing(scan, http11)
        if isinstance(framing, tuple):
            return self._fail(*framing)
        chunked = framing
        content_length = int(scan.content_length) if scan.content_length is not None else None

        path = target
        authority = host
        rewrite_host = False
        if method == b"CONNECT":
            authority = target
            self._close_after = True
        elif target[:1] != b"/" and target != b"*":  # neither origin- nor asterisk-form
            absolute = split_absolute_form(target)
            if absolute is None:
                return self._fail(400, "malformed request target")
            path, authority = absolute
            rewrite_host = host is None or host.lower() != authority.lower()
        elif host is None and http11:
            return self._fail(400, "missing Host field")

        connection = scan.connection
        keep_alive = b"close" not in connection and (http11 or b"keep-alive" in connection)
        self._close_after = self._close_after or not keep_alive
        block_end = len(head) - 2
        raw_headers = head[line_end + 2 : block_end]
        forward_headers = raw_headers
        if scan.spans:
            forward_headers = cut_lines(head, scan.spans, line_end + 2, block_end)
        if rewrite_host and authority is not None:
            forward_headers = replace_field(forward_headers, b"host", authority)

        self._body_limit = self.max_body_size
        self._start_body(content_length or 0, chunked)
        return RequestHead(
            method,
            target,
            path,
            authority,
            http_version,
            None,
            raw_headers,
            forward_headers,
            keep_alive,
            content_length,
            chunked,
            http11 and scan.expect == b"100-continue",
            scan.upgrade if b"upgrade" in connection else None,
            scan.request_id,
            scan.traceparent,
            scan.amzn_trace_id,
        )

    def _parse_with_llhttp(
        self, head: bytes
    ) -> tuple[bytes, bytes, str, int, FieldScan] | ProtocolError:
        """(method, target, HTTP version, offset of the request line's CR, fields) of a
        head llhttp accepts, else the error to answer."""
        callbacks = self._callbacks
        callbacks.reset()
        parser = self._parser
        if parser is None:
            parser = self._parser = HttpRequestParser(callbacks)
        try:
            parser.feed_data(head)
        except HttpParserUpgrade:
            self._parser = None  # CONNECT, or Connection: upgrade with an Upgrade field
        except HttpParserError as exc:
            return self._fail(400, f"malformed request: {exc}")
        if not callbacks.done:
            return self._fail(400, "malformed request: incomplete head")
        if not callbacks.message_done:
            self._parser = None  # llhttp now expects a body it will never see

        # llhttp accepted the request line, so it ends with exactly "HTTP/d.d", or has no
        # version at all (HTTP/0.9): reading those bytes is cheaper than asking llhttp for a
        # string. (No negative slice start: compiled code does not wrap it around.)
        line_end = _line_end(head, 0)
        token = head[line_end - 8 : line_end] if line_end > 8 else b""
        http_version = _VERSIONS.get(token)
        if http_version is None:
            if token[:5] != b"HTTP/":
                return self._fail(400, "malformed request line")
            return self._fail(505, "HTTP version not supported")
        return parser.get_method(), callbacks.url, http_version, line_end, scan_head(head, line_end)

    def _message_done(self) -> None:
        if self._close_after:
            self._stop()
        else:
            self.next_event = self._read_head


def _body_framing(scan: FieldScan, http11: bool) -> bool | tuple[int, str]:
    """Whether the body is chunked, or the (status, reason) to refuse the request with.
    (llhttp has already refused CL+TE and bad or repeated Content-Length.)"""
    if not scan.transfer_encoding:
        return False
    if not http11:
        return 400, "Transfer-Encoding in an HTTP/1.0 request"
    if scan.transfer_encoding != (b"chunked",):
        return 501, "unsupported transfer coding"
    if scan.content_length is not None:
        return 400, "both Content-Length and Transfer-Encoding"
    return True


def split_absolute_form(target: bytes) -> tuple[bytes, bytes] | None:
    """``(path, authority)`` of an absolute-form target (``http://host:port/p?q`` →
    ``(b"/p?q", b"host:port")``), userinfo dropped; None when it is not one."""
    scheme, sep, rest = target.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        return None
    cut = len(rest)
    for mark in (b"/", b"?", b"#"):
        found = rest.find(mark)
        if 0 <= found < cut:
            cut = found
    authority = rest[:cut].rpartition(b"@")[2]
    if not authority:
        return None
    path = rest[cut:]
    return (path if path[:1] == b"/" else b"/" + path), authority
