"""Invariant: however the bytes are split, the HTTP/1.1 codecs say the same thing, and
whatever the bytes are, they only ever answer with their own events — never an exception,
never an endless loop.

- Valid requests and responses (pipelined, Content-Length, chunked with extensions and
  trailers, close-delimited) fed whole, byte-at-a-time and in random splits yield the same
  events (consecutive ``Body`` pieces merged), equal to what was encoded.
- On valid requests the codec agrees with llhttp run over the whole stream (differential:
  same targets, fields and bodies — our framing is the one llhttp would have used).
- Hop-by-hop fields in any case and order are cut from the forwarded block and nothing
  else is; without them the block is forwarded as the very object received.
- Random bytes and mutated valid messages (bytes replaced, inserted, deleted) produce a
  well-formed event sequence ending, if at all, in ``ProtocolError`` with a known status;
  the status does not depend on the split either. Where both we and llhttp accept a
  mutated message, both read the same body (no request-smuggling disagreement).
"""

from __future__ import annotations

import contextlib
import itertools
import random
import string
from dataclasses import dataclass, field

import httptools
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mapmesh.proxy.protocol import (
    HOP_BY_HOP,
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
)

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
SERVER_STATUSES = {400, 413, 414, 431, 501, 505}

# -- strategies -------------------------------------------------------------------------

TOKEN = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
RESERVED = {
    b"host",
    b"content-length",
    b"transfer-encoding",
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"upgrade",
    b"expect",
}
names = (
    st.text(alphabet=TOKEN, min_size=1, max_size=12)
    .map(str.encode)
    .filter(lambda name: name.lower() not in RESERVED)
)
values = st.builds(
    lambda text, high: (text.encode() + high).strip(b" \t"),
    st.text(alphabet=string.ascii_letters + string.digits + " -_;=,/:.\"'()", max_size=16),
    st.binary(max_size=2).map(lambda raw: bytes(byte | 0x80 for byte in raw)),
)
fields = st.lists(st.tuples(names, values), max_size=5)
paths = st.text(alphabet=string.ascii_letters + string.digits + "/-._~%?&=", max_size=24)
extensions = st.sampled_from([b"", b";a=b", b';name="quoted value"', b";x"])


@dataclass
class Message:
    wire: bytes
    start: bytes  # method or status
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)


@st.composite
def chunked_body(draw: st.DrawFn, body: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    wire = b""
    for piece in pieces:
        if piece:
            wire += b"%x%s\r\n%s\r\n" % (len(piece), draw(extensions), piece)
    trailers = draw(st.lists(st.tuples(names, values), max_size=2))
    wire += b"0\r\n" + b"".join(b"%s: %s\r\n" % pair for pair in trailers) + b"\r\n"
    return wire, trailers


@st.composite
def requests(draw: st.DrawFn) -> Message:
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"]))
    target = b"/" + draw(paths).encode()
    headers = [(b"Host", b"svc.corp"), *draw(fields)]
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    body = draw(st.binary(max_size=48)) if framing != "none" else b""
    trailers: list[tuple[bytes, bytes]] = []
    if framing == "length":
        headers.append((b"Content-Length", b"%d" % len(body)))
        encoded = body
    elif framing == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
        encoded, trailers = draw(chunked_body(body))
    else:
        encoded = b""
    wire = b"%s %s HTTP/1.1\r\n" % (method, target)
    wire += b"".join(b"%s: %s\r\n" % pair for pair in headers) + b"\r\n" + encoded
    return Message(wire, method, target, headers, body, trailers)


@st.composite
def responses(draw: st.DrawFn) -> tuple[Message, bytes, bool]:
    """A response, the method of the request it answers, whether it ends at EOF."""
    status = draw(st.sampled_from([200, 201, 204, 304, 404, 500, 503]))
    method = draw(st.sampled_from([b"GET", b"GET", b"HEAD", b"POST"]))
    headers = draw(fields)
    bodiless = method == b"HEAD" or status in (204, 304)
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    body = b"" if bodiless else draw(st.binary(max_size=48))
    trailers: list[tuple[bytes, bytes]] = []
    encoded = body
    if framing == "length":
        length = draw(st.integers(0, 99)) if bodiless else len(body)  # HEAD: the GET's size
        headers.append((b"Content-Length", b"%d" % length))
    elif framing == "chunked" and not bodiless:
        headers.append((b"Transfer-Encoding", b"chunked"))
        encoded, trailers = draw(chunked_body(body))
    preface = draw(st.sampled_from([b"", b"HTTP/1.1 100 Continue\r\n\r\n"]))
    wire = preface + b"HTTP/1.1 %d Reason\r\n" % status
    wire += b"".join(b"%s: %s\r\n" % pair for pair in headers) + b"\r\n" + encoded
    close = framing == "close" and not bodiless
    return Message(wire, b"%d" % status, b"", headers, body, trailers), method, close


def splits(data: bytes) -> st.SearchStrategy[list[bytes]]:
    """``data`` cut at random places (no empty pieces: ``b""`` means EOF to a codec)."""

    def cut(points: list[int]) -> list[bytes]:
        bounds = [0, *sorted(points), len(data)]
        return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]

    return st.lists(st.integers(0, len(data)), max_size=8).map(cut)


