"""The HTTP/1.1 codec: requests from downstream, responses from upstream, and what we send.

Every test feeds bytes and reads events; no sockets. Serialisers are checked by parsing
their output with the codecs (a request the proxy builds must read back as the request it
meant to send).
"""

from __future__ import annotations

import pytest

from mapmesh.proxy.protocol import (
    CLOSED_BEFORE_RESPONSE,
    CONTINUE_100,
    LAST_CHUNK,
    Body,
    ConnectionClosed,
    EndBody,
    Event,
    Http1ClientCodec,
    Http1ServerCodec,
    InformationalResponse,
    ProtocolError,
    RequestHead,
    ResponseHead,
    encode_chunk,
    get_field,
    get_fields,
    header_map,
    last_chunk,
    local_response,
    request_head_bytes,
    response_head_bytes,
)
from mapmesh.proxy.protocol import events as events_module
from mapmesh.proxy.protocol.headers import encode_fields, scan_head

# -- helpers --------------------------------------------------------------------------------


def drain(codec: Http1ServerCodec | Http1ClientCodec, data: bytes = b"") -> list[Event]:
    if data:
        codec.receive_data(data)
    out: list[Event] = []
    while (event := codec.next_event()) is not None:
        out.append(event)
        assert len(out) < 10_000
    return out


def server(data: bytes, **kwargs: int) -> tuple[Http1ServerCodec, list[Event]]:
    codec = Http1ServerCodec(**kwargs)
    return codec, drain(codec, data)


def client(data: bytes, method: bytes = b"GET") -> tuple[Http1ClientCodec, list[Event]]:
    codec = Http1ClientCodec()
    codec.start_request(method)
    return codec, drain(codec, data)


def body_of(events: list[Event]) -> bytes:
    return b"".join(event.data for event in events if isinstance(event, Body))


def head_of(events: list[Event]) -> RequestHead:
    assert isinstance(events[0], RequestHead), events
    return events[0]


def response_of(events: list[Event]) -> ResponseHead:
    heads = [event for event in events if isinstance(event, ResponseHead)]
    assert len(heads) == 1, events
    return heads[0]


def error_of(events: list[Event]) -> ProtocolError:
    assert isinstance(events[-1], ProtocolError), events
    return events[-1]


GET = b"GET /users/7?full=1 HTTP/1.1\r\nHost: users.corp\r\nAccept: */*\r\n\r\n"


# -- events -------------------------------------------------------------------------------


def test_every_event_declares_its_slots_and_compares_by_value() -> None:
    for cls in (
        events_module.RequestHead,
        events_module.ResponseHead,
        events_module.InformationalResponse,
        events_module.Body,
        events_module.EndBody,
        events_module.ProtocolError,
    ):
        slots = getattr(cls, "__slots__", None)  # compiled classes have fixed fields, no slots
        if slots is not None:  # _headers: parsed on demand
            assert set(cls._fields) == {name.lstrip("_") for name in slots}, cls
            instance = cls(*([None] * len(cls._fields)))  # type: ignore[arg-type]
            assert not hasattr(instance, "__dict__")
    assert Body(b"a") == Body(b"a") != Body(b"b")
    assert EndBody() == EndBody([]) != Body(b"")
    assert ConnectionClosed() == ConnectionClosed()
    assert "status_hint=400" in repr(ProtocolError(400, "bad"))


# -- requests: parsing --------------------------------------------------------------------


def test_simple_get() -> None:
    codec, events = server(GET)
    head = head_of(events)
    assert head.method == b"GET"
    assert head.target == head.path == b"/users/7?full=1"
    assert head.authority == b"users.corp"
    assert head.http_version == "1.1"
    assert head.headers == [(b"Host", b"users.corp"), (b"Accept", b"*/*")]
    assert head.raw_headers == b"Host: users.corp\r\nAccept: */*\r\n"
    assert head.keep_alive and not head.chunked and head.content_length is None
    assert not head.has_body and not head.expect_continue
    assert head.upgrade is None and head.request_id is None
    assert events[1:] == [EndBody()]
    assert not codec.must_close and codec.buffered == 0


