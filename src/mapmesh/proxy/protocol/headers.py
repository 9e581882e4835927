"""Header-block helpers: find the fields the codec acts on, cut hop-by-hop lines, format.

The forwarding rule (RFC 9110 §7.6.1): ``Connection``, ``Keep-Alive``, ``Proxy-Connection``,
``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade`` and every field named in
``Connection`` belong to one hop and are not forwarded. The codec never rebuilds a header
block to drop them: the scan of the head (the C parser of ``_speedups.c`` for heads in the
common shape, else :func:`scan_head`) records where such lines sit; :func:`cut_lines` splices
those byte ranges out of the block. A request that carries none of them is forwarded as the
very bytes that arrived.

:func:`scan_head_regex` is the specification of the C scanner: one compiled regex over the
head, and — only when a hop-by-hop field is present — the positions of its lines.

``Host`` and ``Content-Length`` are never removed because a ``Connection`` header names
them: that is a known trick to make a proxy drop the framing or the routing key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Final, cast

from mapmesh.proxy import speedups
from mapmesh.proxy.protocol.events import Fields

__all__ = [
    "HOP_BY_HOP",
    "FieldScan",
    "cut_lines",
    "encode_fields",
    "fields_of",
    "find_head_end",
    "find_line_end",
    "get_field",
    "get_fields",
    "header_map",
    "parse_field_block",
    "parse_head_fast",
    "replace_field",
    "scan_head",
    "scan_head_regex",
]

HOP_BY_HOP: Final = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    )
)
_PROTECTED: Final = frozenset((b"host", b"content-length", b"close"))
_KNOWN_OPTIONS: Final = HOP_BY_HOP | _PROTECTED

# A field line starts right after a CRLF (llhttp has already rejected whitespace before the
# colon, bare LF and obs-fold, so this cannot be fooled by a line that llhttp read otherwise).
# Groups: the line from the CRLF before it to its last byte (so the line plus its own CRLF
# is ``head[at + 2 : at + len(line) + 2]``), the name as spelled, and the value without the
# whitespace before it. Whitespace after a value (RFC 9110 §5.5: not part of it) is rare and
# is stripped by :func:`scan_head`: leaving it out here takes a nested repeat, which costs
# the regex engine allocations on every line it matches.
_SPECIAL: Final = re.compile(
    rb"(\r\n(?=[chektpuxCHEKTPUX])"  # a cheap first-letter test before the alternatives
    rb"(host|con(?:tent-length|nection)|t(?:ransfer-encoding|e|raceparent|railer)"
    rb"|upgrade|expect|keep-alive|proxy-connection|x-(?:request-id|amzn-trace-id)"
    rb"|transfer_encoding|content_length)"
    rb":[ \t]*+([^\r]*))",
    re.IGNORECASE,
)
_HOP_LINE: Final = re.compile(
    rb"\r\n(?:connection|keep-alive|proxy-connection|te|trailer|transfer-encoding|upgrade"
    rb"|transfer_encoding|content_length):[^\r]*"
)  # run on the lower-cased head
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_LINE: Final = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([\t\x20-\x7e\x80-\xff]*)")
_BAD_VALUE: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_OWS: Final = b" \t"
_GOOD_NAMES: Final[set[bytes]] = set()

# What scan_head does with each field it finds. Fields from HOST to EXPECT are read;
# the rest are hop-by-hop lines (recorded to be cut) or look-alikes (refused).
_HOST: Final = 0
_CONTENT_LENGTH: Final = 1
_REQUEST_ID: Final = 2
_TRACEPARENT: Final = 3
_AMZN_TRACE_ID: Final = 4
_EXPECT: Final = 5
_CONNECTION: Final = 6
_TRANSFER_ENCODING: Final = 7
_UPGRADE: Final = 8
_OTHER_HOP: Final = 9
# Framing fields spelled with "_": some servers (CGI, WSGI environ) read them as the real
# thing. Never forwarded; a request carrying one is refused.
_LOOKALIKE: Final = 10
_KINDS: Final[dict[bytes, int]] = {
    b"host": _HOST,
    b"content-length": _CONTENT_LENGTH,
    b"x-request-id": _REQUEST_ID,
    b"traceparent": _TRACEPARENT,
    b"x-amzn-trace-id": _AMZN_TRACE_ID,
    b"expect": _EXPECT,
    b"connection": _CONNECTION,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"upgrade": _UPGRADE,
    b"keep-alive": _OTHER_HOP,
    b"proxy-connection": _OTHER_HOP,
    b"te": _OTHER_HOP,
    b"trailer": _OTHER_HOP,
    b"transfer_encoding": _LOOKALIKE,
    b"content_length": _LOOKALIKE,
}
# Spellings seen in practice map straight to their kind; any other is lower-cased first.
_SPELLINGS: Final[dict[bytes, int]] = {
    **_KINDS,
    **{name.title(): kind for name, kind in _KINDS.items()},
    b"X-Request-ID": _REQUEST_ID,
    b"X-Amzn-Trace-ID": _AMZN_TRACE_ID,
    b"TE": _OTHER_HOP,
}
_NO_TOKENS: Final[frozenset[bytes]] = frozenset()
# Connection values seen in practice, already split and lower-cased.
_CONNECTION_TOKENS: Final[dict[bytes, frozenset[bytes]]] = {
    spelling: frozenset((token,))
    for token in (b"keep-alive", b"close", b"upgrade")
    for spelling in (token, token.title(), token.capitalize())
}
_NO_SPANS: Final[tuple[tuple[int, int], ...]] = ()
# The Connection options the C scanner reports as bits: 1 keep-alive, 2 close, 4 upgrade.
_OPTION_SETS: Final[tuple[frozenset[bytes], ...]] = tuple(
    frozenset(
        token for bit, token in ((1, b"keep-alive"), (2, b"close"), (4, b"upgrade")) if bits & bit
    )
    for bits in range(8)
)


def _find_head_end(buf: bytes | bytearray, start: int) -> int:
    return buf.find(b"\r\n\r\n", start)


def _find_line_end(buf: bytes | bytearray, start: int) -> int:
    return buf.find(b"\r\n", start)


_C: Final = speedups.C
find_head_end: Final[Callable[[bytes | bytearray, int], int]] = (
    _C.find_head_end if _C is not None else _find_head_end
)
"""Offset of the first CRLF CRLF at or after ``start``, or -1 (``buf.find``, faster)."""
find_line_end: Final[Callable[[bytes | bytearray, int], int]] = (
    _C.find_line_end if _C is not None else _find_line_end
)
"""Offset of the first CRLF at or after ``start``, or -1 (``buf.find``, faster)."""
_SCAN_FIELDS: Final = _C.scan_fields if _C is not None else None
parse_head_fast: Final[Callable[[bytes, bool], tuple[object, ...] | None] | None] = (
    _C.parse_head if _C is not None else None
)
"""The C parser of heads in the common shape (see ``_speedups.c``): for a request head,
``(method, target, minor version, offset of the start line's CR, *fields)``; for a response
head, ``(reason, status, minor version, offset, *fields)`` — where :func:`fields_of` reads
``fields`` — or None when the head is not one it takes: llhttp then decides. None itself
where the C module is not built."""


class FieldScan:
    """What :func:`scan_head` found. Values are stripped; names of list fields lower-cased.

    ``spans`` are ``(start, end)`` offsets into the head of whole lines (CRLF included) to
    leave out when forwarding; empty on the fast path. ``ambiguous``: a framing field was
    spelled with an underscore (``Transfer_Encoding``), a request-smuggling probe.
    Containers are shared empty constants until a field fills them (most heads have none).
    """

    __slots__ = (
        "ambiguous",
        "amzn_trace_id",
        "connection",
        "content_length",
        "expect",
        "host",
        "host_count",
        "request_id",
        "spans",
        "traceparent",
        "transfer_encoding",
        "upgrade",
    )

    def __init__(
        self,
        host: bytes | None = None,
        host_count: int = 0,
        content_length: bytes | None = None,
        request_id: bytes | None = None,
        traceparent: bytes | None = None,
        amzn_trace_id: bytes | None = None,
        expect: bytes | None = None,
        connection: frozenset[bytes] = _NO_TOKENS,
        transfer_encoding: tuple[bytes, ...] = (),
        upgrade: bytes | None = None,
        ambiguous: bool = False,
        spans: Sequence[tuple[int, int]] = _NO_SPANS,
    ) -> None:
        self.host = host
        self.host_count = host_count
        self.content_length = content_length
        self.request_id = request_id
        self.traceparent = traceparent
        self.amzn_trace_id = amzn_trace_id
        self.expect = expect
        self.connection = connection
        self.transfer_encoding = transfer_encoding
        self.upgrade = upgrade
        self.ambiguous = ambiguous
        self.spans = spans


def scan_head(head: bytes, start: int) -> FieldScan:
    """Find the fields the codec acts on in ``head`` (a validated message head ending with
    CRLF CRLF); ``start`` is the offset of the CRLF that ends the start line.

    The C scanner (``_speedups.c``) answers in one pass over the head's bytes, about three
    times faster than the regex; :func:`scan_head_regex` is the specification it is tested
    against, and answers when the C scanner is not built or declines (a ``Connection``
    field naming an option other than keep-alive, close or upgrade).
    """
    scan_fields = _SCAN_FIELDS
    if scan_fields is not None:
        found = scan_fields(head, start)
        if found is not None:
            return fields_of(found, 0)
    return scan_head_regex(head, start)


def fields_of(found: tuple[object, ...], at: int) -> FieldScan:
    """The :class:`FieldScan` of what the C scanner found, from ``found[at]`` on (in the
    order of its ``__init__``). Read item by item: unpacking a tuple typed field by field
    costs a generic iteration."""
    return FieldScan(
        cast(bytes | None, found[at]),
        cast(int, found[at + 1]),
        cast(bytes | None, found[at + 2]),
        cast(bytes | None, found[at + 3]),
        cast(bytes | None, found[at + 4]),
        cast(bytes | None, found[at + 5]),
        cast(bytes | None, found[at + 6]),
        _OPTION_SETS[cast(int, found[at + 7])],
        cast(tuple[bytes, ...], found[at + 8]),
        cast(bytes | None, found[at + 9]),
        cast(bool, found[at + 10]),
        cast(Sequence[tuple[int, int]], found[at + 11]),
    )


def scan_head_regex(head: bytes, start: int) -> FieldScan:
    """:func:`scan_head` with regular expressions, in Python.

    Cost: one regex pass (``findall``, no match objects) and a dictionary look-up per
    *matching* line — typically ``Host``, or ``Content-Length`` and ``Connection`` in a
    response. Only when a hop-by-hop field is present are line positions recorded: one
    ``find`` for the usual single ``Connection`` line, else one more regex pass (and one
    per extra name listed in ``Connection``).
    """
    scan = FieldScan()
    first_hop = b""  # the first hop-by-hop line
    hops = 0
    line: bytes  # findall's tuples hold Any: typed here, the operations below are native
    name: bytes
    value: bytes
    for line, name, value in _SPECIAL.findall(head, start):
        found = _SPELLINGS.get(name)
        kind = found if found is not None else _KINDS[name.lower()]
        last = len(value) - 1
        if last >= 0 and (value[last] == 32 or value[last] == 9):
            value = value.rstrip(_OWS)
        if kind == _HOST:
            scan.host = value
            scan.host_count += 1
        elif kind == _CONTENT_LENGTH:
            scan.content_length = value
        elif kind == _REQUEST_ID:
            scan.request_id = value
        elif kind == _TRACEPARENT:
            scan.traceparent = value
        elif kind == _AMZN_TRACE_ID:
            scan.amzn_trace_id = value
        elif kind == _EXPECT:
            scan.expect = value.lower()
        else:
            if not hops:
                first_hop = line
            hops += 1
            if kind == _CONNECTION:
                tokens = _connection_tokens(value)
                scan.connection = tokens if not scan.connection else scan.connection | tokens
            elif kind == _TRANSFER_ENCODING:
                scan.transfer_encoding = (*scan.transfer_encoding, value.lower())
            elif kind == _UPGRADE:
                scan.upgrade = value
            elif kind == _LOOKALIKE:
                scan.ambiguous = True
    if hops:
        scan.spans = _hop_spans(head, start, first_hop, hops, scan.connection)
    return scan


def _connection_tokens(value: bytes) -> frozenset[bytes]:
    """The options of one ``Connection`` field, lower-cased."""
    tokens = _CONNECTION_TOKENS.get(value)
    if tokens is not None:
        return tokens
    parts = (token.strip(_OWS) for token in value.lower().split(b","))
    return frozenset(token for token in parts if token)


def _hop_spans(
    head: bytes, start: int, first: bytes, count: int, listed: frozenset[bytes]
) -> list[tuple[int, int]]:
    """Byte ranges of the hop-by-hop lines (each with its CRLF), sorted. :data:`_SPECIAL`
    matched ``count`` of them, ``first`` first (from the CRLF before it to its end)."""
    if count == 1 and listed <= _KNOWN_OPTIONS:  # the usual case: one such line
        at = head.find(first, start)
        end = at + len(first)
        if head[end] == 13:  # the whole line, not the start of a longer one
            return [(at + 2, end + 2)]
    lower = head.lower()
    extra = listed - _KNOWN_OPTIONS
    spans = [(m.start() + 2, m.end() + 2) for m in _HOP_LINE.finditer(lower, start)]
    for token in extra:
        pattern = re.compile(rb"\r\n" + re.escape(token) + rb":[^\r]*")
        spans.extend((m.start() + 2, m.end() + 2) for m in pattern.finditer(lower, start))
    spans.sort()
    return spans


def cut_lines(head: bytes, spans: Sequence[tuple[int, int]], start: int, end: int) -> bytes:
    """``head[start:end]`` without the byte ranges in ``spans`` (sorted, inside the range)."""
    if len(spans) == 1:  # the usual case: one line, often the last (nginx's Connection)
        span_start, span_end = spans[0]
        if span_end == end:
            return head[start:span_start]
        if span_start == start:
            return head[span_end:end]
    pieces = []
    position = start
    for span_start, span_end in spans:
        pieces.append(head[position:span_start])
        position = span_end
    pieces.append(head[position:end])
    return b"".join(pieces)


def replace_field(block: bytes, name: bytes, value: bytes) -> bytes:
    """``block`` (field lines, each ending CRLF) with every ``name`` line replaced by one
    ``name: value`` line at the end. ``name`` is lower case. Slow path: host rewrites."""
    framed = b"\r\n" + block
    pattern = re.compile(rb"\r\n" + re.escape(name) + rb":[^\r]*\r\n")
    spans = [(m.start() + 2, m.end()) for m in pattern.finditer(framed.lower())]
    kept = cut_lines(framed, spans, 2, len(framed)) if spans else block
    return kept + encode_fields(((name, value),))


def encode_fields(fields: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Field lines for ``fields``, each ``name: value\\r\\n``.

    Raises ValueError for a name that is not a token or a value with CR, LF or another
    control character: these come from the proxy's own code, so that is a local bug.
    """
    pieces: list[bytes] = []
    for name, value in fields:
        if name not in _GOOD_NAMES:
            if _TOKEN.fullmatch(name) is None:
                raise ValueError(f"invalid header field name {name!r}")
            if len(_GOOD_NAMES) < 256:
                _GOOD_NAMES.add(name)
        if _BAD_VALUE.search(value) is not None:
            raise ValueError(f"invalid value for header field {name!r}: {value!r}")
        pieces += (name, b": ", value, b"\r\n")
    return b"".join(pieces)


def parse_field_block(block: bytes) -> Fields | None:
    """Parse field lines (each ending CRLF, e.g. a chunked trailer section); None when any
    line is not ``token ":" OWS value``. llhttp validates heads; this validates trailers."""
    fields: Fields = []
    for line in block.split(b"\r\n")[:-1]:
        match = _FIELD_LINE.fullmatch(line)
        if match is None:
            return None
        fields.append((match.group(1), match.group(2).rstrip(_OWS)))
    return fields


def get_field(fields: Fields, name: bytes) -> bytes | None:
    """The first value of field ``name`` (lower case), compared case-insensitively."""
    for field_name, value in fields:
        if field_name.lower() == name:
            return value
    return None


def get_fields(fields: Fields, name: bytes) -> list[bytes]:
    """Every value of field ``name`` (lower case), in order."""
    return [value for field_name, value in fields if field_name.lower() == name]


def header_map(fields: Fields) -> dict[str, str]:
    """Lower-case name → value, repeated names joined with ``,`` (as route matching reads
    headers, like Envoy). Bytes are decoded as Latin-1 so no input can fail."""
    mapped: dict[str, str] = {}
    for name, value in fields:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = mapped.get(key)
        mapped[key] = text if previous is None else f"{previous},{text}"
    return mapped