@st.composite
def mutated(draw: st.DrawFn, source: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(source))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["replace", "insert", "delete"]))
        noise = draw(st.sampled_from([b"\r", b"\n", b"\r\n", b" ", b"0", b":", b";", b"\x00"]))
        noise = draw(st.one_of(st.just(noise), st.binary(min_size=1, max_size=3)))
        if kind == "insert":
            data[position:position] = noise
        elif kind == "replace":
            data[position : position + len(noise)] = noise
        else:
            del data[position : position + draw(st.integers(1, 4))]
    return bytes(data)


pipelines = st.lists(requests(), min_size=1, max_size=3)


# -- running the codecs ---------------------------------------------------------------------


def feed(codec: Http1ServerCodec | Http1ClientCodec, pieces: list[bytes], eof: bool) -> list[Event]:
    total = sum(len(piece) for piece in pieces)
    out: list[Event] = []
    for piece in [*pieces, *([b""] if eof else [])]:
        codec.receive_data(piece)
        while (event := codec.next_event()) is not None:
            out.append(event)
            assert len(out) <= total + 10, "the codec keeps producing events"
    return out


def run_server(pieces: list[bytes], eof: bool = False) -> list[Event]:
    return normalised(feed(Http1ServerCodec(), pieces, eof))


def run_client(pieces: list[bytes], method: bytes, eof: bool) -> list[Event]:
    codec = Http1ClientCodec()
    codec.start_request(method)
    return normalised(feed(codec, pieces, eof))


def normalised(events: list[Event]) -> list[Event]:
    """Consecutive Body pieces merged: how the bytes were split must not matter beyond that."""
    out: list[Event] = []
    for event in events:
        if isinstance(event, Body) and out and isinstance(out[-1], Body):
            out[-1] = Body(out[-1].data + event.data)
        else:
            out.append(event)
    return out


def outcome(events: list[Event]) -> list[Event | int]:
    """Events, with a trailing error reduced to its status (the phrase may differ by split)."""
    if events and isinstance(events[-1], ProtocolError):
        return [*events[:-1], events[-1].status_hint]
    return list(events)


def check_grammar(events: list[Event], statuses: set[int]) -> None:
    in_message = False
    for index, event in enumerate(events):
        last = index == len(events) - 1
        if isinstance(event, ProtocolError):
            assert last and event.status_hint in statuses and event.reason
        elif isinstance(event, ConnectionClosed):
            assert last and not in_message
        elif isinstance(event, RequestHead | ResponseHead):
            assert not in_message
            in_message = True
        elif isinstance(event, InformationalResponse):
            assert not in_message
        elif isinstance(event, Body):
            assert in_message and event.data
        else:
            assert isinstance(event, EndBody) and in_message
            in_message = False


Summary = list[tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]]


def expected_events(messages: list[Message]) -> Summary:
    return [(m.start, m.target, list(m.headers), m.body) for m in messages]


def summary(events: list[Event]) -> Summary:
    out: Summary = []
    for index, event in enumerate(events):
        if isinstance(event, RequestHead):
            following = events[index + 1] if index + 1 < len(events) else None
            body = following.data if isinstance(following, Body) else b""
            out.append((event.method, event.target, list(event.headers), body))
    return out


# -- requests -------------------------------------------------------------------------------