def test_header_block_passes_through_untouched_without_hop_by_hop_fields() -> None:
    block = (
        b"Host: a.corp\r\nX-Weird-Case: KeepS  Spacing\r\ncookie: a=1; b=2\r\n"
        b"x-request-id: abc-123\r\nAccept-Encoding: gzip\r\n"
    )
    _, events = server(b"GET / HTTP/1.1\r\n" + block + b"\r\n")
    head = head_of(events)
    assert head.raw_headers == block
    assert head.forward_headers is head.raw_headers  # not even a copy
    assert head.request_id == b"abc-123"
    upstream = request_head_bytes(head)
    assert upstream == b"GET / HTTP/1.1\r\n" + block + b"\r\n"


def test_mutable_input_buffers_are_copied_not_kept() -> None:
    codec = Http1ServerCodec()
    buffer = bytearray(b"PUT /x HTTP/1.1\r\nHost: o\r\nContent-Length: 4\r\n\r\nab")
    codec.receive_data(buffer)
    buffer[:] = b"garbage"  # the connection reuses its read buffer
    codec.receive_data(memoryview(b"cd"))
    events = drain(codec)
    assert head_of(events).path == b"/x"
    assert events[1:] == [Body(b"abcd"), EndBody()]


def test_post_with_content_length() -> None:
    _, events = server(b"POST /orders HTTP/1.1\r\nHost: o\r\nContent-Length: 11\r\n\r\nhello world")
    head = head_of(events)
    assert head.content_length == 11 and head.has_body
    assert events[1:] == [Body(b"hello world"), EndBody()]


def test_content_length_body_arriving_in_pieces() -> None:
    codec = Http1ServerCodec()
    events = drain(codec, b"PUT /x HTTP/1.1\r\nHost: o\r\nContent-Length: 6\r\n\r\nab")
    assert events[1:] == [Body(b"ab")]
    assert drain(codec, b"cd") == [Body(b"cd")]
    assert drain(codec, b"ef") == [Body(b"ef"), EndBody()]


def test_chunked_request_with_extensions_and_trailers() -> None:
    data = (
        b"POST /up HTTP/1.1\r\nHost: u\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n1A\r\n" + b"z" * 26 + b"\r\n0\r\nX-Checksum: 42 \r\n\r\n"
    )
    _, events = server(data)
    head = head_of(events)
    assert head.chunked and head.content_length is None and head.has_body
    assert head.forward_headers == b"Host: u\r\n"  # Transfer-Encoding is hop-by-hop
    assert body_of(events) == b"hello" + b"z" * 26
    assert events[-1] == EndBody([(b"X-Checksum", b"42")])


def test_pipelined_requests_come_out_in_order_and_wait_to_be_pulled() -> None:
    data = (
        GET
        + b"POST /b HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\nabc"
        + b"POST /c HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
        + b"\r\nDELETE /d HTTP/1.1\r\nHost: d\r\n\r\n"  # a stray empty line is skipped
    )
    codec = Http1ServerCodec()
    codec.receive_data(data)
    first = codec.next_event()
    assert isinstance(first, RequestHead) and first.path == b"/users/7?full=1"
    assert codec.next_event() == EndBody()
    assert codec.buffered == len(data) - len(GET)  # nothing parsed until pulled
    events = drain(codec)
    paths = [event.path for event in events if isinstance(event, RequestHead)]
    assert paths == [b"/b", b"/c", b"/d"]
    assert [event for event in events if not isinstance(event, RequestHead)] == [
        Body(b"abc"),
        EndBody(),
        Body(b"hi"),
        EndBody(),
        EndBody(),
    ]
    assert not codec.must_close


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        (b"1.1", None, True),
        (b"1.1", b"close", False),
        (b"1.1", b"Keep-Alive, CLOSE", False),
        (b"1.0", None, False),
        (b"1.0", b"keep-alive", True),
        (b"1.0", b"Keep-Alive", True),
        (b"1.0", b"keep-alive, close", False),
    ],
)
def test_keep_alive_rules(version: bytes, connection: bytes | None, keep_alive: bool) -> None:
    data = b"GET / HTTP/" + version + b"\r\nHost: h\r\n"
    if connection is not None:
        data += b"Connection: " + connection + b"\r\n"
    codec, events = server(data + b"\r\n" + GET)
    assert head_of(events).keep_alive is keep_alive
    if keep_alive:
        assert len([e for e in events if isinstance(e, RequestHead)]) == 2
        assert not codec.must_close
    else:
        assert events[1:] == [EndBody()]  # the pipelined GET is never read
        assert codec.must_close
        assert drain(codec, GET) == []


