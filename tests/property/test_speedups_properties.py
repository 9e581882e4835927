"""The C speedups (``_speedups.c``) agree with the Python code they stand in for.

1. Fields: on any head llhttp would accept, the C scanner finds what ``scan_head_regex``
   finds — every value, count, option, hop-by-hop span and the look-alike flag — or declines
   (None), and it declines exactly when a Connection field names an option other than
   keep-alive, close or upgrade.
2. Searches: ``find_head_end`` and ``find_line_end`` answer as ``bytes.find`` does, for
   bytes and bytearray, from any start.
3. Heads: ``parse_head`` takes only heads llhttp accepts, and reads them as llhttp and the
   regex scanner do — on mutated heads, and on every byte value at every position of a good
   request and response.
4. Ids: ``random_hex`` gives hex digits, every digit in every position, no repeats, and a
   forked child does not repeat its parent's ids.

Field names come from an alphabet that overlaps the names the scanner acts on on purpose
(each in several spellings, plus names one character longer or shorter), and values from
pieces that exercise the whitespace and comma-list rules.
"""

from __future__ import annotations

import os

import httptools
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


# -- the C head parser takes only what llhttp accepts, and reads it the same way ----------

ANY_BYTE = st.integers(0, 255).map(lambda b: bytes([b]))
METHODS = (b"GET", b"GET", b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH",
           b"CONNECT", b"TRACE", b"get", b"FOO")  # fmt: skip
target_piece = st.sampled_from(
    [b"/", b"a", b"?", b"#", b"%20", b"h.b", b":80", b":", b"[::1]", b"@", b"*", b"~", b"{", b"="]
)
common_field = st.sampled_from(
    [b"User-Agent: wrk", b"Accept: */*", b"Content-Type: text/plain", b"X-A:", b"X-B: a\tb "]
)
request_head = st.tuples(
    st.sampled_from(METHODS),
    st.sampled_from([b"/", b"http://worker.corp/", b"http://a:8080/", b"http://a.b", b"*"]),
    st.lists(target_piece, max_size=4).map(b"".join),
    st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]),
    st.lists(st.one_of(common_field, common_field, common_field, line), max_size=6),
).map(
    lambda p: (
        p[0]
        + b" "
        + p[1]
        + p[2]
        + b" "
        + p[3]
        + b"\r\n"
        + b"".join(f + b"\r\n" for f in p[4])
        + b"\r\n"
    )
)
response_head = st.tuples(
    st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]),
    st.sampled_from([b"200", b"404", b"503", b"204", b"100", b"101", b"099", b"999"]),
    st.sampled_from([b" OK", b" ", b" Not Found", b" a\tb", b""]),
    st.lists(st.one_of(common_field, common_field, common_field, line), max_size=6),
).map(lambda p: p[0] + b" " + p[1] + p[2] + b"\r\n" + b"".join(f + b"\r\n" for f in p[3]) + b"\r\n")


@st.composite
def mutated(draw: st.DrawFn, heads: st.SearchStrategy[bytes]) -> bytes:
    """A head from ``heads`` with up to three bytes inserted, replaced or removed: most stay
    valid, and the rest break the grammar by one byte, wherever it may be."""
    data = bytearray(draw(heads))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data) - 1))
        byte = draw(
            st.sampled_from([0, 1, 9, 10, 13, 32, 35, 58, 127, 128, 255]) | st.integers(0, 255)
        )
        how = draw(st.sampled_from(["insert", "replace", "remove"]))
        if how == "insert":
            data[at:at] = bytes([byte])
        elif how == "replace":
            data[at] = byte
        else:
            del data[at]
    return bytes(data)


class _Heard:
    def __init__(self) -> None:
        self.url = b""
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_headers_complete(self) -> None:
        self.done = True


def llhttp_parse(
    data: bytes, parser_type: type[httptools.HttpRequestParser | httptools.HttpResponseParser]
) -> tuple[httptools.HttpRequestParser | httptools.HttpResponseParser, bytes] | None:
    """(the parser, the target it heard) when llhttp accepts the whole head as an ordinary
    message, else None."""
    heard = _Heard()
    parser = parser_type(heard)
    try:
        parser.feed_data(data)
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):
        return None
    return (parser, heard.url) if heard.done else None