@FUZZ
@given(st.data(), pipelines)
def test_valid_requests_read_the_same_however_split(
    data: st.DataObject, batch: list[Message]
) -> None:
    wire = b"".join(message.wire for message in batch)
    whole = run_server([wire])
    assert summary(whole) == expected_events(batch)
    assert [e.trailers for e in whole if isinstance(e, EndBody)] == [m.trailers for m in batch]
    check_grammar(whole, set())
    assert run_server([bytes([byte]) for byte in wire]) == whole
    assert run_server(data.draw(splits(wire))) == whole


class LlhttpRecorder:
    def __init__(self) -> None:
        self.messages: list[dict[str, object]] = []

    def on_message_begin(self) -> None:
        self.messages.append({"url": b"", "headers": [], "body": b"", "done": False})

    def on_url(self, url: bytes) -> None:
        self.messages[-1]["url"] += url  # type: ignore[operator]

    def on_header(self, name: bytes, value: bytes) -> None:
        self.messages[-1]["headers"].append((name, value.rstrip(b" \t")))  # type: ignore[attr-defined]

    def on_body(self, body: bytes) -> None:
        self.messages[-1]["body"] += body  # type: ignore[operator]

    def on_message_complete(self) -> None:
        self.messages[-1]["done"] = True


def llhttp_messages(wire: bytes) -> list[dict[str, object]]:
    recorder = LlhttpRecorder()
    with contextlib.suppress(httptools.HttpParserError):
        httptools.HttpRequestParser(recorder).feed_data(wire)
    return [message for message in recorder.messages if message["done"]]


def ours_complete(events: list[Event]) -> list[dict[str, object]]:
    """Messages we read to their end (head … EndBody), in llhttp's shape. Trailers aside:
    llhttp reports them as ordinary fields after the head's."""
    out: list[dict[str, object]] = []
    current: dict[str, object] | None = None
    for event in events:
        if isinstance(event, RequestHead):
            current = {"url": event.target, "headers": list(event.headers), "body": b""}
        elif isinstance(event, Body) and current is not None:
            current["body"] += event.data  # type: ignore[operator]
        elif isinstance(event, EndBody) and current is not None:
            current["headers"] += event.trailers  # type: ignore[operator]
            current["done"] = True
            out.append(current)
            current = None
    return out


@FUZZ
@given(pipelines)
def test_valid_requests_agree_with_llhttp(batch: list[Message]) -> None:
    wire = b"".join(message.wire for message in batch)
    assert ours_complete(run_server([wire])) == llhttp_messages(wire)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_only_ever_yield_codec_events(wire: bytes) -> None:
    whole = run_server([wire], eof=True)
    check_grammar(whole, SERVER_STATUSES)
    assert outcome(run_server([bytes([byte]) for byte in wire], eof=True)) == outcome(whole)


@FUZZ
@given(st.data(), mutated(pipelines.map(lambda batch: b"".join(m.wire for m in batch))))
def test_mutated_requests_fail_cleanly_the_same_way_however_split(
    data: st.DataObject, wire: bytes
) -> None:
    whole = run_server([wire], eof=True)
    check_grammar(whole, SERVER_STATUSES)
    assert outcome(run_server([bytes([byte]) for byte in wire], eof=True)) == outcome(whole)
    assert outcome(run_server(data.draw(splits(wire)), eof=True)) == outcome(whole)


@FUZZ
@given(mutated(pipelines.map(lambda batch: b"".join(m.wire for m in batch))))
def test_mutated_requests_never_frame_differently_from_llhttp(wire: bytes) -> None:
    """Request smuggling needs two parsers that disagree on where a message ends. We read
    no message llhttp would refuse (we are stricter: Host required, no HTTP/0.9), and each
    message both read to its end has the same target, fields and body."""
    ours = ours_complete(run_server([wire]))
    theirs = llhttp_messages(wire)
    assert len(ours) <= len(theirs)
    assert ours == theirs[: len(ours)]


hop_names = st.sampled_from(
    [b"Connection", b"Keep-Alive", b"Proxy-Connection", b"TE", b"Trailer", b"Upgrade", b"X-Hop"]
).map(lambda name: bytes(c ^ 0x20 if c >= 0x61 and c % 3 == 0 else c for c in name.lower()))