def test_expect_100_continue() -> None:
    data = b"PUT /f HTTP/1.1\r\nHost: f\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n"
    codec, events = server(data)
    head = head_of(events)
    assert head.expect_continue
    assert head.forward_headers == head.raw_headers  # Expect is end-to-end
    assert events[1:] == []  # the client waits for 100 Continue before sending the body
    assert drain(codec, b"ok") == [Body(b"ok"), EndBody()]
    assert CONTINUE_100 == b"HTTP/1.1 100 Continue\r\n\r\n"
    _, events = server(b"PUT /f HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n")
    assert not head_of(events).expect_continue  # not an HTTP/1.0 feature


def test_hop_by_hop_fields_are_cut_out_and_the_rest_kept_verbatim() -> None:
    data = (
        b"GET /x HTTP/1.1\r\n"
        b"Host: x.corp\r\n"
        b"Connection: keep-alive, X-Secret, Upgrade, content-length, host\r\n"
        b"Keep-Alive: timeout=5\r\n"
        b"Proxy-Connection: keep-alive\r\n"
        b"TE: trailers\r\n"
        b"Trailer: X-Sum\r\n"
        b"Upgrade: websocket\r\n"
        b"x-secret: 1\r\n"
        b"X-SECRET: 2\r\n"
        b"X-Secretive: kept\r\n"
        b"Accept:  */* \r\n"
        b"\r\n"
    )
    _, events = server(data)
    head = head_of(events)
    assert head.forward_headers == b"Host: x.corp\r\nX-Secretive: kept\r\nAccept:  */* \r\n"
    assert head.upgrade == b"websocket"
    assert get_field(head.headers, b"accept") == b"*/*"  # values lose surrounding whitespace
    assert head.keep_alive


def test_connection_cannot_strip_content_length() -> None:
    data = (
        b"POST / HTTP/1.1\r\nHost: h\r\nConnection: Content-Length\r\nContent-Length: 3\r\n\r\nabc"
    )
    _, events = server(data)
    head = head_of(events)
    assert head.forward_headers == b"Host: h\r\nContent-Length: 3\r\n"
    assert events[1:] == [Body(b"abc"), EndBody()]


def test_absolute_form_target_from_http_proxy_clients() -> None:
    _, events = server(
        b"GET http://Worker.corp:8080/a/b?c=d HTTP/1.1\r\nHost: worker.corp:8080\r\n\r\n"
    )
    head = head_of(events)
    assert head.path == b"/a/b?c=d" and head.authority == b"Worker.corp:8080"
    assert head.forward_headers is head.raw_headers  # Host already agrees
    assert request_head_bytes(head).startswith(b"GET /a/b?c=d HTTP/1.1\r\nHost: worker.corp")

    _, events = server(b"GET http://user@api.corp?x=1 HTTP/1.1\r\nHost: other\r\nA: 1\r\n\r\n")
    head = head_of(events)
    assert head.path == b"/?x=1" and head.authority == b"api.corp"
    assert head.forward_headers == b"A: 1\r\nhost: api.corp\r\n"  # the target's authority wins

    _, events = server(b"GET http://api.corp HTTP/1.0\r\n\r\n")
    head = head_of(events)
    assert head.path == b"/" and head.forward_headers == b"host: api.corp\r\n"


