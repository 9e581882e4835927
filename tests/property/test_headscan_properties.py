"""The C head searches (``_headscan.c``) agree with their specification in headers.py.

1. Fields: on any head llhttp would accept, the C scanner finds what ``scan_head_regex``
   finds — every value, count, option, hop-by-hop span and the look-alike flag — or declines
   (None), and it declines exactly when a Connection field names an option other than
   keep-alive, close or upgrade.
2. Searches: ``find_head_end`` and ``find_line_end`` answer as ``bytes.find`` does, for
   bytes and bytearray, from any start.

Field names come from an alphabet that overlaps the names the scanner acts on on purpose
(each in several spellings, plus names one character longer or shorter), and values from
pieces that exercise the whitespace and comma-list rules.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapmesh.proxy.protocol import headers
from mapmesh.proxy.protocol.headers import FieldScan, scan_head, scan_head_regex

pytestmark = pytest.mark.skipif(
    headers._C is None,
    reason="the C scanner is not built: .venv/bin/python scripts/build_native.py",
)

NAMES = (
    b"host", b"content-length", b"x-request-id", b"traceparent", b"x-amzn-trace-id",
    b"expect", b"connection", b"transfer-encoding", b"upgrade", b"keep-alive",
    b"proxy-connection", b"te", b"trailer", b"transfer_encoding", b"content_length",
    # near misses: must be left alone
    b"hostx", b"hos", b"t", b"tee", b"connections", b"x-request", b"content-lengthy",
    b"server", b"date", b"accept", b"x-a",
)  # fmt: skip
OPTIONS = (b"keep-alive", b"close", b"upgrade", b"Keep-Alive", b"CLOSE", b"x-a", b"te", b"host")


def spelled(name: bytes) -> st.SearchStrategy[bytes]:
    """``name`` in lower, upper, title or a random mix of case."""
    mixed = st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda flips: bytes(
            c - 32 if flip and 97 <= c <= 122 else c for c, flip in zip(name, flips, strict=True)
        )
    )
    return st.sampled_from([name, name.upper(), name.title()]) | mixed


ows = st.sampled_from([b"", b" ", b"\t", b"  ", b" \t"])
words = st.sampled_from([b"a.b", b"23", b"chunked", b"CHUNKED", b"gzip", b"100-Continue", b"x y"])
option_list = st.lists(
    st.tuples(ows, st.sampled_from(OPTIONS), ows).map(b"".join) | st.just(b""),
    min_size=1,
    max_size=3,
).map(b",".join)
value = st.tuples(ows, words | option_list | st.just(b""), ows).map(b"".join)
line = (
    st.sampled_from(NAMES)
    .flatmap(spelled)
    .flatmap(lambda name: value.map(lambda text: name + b":" + text))
)
start_line = st.sampled_from([b"HTTP/1.1 200 OK", b"GET / HTTP/1.1", b"POST http://a/ HTTP/1.0"])
head = st.tuples(start_line, st.lists(line, max_size=8)).map(
    lambda parts: parts[0] + b"\r\n" + b"".join(f + b"\r\n" for f in parts[1]) + b"\r\n"
)


def fields(scan: FieldScan) -> dict[str, object]:
    return {
        "host": scan.host,
        "host_count": scan.host_count,
        "content_length": scan.content_length,
        "request_id": scan.request_id,
        "traceparent": scan.traceparent,
        "amzn_trace_id": scan.amzn_trace_id,
        "expect": scan.expect,
        "connection": scan.connection,
        "transfer_encoding": scan.transfer_encoding,
        "upgrade": scan.upgrade,
        "ambiguous": scan.ambiguous,
        "spans": list(scan.spans),
    }


def names_an_unknown_option(head: bytes, start: int) -> bool:
    known = {b"keep-alive", b"close", b"upgrade"}
    return not scan_head_regex(head, start).connection <= known


@settings(max_examples=400, deadline=None)
@given(head)
def test_the_c_scanner_finds_what_the_regex_scanner_finds(data: bytes) -> None:
    start = data.find(b"\r\n")
    expected = fields(scan_head_regex(data, start))
    assert fields(scan_head(data, start)) == expected
    declined = headers._C.scan_fields(data, start) is None  # type: ignore[union-attr]
    assert declined == names_an_unknown_option(data, start)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40).map(lambda b: b.replace(b"x", b"\r\n")), st.integers(-3, 45))
def test_the_c_searches_answer_as_bytes_find(data: bytes, start: int) -> None:
    for buf in (data, bytearray(data)):
        assert headers.find_head_end(buf, start) == buf.find(b"\r\n\r\n", max(start, 0))
        assert headers.find_line_end(buf, start) == buf.find(b"\r\n", max(start, 0))


def test_a_head_with_every_hop_by_hop_field_gives_each_line_whole() -> None:
    data = (
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, keep-alive\r\nUpgrade: websocket\r\n"
        b"X-A: 1\r\nTransfer-Encoding: CHUNKED\r\nTE: trailers\r\nTransfer_Encoding: x\r\n\r\n"
    )
    scan = scan_head(data, data.find(b"\r\n"))
    assert headers._C.scan_fields(data, data.find(b"\r\n")) is not None  # type: ignore[union-attr]
    assert [data[a:b] for a, b in scan.spans] == [
        b"Connection: Upgrade, keep-alive\r\n",
        b"Upgrade: websocket\r\n",
        b"Transfer-Encoding: CHUNKED\r\n",
        b"TE: trailers\r\n",
        b"Transfer_Encoding: x\r\n",
    ]
    assert (scan.connection, scan.upgrade, scan.transfer_encoding, scan.ambiguous) == (
        {b"upgrade", b"keep-alive"},
        b"websocket",
        (b"chunked",),
        True,
    )