def llhttp_request(data: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(method, target, version) of a request llhttp accepts, else None."""
    parsed = llhttp_parse(data, httptools.HttpRequestParser)
    if parsed is None:
        return None
    parser, url = parsed
    return parser.get_method(), url, parser.get_http_version().encode()  # type: ignore[union-attr]


def llhttp_response(data: bytes) -> tuple[int, bytes] | None:
    """(status, version) of a response llhttp accepts, else None."""
    parsed = llhttp_parse(data, httptools.HttpResponseParser)
    if parsed is None:
        return None
    parser = parsed[0]
    return parser.get_status_code(), parser.get_http_version().encode()  # type: ignore[union-attr]


def check_fields(data: bytes, parsed: tuple[object, ...]) -> None:
    line_end = parsed[3]
    assert line_end == data.find(b"\r\n")
    assert fields(headers.fields_of(parsed, 4)) == fields(scan_head_regex(data, data.find(b"\r\n")))


@settings(max_examples=1500, deadline=None)
@given(mutated(request_head))
def test_the_c_parser_takes_only_requests_llhttp_accepts_and_reads_them_alike(data: bytes) -> None:
    parsed = headers.parse_head_fast(data, True)  # type: ignore[misc]
    if parsed is None:
        return
    accepted = llhttp_request(data)
    assert accepted is not None, "the C parser took a request llhttp refuses"
    method, target, http_version = accepted
    assert (parsed[0], parsed[1], b"1.%d" % parsed[2]) == (method, target, http_version)  # type: ignore[str-bytes-safe]
    check_fields(data, parsed)


@settings(max_examples=1500, deadline=None)
@given(mutated(response_head))
def test_the_c_parser_takes_only_responses_llhttp_accepts_and_reads_them_alike(
    data: bytes,
) -> None:
    parsed = headers.parse_head_fast(data, False)  # type: ignore[misc]
    if parsed is None:
        return
    accepted = llhttp_response(data)
    assert accepted is not None, "the C parser took a response llhttp refuses"
    status, http_version = accepted
    assert (parsed[1], b"1.%d" % parsed[2]) == (status, http_version)  # type: ignore[str-bytes-safe]
    line_end = data.find(b"\r\n")
    assert parsed[0] == (data[13:line_end] if line_end > 13 else b"")
    check_fields(data, parsed)


@pytest.mark.parametrize(
    ("data", "is_request"),
    [
        (b"GET / HTTP/1.1\r\nHost: worker.corp\r\nUser-Agent: wrk\r\n\r\n", True),
        (b"GET http://worker.corp/a?b=1 HTTP/1.1\r\nHost: worker.corp\r\n"
         b"User-Agent: curl/7.88.1\r\nAccept: */*\r\nProxy-Connection: Keep-Alive\r\n\r\n", True),
        (b"POST /x HTTP/1.1\r\nHost: a:8080\r\nContent-Length: 12\r\n"
         b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n", True),
        (b"PUT /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 24 Nov 2026 22:00:00 GMT\r\n"
         b"Content-Type: text/plain\r\nContent-Length: 23\r\nConnection: keep-alive\r\n\r\n",
         False),
        (b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n", False),
        (b"HTTP/1.0 204 \r\n\r\n", False),
    ],
)  # fmt: skip
def test_common_heads_take_the_c_path(data: bytes, is_request: bool) -> None:
    parsed = headers.parse_head_fast(data, is_request)  # type: ignore[misc]
    assert parsed is not None
    assert (llhttp_request(data) if is_request else llhttp_response(data)) is not None


@pytest.mark.parametrize(
    "data",
    [
        b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n",
        b"GET /#frag HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nConnection: keep-alive, x-custom\r\n\r\n",
        b"GET / HTTP/1.1\nHost: a\n\n",
    ],
)
def test_uncommon_requests_are_left_to_llhttp(data: bytes) -> None:
    assert headers.parse_head_fast(data, True) is None  # type: ignore[misc]


GOOD_REQUEST = (
    b"POST http://a.b:80/p?q=1 HTTP/1.1\r\nHost: a.b\r\nContent-Length: 5\r\n"
    b"Connection: keep-alive\r\nX-Note: some value\r\n\r\n"
)
GOOD_RESPONSE = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Note: some value\r\n\r\n"


@pytest.mark.parametrize("byte", range(256))
def test_no_single_byte_makes_the_c_parser_take_what_llhttp_refuses(byte: int) -> None:
    """Every byte value, inserted at and written over every position of a good head."""
    for good, is_request in ((GOOD_REQUEST, True), (GOOD_RESPONSE, False)):
        assert headers.parse_head_fast(good, is_request) is not None  # type: ignore[misc]
        for at in range(len(good) - 2):
            inserted = good[:at] + bytes([byte]) + good[at:]
            replaced = good[:at] + bytes([byte]) + good[at + 1 :]
            for data in (inserted, replaced):
                if headers.parse_head_fast(data, is_request) is None:  # type: ignore[misc]
                    continue
                accepted = llhttp_request(data) if is_request else llhttp_response(data)
                assert accepted is not None, data


def test_random_hex_gives_lower_case_hex_digits_of_the_length_asked() -> None:
    random_hex = headers._C.random_hex  # type: ignore[union-attr]
    for count in (0, 1, 15, 16, 17, 32, 80, 96):
        ids = random_hex(count)
        assert len(ids) == count
        assert set(ids) <= set(b"0123456789abcdef")
    draws = [random_hex(32) for _ in range(5000)]
    assert len(set(draws)) == len(draws)
    for position in range(32):  # no stuck bits: every digit shows up in every position
        assert len({draw[position] for draw in draws}) == 16


def test_a_forked_child_draws_other_ids_than_its_parent() -> None:
    random_hex = headers._C.random_hex  # type: ignore[union-attr]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, then out without running any cleanup
        os.write(write_end, random_hex(32))
        os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 32)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert len(child) == 32
    assert child != random_hex(32)