def test_asterisk_form() -> None:
    head = head_of(server(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")[1])
    assert head.target == head.path == b"*" and head.authority == b"h"


def test_upgrade_and_connect() -> None:
    data = b"GET /ws HTTP/1.1\r\nHost: w\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    codec, events = server(data + GET)
    assert head_of(events).upgrade == b"websocket"
    assert head_of(events).forward_headers == b"Host: w\r\n"
    assert len([e for e in events if isinstance(e, RequestHead)]) == 2  # read as plain GETs
    assert not codec.must_close

    codec, events = server(b"CONNECT db.corp:5432 HTTP/1.1\r\nHost: db.corp:5432\r\n\r\n\x16\x03")
    head = head_of(events)
    assert head.method == b"CONNECT" and head.authority == head.path == b"db.corp:5432"
    assert events[1:] == [EndBody()]
    assert codec.must_close  # the rest is a tunnel, not HTTP
    assert codec.trailing_data == b"\x16\x03"
    assert drain(codec, b"more") == [] and codec.trailing_data == b"\x16\x03"


def test_eof_between_requests_and_inside_one() -> None:
    codec, _ = server(GET)
    assert drain(codec) == []
    codec.receive_data(b"")
    assert drain(codec) == [ConnectionClosed()]
    assert codec.must_close and drain(codec) == []

    codec, _ = server(b"GET / HTTP/1.1\r\nHost:")
    codec.receive_data(b"")
    assert error_of(drain(codec)).status_hint == 400

    codec, _ = server(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab")
    codec.receive_data(b"")
    assert error_of(drain(codec)) == ProtocolError(400, "connection closed mid-body")


def test_body_limit_set_by_the_caller_after_the_head() -> None:
    data = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789"
    codec = Http1ServerCodec()
    codec.receive_data(data)
    assert isinstance(codec.next_event(), RequestHead)
    codec.limit_body(9)
    assert codec.next_event() == ProtocolError(413, "body too large")
    assert codec.must_close

    _, events = server(data, max_body_size=10)
    assert body_of(events) == b"0123456789" and events[-1] == EndBody()

    chunked = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    _, events = server(chunked + b"4\r\nabcd\r\n4\r\nefgh\r\n0\r\n\r\n", max_body_size=6)
    assert events[1:] == [Body(b"abcd"), ProtocolError(413, "body too large")]


def test_the_limit_applies_per_message() -> None:
    big = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nabcd"
    codec = Http1ServerCodec(max_body_size=100)
    codec.receive_data(big + big)
    assert isinstance(codec.next_event(), RequestHead)
    codec.limit_body(None)
    assert drain(codec)[-1] == EndBody()  # the second message is back to the default limit


# -- requests: errors -----------------------------------------------------------------------

CHUNKED = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
            id="CL+TE",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 3\r\n\r\n",
            400,
            id="TE+CL",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            400,
            id="differing-CL",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
            400,
            id="repeated-CL",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\nabc", 400, id="CL-list"
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400, id="negative-CL"
        ),
        pytest.param(CHUNKED + b"zz\r\nab\r\n0\r\n\r\n", 400, id="bad-chunk-size"),
        pytest.param(CHUNKED + b"2 \r\nab\r\n0\r\n\r\n", 400, id="space-after-chunk-size"),
        pytest.param(CHUNKED + b"0x2\r\nab\r\n0\r\n\r\n", 400, id="0x-chunk-size"),
        pytest.param(CHUNKED + b"2\r\nabc\r\n0\r\n\r\n", 400, id="chunk-longer-than-size"),
        pytest.param(CHUNKED + b"2\nab\r\n0\r\n\r\n", 400, id="bare-LF-in-chunk-line"),
        pytest.param(CHUNKED + b"1" * 5000 + b"\r\n", 400, id="chunk-line-too-long"),
        pytest.param(CHUNKED + b"0\r\nbad trailer\r\n\r\n", 400, id="bad-trailer"),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
            id="TE-gzip",
        ),
        pytest.param(
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, id="TE-in-1.0"
        ),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, id="two-Hosts"),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer_Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            id="Transfer_Encoding",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: h\r\ncontent_length: 5\r\n\r\nhello",
            400,
            id="content_length",
        ),
        pytest.param(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400, id="no-Host"),
        pytest.param(b"GET / HTTP/1.1\nHost: a\n\n", 400, id="bare-LF"),
        pytest.param(b"GET / HTTP/1.1\r\nX: a\r\n b\r\nHost: h\r\n\r\n", 400, id="obs-fold"),
        pytest.param(b"GET / HTTP/1.1\r\nX : a\r\nHost: h\r\n\r\n", 400, id="space-before-colon"),
        pytest.param(b"GET / HTTP/1.1\r\nX: a\x00b\r\nHost: h\r\n\r\n", 400, id="NUL-in-value"),
        pytest.param(b"GET /\r\n\r\n", 400, id="HTTP/0.9"),
        pytest.param(b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505, id="HTTP/2.0"),
        pytest.param(b"GET / HTTP/1.2\r\nHost: h\r\n\r\n", 400, id="HTTP/1.2"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, id="TLS"),
        pytest.param(b"hello world\r\n\r\n", 400, id="garbage"),
        pytest.param(b"GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", 400, id="empty-authority"),
        pytest.param(b"GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n", 400, id="ftp-scheme"),
    ],
)
def test_malformed_requests_are_refused(data: bytes, status: int) -> None:
    codec, events = server(data)
    error = error_of(events)
    assert error.status_hint == status, error
    assert error.reason
    assert codec.must_close
    assert drain(codec, GET) == []  # nothing after an error