@FUZZ
@given(
    fields,
    st.lists(st.tuples(hop_names, st.sampled_from([b"keep-alive", b"x-hop", b"1", b"x-hop, te"]))),
    st.randoms(use_true_random=False),
)
def test_forwarded_block_is_the_received_block_minus_hop_by_hop_lines(
    ordinary: list[tuple[bytes, bytes]], hops: list[tuple[bytes, bytes]], rng: random.Random
) -> None:
    lines = [b"Host: h", *(b"%s: %s" % pair for pair in [*ordinary, *hops])]
    rng.shuffle(lines)
    block = b"".join(line + b"\r\n" for line in lines)
    head = head_of_request(b"GET / HTTP/1.1\r\n" + block + b"\r\n")
    listed = {
        token.strip().lower()
        for name, value in hops
        if name.lower() == b"connection"
        for token in value.split(b",")
    }
    dropped = HOP_BY_HOP | (listed - {b"host", b"content-length"})
    expected = [line for line in lines if line.split(b":")[0].lower() not in dropped]
    assert head.raw_headers == block
    assert head.forward_headers == b"".join(line + b"\r\n" for line in expected)
    if len(expected) == len(lines):
        assert head.forward_headers is head.raw_headers


def head_of_request(wire: bytes) -> RequestHead:
    events = run_server([wire])
    assert isinstance(events[0], RequestHead), events
    return events[0]


# -- responses ------------------------------------------------------------------------------


@FUZZ
@given(st.data(), responses())
def test_valid_responses_read_the_same_however_split(
    data: st.DataObject, case: tuple[Message, bytes, bool]
) -> None:
    message, method, close = case
    whole = run_client([message.wire], method, eof=close)
    check_grammar(whole, set())
    head = next(event for event in whole if isinstance(event, ResponseHead))
    assert b"%d" % head.status == message.start
    assert head.headers == message.headers
    assert b"".join(event.data for event in whole if isinstance(event, Body)) == message.body
    assert whole[-1] == EndBody(message.trailers)
    assert run_client([bytes([b]) for b in message.wire], method, eof=close) == whole
    assert run_client(data.draw(splits(message.wire)), method, eof=close) == whole


class LlhttpResponseRecorder(LlhttpRecorder):
    def __init__(self) -> None:
        super().__init__()
        self.parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self) -> None:
        self.messages[-1]["status"] = self.parser.get_status_code()


def llhttp_response(wire: bytes) -> tuple[int, list[object], bytes] | None:
    """The final (non-1xx) response llhttp reads to its end, if any."""
    recorder = LlhttpResponseRecorder()
    with contextlib.suppress(httptools.HttpParserError):
        recorder.parser.feed_data(wire)
    for message in recorder.messages:
        status = message.get("status", 0)
        if status >= 200 and message["done"]:  # type: ignore[operator]
            return status, message["headers"], message["body"]  # type: ignore[return-value]
    return None


def our_response(events: list[Event]) -> tuple[int, list[object], bytes] | None:
    heads = [event for event in events if isinstance(event, ResponseHead)]
    if not heads or not isinstance(events[-1], EndBody):
        return None
    body = b"".join(event.data for event in events if isinstance(event, Body))
    return heads[0].status, [*heads[0].headers, *events[-1].trailers], body


@FUZZ
@given(mutated(responses().map(lambda case: case[0].wire)))
def test_mutated_responses_never_frame_differently_from_llhttp(wire: bytes) -> None:
    """A pooled upstream connection is only safe to reuse if we end each response where
    llhttp would: a response we read to its end, llhttp reads the same way."""
    ours = our_response(run_client([wire], b"GET", eof=False))
    if ours is not None:
        assert ours == llhttp_response(wire)


@FUZZ
@given(
    st.data(),
    st.one_of(
        st.binary(max_size=200),
        mutated(responses().map(lambda case: case[0].wire)),
    ),
    st.sampled_from([b"GET", b"HEAD"]),
)
def test_garbage_from_upstream_is_a_502_however_split(
    data: st.DataObject, wire: bytes, method: bytes
) -> None:
    whole = run_client([wire], method, eof=True)
    check_grammar(whole, {502})
    assert outcome(run_client(data.draw(splits(wire)), method, eof=True)) == outcome(whole)
