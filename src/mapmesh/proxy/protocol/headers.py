"""Header-block helpers: find the fields the codec acts on, cut hop-by-hop lines, format.

The forwarding rule (RFC 9110 §7.6.1): ``Connection``, ``Keep-Alive``, ``Proxy-Connection``,
``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade`` and every field named in
``Connection`` belong to one hop and are not forwarded. The codec never rebuilds a header
block to drop them: :func:`scan_head` runs one compiled regex over the head and — only when
such a field is present — records where its lines sit; :func:`cut_lines` splices those byte
ranges out of the block. A request that carries none of them is forwarded as the very bytes
that arrived.

``Host`` and ``Content-Length`` are never removed because a ``Connection`` header names
them: that is a known trick to make a proxy drop the framing or the routing key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from mapmesh.proxy.protocol.events import Fields

__all__ = [
    "HOP_BY_HOP",
    "FieldScan",
    "cut_lines",
    "encode_fields",
    "get_field",
    "get_fields",
    "header_map",
    "parse_field_block",
    "replace_field",
    "scan_head",
]

HOP_BY_HOP = frozenset(
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
_PROTECTED = frozenset((b"host", b"content-length", b"close"))
# Framing fields spelled with "_": some servers (CGI, WSGI environ) read them as the real
# thing. Never forwarded; a request carrying one is refused.
_LOOKALIKES = frozenset((b"transfer_encoding", b"content_length"))
_KNOWN_OPTIONS = HOP_BY_HOP | _PROTECTED
_LINE_START = {name: b"\r\n" + name + b":" for name in HOP_BY_HOP | _LOOKALIKES}

# A field line starts right after a CRLF (llhttp has already rejected whitespace before the
# colon, bare LF and obs-fold, so this cannot be fooled by a line that llhttp read otherwise).
# A match runs from the CRLF before the line to the line's end: the line plus its own CRLF
# is (start + 2, end + 2). Not consuming that CRLF lets adjacent lines both match.
_SPECIAL = re.compile(
    rb"\r\n(host|content-length|transfer-encoding|connection|keep-alive|proxy-connection"
    rb"|te|trailer|upgrade|expect|x-request-id|traceparent|x-amzn-trace-id"
    rb"|transfer_encoding|content_length)"
    rb":[ \t]*([^\r]*)",
    re.IGNORECASE,
)
_HOP_LINE = re.compile(
    rb"\r\n(?:connection|keep-alive|proxy-connection|te|trailer|transfer-encoding|upgrade"
    rb"|transfer_encoding|content_length):[^\r]*"
)  # run on the lower-cased head
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([\t\x20-\x7e\x80-\xff]*)")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_OWS = b" \t"
_GOOD_NAMES: set[bytes] = set()


class FieldScan:
    """What :func:`scan_head` found. Values are stripped; names of list fields lower-cased.

    ``spans`` are ``(start, end)`` offsets into the head of whole lines (CRLF included) to
    leave out when forwarding; empty on the fast path. ``ambiguous``: a framing field was
    spelled with an underscore (``Transfer_Encoding``), a request-smuggling probe.
    """

    __slots__ = (
        "ambiguous",
        "amzn_trace_id",
        "connection",
        "content_length",
        "expect",
        "hosts",
        "request_id",
        "spans",
        "traceparent",
        "transfer_encoding",
        "upgrade",
    )

    def __init__(self) -> None:
        self.hosts: list[bytes] = []
        self.content_length: bytes | None = None
        self.transfer_encoding: list[bytes] = []
        self.connection: set[bytes] = set()
        self.expect: bytes | None = None
        self.request_id: bytes | None = None
        self.traceparent: bytes | None = None
        self.amzn_trace_id: bytes | None = None
        self.upgrade: bytes | None = None
        self.spans: list[tuple[int, int]] = []
        self.ambiguous = False


def scan_head(head: bytes, start: int) -> FieldScan:
    """Find the fields the codec acts on in ``head`` (a validated message head ending with
    CRLF CRLF); ``start`` is the offset of the CRLF that ends the start line.

    Cost: one regex pass (``findall``, no match objects) and a little Python per *matching*
    line — typically ``Host``, or ``Content-Length`` and ``Connection`` in a response. Only
    when a hop-by-hop field is present are line positions recorded: one ``find`` for the
    usual single ``Connection`` line, else one more regex pass (and one per extra name listed
    in ``Connection``).
    """
    scan = FieldScan()
    hop_names: list[bytes] = []
    for name, value in _SPECIAL.findall(head, start):
        name = name.lower()
        value = value.rstrip(_OWS)
        if name == b"host":
            scan.hosts.append(value)
        elif name == b"content-length":
            scan.content_length = value
        elif name == b"x-request-id":
            scan.request_id = value
        elif name == b"traceparent":
            scan.traceparent = value
        elif name == b"x-amzn-trace-id":
            scan.amzn_trace_id = value
        elif name == b"expect":
            scan.expect = value.lower()
        else:
            hop_names.append(name)
            if name == b"connection":
                value = value.lower()
                if b"," in value:
                    scan.connection.update(token.strip(_OWS) for token in value.split(b","))
                    scan.connection.discard(b"")
                else:
                    scan.connection.add(value)
            elif name == b"transfer-encoding":
                scan.transfer_encoding.append(value.lower())
            elif name == b"upgrade":
                scan.upgrade = value
            elif name in _LOOKALIKES:
                scan.ambiguous = True
    if hop_names:
        scan.spans = _hop_spans(head, start, hop_names, scan.connection)
    return scan


def _hop_spans(
    head: bytes, start: int, names: list[bytes], listed: set[bytes]
) -> list[tuple[int, int]]:
    """Byte ranges of the hop-by-hop lines (each with its CRLF), sorted."""
    lower = head.lower()
    if len(names) == 1 and listed <= _KNOWN_OPTIONS:  # the usual case: one Connection line
        begin = lower.find(_LINE_START[names[0]], start) + 2
        return [(begin, head.find(b"\r\n", begin) + 2)]
    extra = listed - _KNOWN_OPTIONS
    spans = [(m.start() + 2, m.end() + 2) for m in _HOP_LINE.finditer(lower, start)]
    for token in extra:
        pattern = re.compile(rb"\r\n" + re.escape(token) + rb":[^\r]*")
        spans.extend((m.start() + 2, m.end() + 2) for m in pattern.finditer(lower, start))
    spans.sort()
    return spans


def cut_lines(head: bytes, spans: Sequence[tuple[int, int]], start: int, end: int) -> bytes:
    """``head[start:end]`` without the byte ranges in ``spans`` (sorted, inside the range)."""
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