def test_oversize_head_is_431_and_oversize_request_line_414() -> None:
    _, events = server(b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 2000, max_head_size=1024)
    assert error_of(events) == ProtocolError(431, "header block too large")
    _, events = server(
        b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 2000 + b"\r\n\r\n", max_head_size=1024
    )
    assert error_of(events).status_hint == 431
    _, events = server(b"GET /" + b"a" * 2000, max_head_size=1024)
    assert error_of(events) == ProtocolError(414, "request line too long")
    _, events = server(CHUNKED + b"0\r\nX: " + b"a" * 2000, max_head_size=1024)
    assert error_of(events).status_hint == 431
    # exactly at the limit is fine
    head = b"GET / HTTP/1.1\r\nHost: h\r\nX: "
    exact = head + b"a" * (1024 - len(head) - 4) + b"\r\n\r\n"
    assert isinstance(server(exact, max_head_size=1024)[1][0], RequestHead)


def test_default_head_limit_is_64_kib() -> None:
    codec = Http1ServerCodec()
    codec.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n")
    for _ in range(70):
        codec.receive_data(b"X-Filler: " + b"f" * 1000 + b"\r\n")
    assert error_of(drain(codec)).status_hint == 431


# -- responses ----------------------------------------------------------------------------


def test_response_with_content_length_leaves_a_reusable_connection() -> None:
    codec, events = client(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: app\r\n\r\nhello")
    head = response_of(events)
    assert (head.status, head.reason, head.http_version) == (200, b"OK", "1.1")
    assert head.keep_alive and head.has_body and head.content_length == 5
    assert head.forward_headers is head.raw_headers
    assert events[1:] == [Body(b"hello"), EndBody()]
    assert codec.reusable
    codec.start_request(b"GET")  # and it takes the next request
    assert response_of(drain(codec, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))


FIRST_RESPONSES = [
    pytest.param(b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", id="short"),
    pytest.param(
        b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n" + b"x" * 20000, id="long"
    ),
    pytest.param(b"HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", id="head"),
    pytest.param(
        b"GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
        id="chunked",
    ),
    pytest.param(b"GET", b"HTTP/1.1 204 No Content\r\n\r\n", id="none"),
]


@pytest.mark.parametrize(("method", "first"), FIRST_RESPONSES)
def test_each_response_on_a_connection_is_validated_whatever_came_before(
    method: bytes, first: bytes
) -> None:
    """The codec keeps llhttp's parser from one response to the next when it can: whatever
    the first response's framing, the next head is parsed and checked from its start."""
    for second, good in [
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno", True),
        (b"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nX: a\x01b\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\n Folded: x\r\nContent-Length: 0\r\n\r\n", False),
    ]:
        codec, events = client(first, method)
        assert isinstance(events[-1], EndBody) and codec.reusable, events
        for _ in range(2):  # twice: a kept parser must be ready again after a second one
            codec.start_request(b"GET")
            events = drain(codec, second)
            if not good:
                assert error_of(events).status_hint == 502, (second, events)
                break
            assert response_of(events).status == 404 and body_of(events) == b"no"
            assert codec.reusable


@pytest.mark.parametrize(
    ("status_line", "method"),
    [
        (b"HTTP/1.1 204 No Content", b"DELETE"),
        (b"HTTP/1.1 304 Not Modified", b"GET"),
        (b"HTTP/1.1 200 OK", b"HEAD"),
    ],
)
def test_responses_without_body(status_line: bytes, method: bytes) -> None:
    data = status_line + b"\r\nContent-Length: 1234\r\nETag: x\r\n\r\n"
    codec, events = client(data, method)
    head = response_of(events)
    assert not head.has_body and head.content_length == 1234
    assert events[1:] == [EndBody()]
    assert codec.reusable
    plan = response_head_bytes(head, head_request(method))
    assert not plan.chunked and b"Content-Length: 1234\r\n" in plan.head


def test_close_delimited_response() -> None:
    codec, events = client(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome ")
    head = response_of(events)
    assert head.close_delimited and not head.keep_alive
    assert events[1:] == [Body(b"some ")]
    assert drain(codec, b"bytes") == [Body(b"bytes")]
    codec.receive_data(b"")
    assert drain(codec) == [EndBody()]
    assert codec.must_close and not codec.reusable


def test_lookalike_framing_fields_are_not_forwarded_downstream() -> None:
    _, events = client(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nTransfer_Encoding: chunked\r\n\r\n"
    )
    assert response_of(events).forward_headers == b"Content-Length: 0\r\n"


@pytest.mark.parametrize(
    ("head", "reusable"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", True),
    ],
)
def test_response_keep_alive(head: bytes, reusable: bool) -> None:
    codec, events = client(head)
    assert response_of(events).keep_alive is reusable
    assert codec.reusable is reusable


def test_informational_responses_come_before_the_response() -> None:
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-Sum: 9\r\n\r\n"
    )
    codec, events = client(data, b"POST")
    assert events[0] == InformationalResponse(100, b"Continue", [], b"")
    assert events[1] == InformationalResponse(
        103,
        b"Early Hints",
        [(b"Link", b"</a.css>; rel=preload")],
        b"Link: </a.css>; rel=preload\r\n",
    )
    head = response_of(events)
    assert head.status == 201 and head.chunked and head.forward_headers == b""
    assert events[3:] == [Body(b"abc"), EndBody([(b"X-Sum", b"9")])]
    assert codec.reusable


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", id="101"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", id="CLs"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            id="CL+TE",
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", id="TE-gzip"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nq\r\n", id="chunk"),
        pytest.param(b"HTTP/2 200\r\n\r\n", id="version"),
        pytest.param(b"SSH-2.0-OpenSSH_9.2\r\n\r\n", id="garbage"),
        pytest.param(b"HTTP/1.1 2000 OK\r\n\r\n", id="status"),
    ],
)
def test_malformed_responses_are_upstream_errors(data: bytes) -> None:
    codec, events = client(data)
    assert error_of(events).status_hint == 502
    assert codec.must_close and not codec.reusable


def test_upstream_eof_before_and_during_a_response() -> None:
    codec, _ = client(b"")
    codec.receive_data(b"")
    assert drain(codec) == [ProtocolError(502, CLOSED_BEFORE_RESPONSE)]

    codec, _ = client(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    codec.receive_data(b"")
    error = error_of(drain(codec))
    assert error.status_hint == 502 and error.reason != CLOSED_BEFORE_RESPONSE

    codec, _ = client(b"HTTP/1.1 100 Continue\r\n\r\n")
    codec.receive_data(b"")
    assert error_of(drain(codec)).reason != CLOSED_BEFORE_RESPONSE


def test_idle_upstream_connection() -> None:
    codec = Http1ClientCodec()
    assert codec.reusable and drain(codec) == []
    codec.receive_data(b"")
    assert drain(codec) == [ConnectionClosed()]
    assert not codec.reusable

    codec, _ = client(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert codec.reusable
    codec.receive_data(b"HTTP/1.1 408 Request Timeout\r\n\r\n")  # nobody asked
    assert not codec.reusable
    assert error_of(drain(codec)).status_hint == 502
    with pytest.raises(RuntimeError):
        codec.start_request(b"GET")

    codec, events = client(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nextra")
    assert events[1:] == [EndBody(), ProtocolError(502, "unsolicited bytes from upstream")]
    assert not codec.reusable


def test_one_request_at_a_time() -> None:
    codec = Http1ClientCodec()
    codec.start_request(b"GET")
    with pytest.raises(RuntimeError):
        codec.start_request(b"GET")


# -- serialisers --------------------------------------------------------------------------


def head_request(method: bytes = b"GET", version: bytes = b"1.1") -> RequestHead:
    _, events = server(method + b" / HTTP/" + version + b"\r\nHost: h\r\n\r\n")
    return head_of(events)


def test_upstream_request_round_trips_through_the_server_codec() -> None:
    data = (
        b"POST http://orders.corp/v1/orders?x=1 HTTP/1.1\r\nHost: orders.corp\r\n"
        b"Connection: keep-alive\r\nTransfer-Encoding: chunked\r\nX-Tenant: 7\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n"
    )
    _, events = server(data)
    head = head_of(events)
    upstream = request_head_bytes(
        head,
        target=b"/internal/orders?x=1",
        host=b"orders-v2.corp",
        added=encode_fields(
            [
                (b"x-request-id", b"r-1"),
                (b"traceparent", b"00-abc-def-01"),
                (b"x-forwarded-for", b"10.0.0.7"),
            ]
        ),
    )
    body = encode_chunk(b"abc") + last_chunk(events[-1].trailers)  # type: ignore[attr-defined]
    _, again = server(upstream + body)
    copy = head_of(again)
    assert copy.method == b"POST" and copy.path == b"/internal/orders?x=1"
    assert copy.http_version == "1.1" and copy.chunked and copy.keep_alive
    assert copy.headers == [
        (b"X-Tenant", b"7"),
        (b"host", b"orders-v2.corp"),
        (b"x-request-id", b"r-1"),
        (b"traceparent", b"00-abc-def-01"),
        (b"x-forwarded-for", b"10.0.0.7"),
        (b"transfer-encoding", b"chunked"),
    ]
    assert again[1:] == [Body(b"abc"), EndBody([(b"X-Sum", b"1")])]


def test_upstream_request_keeps_content_length_and_rewrites_method() -> None:
    _, events = server(b"PUT /a HTTP/1.0\r\nContent-Length: 2\r\nX: y\r\n\r\nhi")
    upstream = request_head_bytes(head_of(events), method=b"POST", host=b"a.corp")
    assert upstream == b"POST /a HTTP/1.1\r\nContent-Length: 2\r\nX: y\r\nhost: a.corp\r\n\r\n"
    _, again = server(upstream + b"hi")
    assert again[1:] == [Body(b"hi"), EndBody()]


@pytest.mark.parametrize(
    ("upstream", "version", "chunked", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody", b"1.1", False, True),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n",
            b"1.1",
            True,
            True,
        ),
        (b"HTTP/1.0 200 OK\r\n\r\nbody", b"1.1", True, True),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n",
            b"1.0",
            False,
            False,
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody", b"1.0", False, False),
    ],
)
def test_downstream_response_round_trips_through_the_client_codec(
    upstream: bytes, version: bytes, chunked: bool, keep_alive: bool
) -> None:
    codec, events = client(upstream)
    if not events or not isinstance(events[-1], EndBody):
        codec.receive_data(b"")
        events += drain(codec)
    response = response_of(events)
    request = head_request(b"GET", version)
    plan = response_head_bytes(response, request, extra=[(b"x-envoy-upstream-service-time", b"3")])
    assert (plan.chunked, plan.keep_alive) == (chunked, keep_alive)
    wire = plan.head
    for event in events:
        if isinstance(event, Body):
            wire += encode_chunk(event.data) if plan.chunked else event.data
    if plan.chunked:
        wire += LAST_CHUNK
    reader, seen = client(wire)
    if not plan.keep_alive:
        reader.receive_data(b"")
        seen += drain(reader)
    again = response_of(seen)
    assert again.status == 200 and body_of(seen) == b"body"
    assert again.keep_alive is keep_alive
    assert get_field(again.headers, b"x-envoy-upstream-service-time") == b"3"
    if version == b"1.0" and keep_alive:
        assert get_field(again.headers, b"connection") == b"keep-alive"


def test_http10_client_kept_alive_is_told_so() -> None:
    _, events = client(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    request = head_of(server(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")[1])
    plan = response_head_bytes(response_of(events), request)
    assert plan.keep_alive and plan.head.endswith(b"connection: keep-alive\r\n\r\n")
    plan = response_head_bytes(response_of(events), request, keep_alive=False)
    assert not plan.keep_alive and plan.head.endswith(b"connection: close\r\n\r\n")


def test_local_response_is_one_complete_message() -> None:
    wire = local_response(
        503, "overloaded: circuit breaker open", headers=[(b"x-mapmesh-overloaded", b"true")]
    )
    codec, events = client(wire)
    head = response_of(events)
    assert (head.status, head.reason) == (503, b"Service Unavailable")
    assert get_field(head.headers, b"x-mapmesh-overloaded") == b"true"
    assert get_field(head.headers, b"content-type") == b"text/plain; charset=utf-8"
    assert body_of(events) == b"overloaded: circuit breaker open\n"
    assert codec.reusable

    wire = local_response(431, "header block too large", keep_alive=False, head_only=True)
    codec, events = client(wire, b"HEAD")
    assert response_of(events).status == 431 and body_of(events) == b""
    assert not codec.reusable
    assert b"connection: keep-alive" in local_response(404, "no route", http10=True)
    assert local_response(599, "odd").startswith(b"HTTP/1.1 599 \r\n")


def test_chunk_encoding() -> None:
    assert encode_chunk(b"") == b""  # an empty chunk would end the body
    assert encode_chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    assert last_chunk() == LAST_CHUNK == b"0\r\n\r\n"
    assert last_chunk([(b"X-Sum", b"1")]) == b"0\r\nX-Sum: 1\r\n\r\n"


@pytest.mark.parametrize(
    "field",
    [(b"x-a", b"1\r\nInjected: yes"), (b"x-a", b"\n"), (b"x a", b"1"), (b"", b"1"), (b"x:", b"1")],
)
def test_encode_fields_refuses_injection(field: tuple[bytes, bytes]) -> None:
    with pytest.raises(ValueError, match="invalid"):
        encode_fields([field])


def test_header_helpers() -> None:
    fields = [(b"Host", b"a"), (b"X-Tag", b"1"), (b"x-tag", b"2"), (b"Accept", b"\xe9")]
    assert get_field(fields, b"x-tag") == b"1"
    assert get_field(fields, b"missing") is None
    assert get_fields(fields, b"x-tag") == [b"1", b"2"]
    assert header_map(fields) == {"host": "a", "x-tag": "1,2", "accept": "\xe9"}


@pytest.mark.parametrize(
    ("lines", "host", "content_length", "connection", "request_id"),
    [
        ([b"Host: a", b"Content-Length: 5"], b"a", b"5", set(), None),
        ([b"HOST: a", b"CONTENT-LENGTH:\t5 \t"], b"a", b"5", set(), None),
        ([b"hOsT:  a.b  ", b"cOnNeCtIoN: Keep-Alive"], b"a.b", None, {b"keep-alive"}, None),
        ([b"host: h", b"Connection: close , X-A,,"], b"h", None, {b"close", b"x-a"}, None),
        ([b"Host: h", b"X-Request-ID: AbC-1 "], b"h", None, set(), b"AbC-1"),
        ([b"Host: h", b"x-request-id:"], b"h", None, set(), b""),
    ],
)
def test_scan_reads_fields_whatever_their_spelling(
    lines: list[bytes],
    host: bytes,
    content_length: bytes | None,
    connection: set[bytes],
    request_id: bytes | None,
) -> None:
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"
    scan = scan_head(head, head.find(b"\r\n"))
    assert (scan.host, scan.host_count) == (host, 1)
    assert scan.content_length == content_length
    assert scan.connection == connection
    assert scan.request_id == request_id


def test_scan_cuts_each_hop_line_whole() -> None:
    # "Connection: close" is also how the line before it starts.
    head = b"HTTP/1.1 200 OK\r\nConnection: closer-x\r\nConnection: close\r\n\r\n"
    scan = scan_head(head, head.find(b"\r\n"))
    assert [head[a:b] for a, b in scan.spans] == [
        b"Connection: closer-x\r\n",
        b"Connection: close\r\n",
    ]
    head = b"HTTP/1.1 200 OK\r\nX-Note: a\r\nConnection: keep-alive\r\nX-Other: b\r\n\r\n"
    scan = scan_head(head, head.find(b"\r\n"))
    assert [head[a:b] for a, b in scan.spans] == [b"Connection: keep-alive\r\n"]
