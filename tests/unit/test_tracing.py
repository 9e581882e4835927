"""Trace context: what a request arrives with, whether it is sampled, what goes upstream,
and the spans a sampled request leaves (:mod:`mapmesh.proxy.telemetry.tracing`, ``.spans``)."""

from __future__ import annotations

import re

import pytest

from mapmesh.proxy.protocol.events import RequestHead
from mapmesh.proxy.protocol.http1_server import Http1ServerCodec
from mapmesh.proxy.telemetry import spans as spans_module
from mapmesh.proxy.telemetry.spans import (
    CLIENT,
    SERVER,
    Identity,
    SpanBuffer,
    span_document,
    spans_of,
)
from mapmesh.proxy.telemetry.tracing import (
    NEVER,
    Sampler,
    Trace,
    parse_amzn_trace_id,
    parse_traceparent,
    trace_fields,
)
from mapmesh.telemetry.report import parse_report
from tests.unit.test_ratelimit import FakeClock

ALWAYS = Sampler(1.0, None)
TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
IDENTITY = Identity("demo", "virtualNode", "frontend", "frontend-1")


def head(*fields: str) -> RequestHead:
    codec = Http1ServerCodec()
    lines = "".join(f"{field}\r\n" for field in fields)
    codec.receive_data(f"GET /a?b=1 HTTP/1.1\r\nHost: worker.corp\r\n{lines}\r\n".encode())
    event = codec.next_event()
    assert isinstance(event, RequestHead)
    return event


def added_traceparent(added: bytes) -> tuple[str, str, str]:
    match = re.search(rb"traceparent: 00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])\r\n", added)
    assert match is not None, added
    trace_id, parent, flags = (group.decode() for group in match.groups())
    return trace_id, parent, flags


# -- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (f"00-{TRACE}-{PARENT}-01", (TRACE, PARENT, True)),
        (f"00-{TRACE}-{PARENT}-00", (TRACE, PARENT, False)),
        (f"00-{TRACE}-{PARENT}-03", (TRACE, PARENT, True)),  # other flag bits: still sampled
        (f"01-{TRACE}-{PARENT}-01-later-fields", (TRACE, PARENT, True)),  # a later version
        (f"00-{TRACE}-{PARENT}-01-extra", None),  # version 00 has exactly four fields
        (f"ff-{TRACE}-{PARENT}-01", None),
        (f"00-{'0' * 32}-{PARENT}-01", None),
        (f"00-{TRACE}-{'0' * 16}-01", None),
        (f"00-{TRACE.upper()}-{PARENT}-01", None),
        ("00-abc-def-01", None),
        ("", None),
    ],
)
def test_traceparent(value: str, parsed: tuple[str, str, bool] | None) -> None:
    result = parse_traceparent(value.encode())
    expected = None if parsed is None else (parsed[0].encode(), parsed[1].encode(), parsed[2])
    assert result == expected


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
            ("5759e988bd862e3fe1be46a994272793", "53995c3f42cd8ad8", True),
        ),
        (
            "Root=1-5759E988-BD862E3FE1BE46A994272793; Sampled=0",
            ("5759e988bd862e3fe1be46a994272793", None, False),
        ),
        (
            "Self=1-aaaaaaaa-bbbbbbbbbbbbbbbbbbbbbbbb;Root=1-5759e988-bd862e3fe1be46a994272793;"
            "Sampled=?",
            ("5759e988bd862e3fe1be46a994272793", None, None),
        ),
        ("Parent=53995c3f42cd8ad8;Sampled=1", None),  # no Root
        ("Root=2-5759e988-bd862e3fe1be46a994272793", None),
        ("Root=1-5759e988-bd862e3f", None),
    ],
)
def test_x_amzn_trace_id(value: str, parsed: tuple[str, str | None, bool | None] | None) -> None:
    result = parse_amzn_trace_id(value.encode())
    if parsed is None:
        assert result is None
    else:
        trace_id, parent, sampled = parsed
        assert result == (trace_id.encode(), parent.encode() if parent else None, sampled)


# -- the decision and what goes upstream --------------------------------------------------------


def test_a_first_hop_at_full_sampling_starts_a_sampled_trace() -> None:
    request_id, added, trace = trace_fields(head(), ALWAYS)
    assert trace is not None and trace.parent_id is None
    trace_id, parent, flags = added_traceparent(added)
    assert (trace_id, parent, flags) == (trace.trace_id.decode(), trace.client_id.decode(), "01")
    assert trace.span_id != trace.client_id
    assert added.startswith(b"x-request-id: " + request_id + b"\r\n")
    assert trace.upstream_head(b"GET / HTTP/1.1\r\n" + added + b"\r\n").count(b"traceparent") == 1


def test_at_zero_sampling_nothing_is_traced_and_the_decision_travels() -> None:
    for _ in range(200):
        request_id, added, trace = trace_fields(head(), NEVER)
        assert trace is None
        assert added_traceparent(added)[2] == "00"  # the decision travels on
        assert re.fullmatch(rb"[0-9a-f]{32}", request_id)


def test_a_rate_samples_about_that_share() -> None:
    sampler = Sampler(0.25, None)
    sampled = sum(trace_fields(head(), sampler)[2] is not None for _ in range(4000))
    assert 800 <= sampled <= 1200


def test_the_rate_limit_caps_the_traces_started_per_second() -> None:
    clock = FakeClock()
    sampler = Sampler(1.0, 10.0, clock)
    assert sum(sampler.sample() for _ in range(100)) == 10  # a second's worth in a burst
    clock.now += 0.25
    assert sum(sampler.sample() for _ in range(100)) == 2  # refilled at 10 a second
    started = 0
    for _ in range(50):  # 5 s of a busy proxy: 10 a second, never more
        clock.now += 0.1
        started += sum(sampler.sample() for _ in range(100))
    assert started == 50
    clock.now += 60  # an idle minute refills one second's worth, not sixty
    assert sum(sampler.sample() for _ in range(100)) == 10


def test_the_rate_limit_applies_after_the_share_and_not_to_sampled_contexts() -> None:
    clock = FakeClock()
    sampler = Sampler(0.5, 5.0, clock)
    assert sum(sampler.sample() for _ in range(1000)) == 5
    incoming = head(f"traceparent: 00-{TRACE}-{PARENT}-01")
    assert all(trace_fields(incoming, sampler)[2] is not None for _ in range(50))


@pytest.mark.parametrize(("rate", "per_second"), [(-0.1, None), (1.5, None), (0.5, 0.0)])
def test_a_sampler_refuses_bad_settings(rate: float, per_second: float | None) -> None:
    with pytest.raises(ValueError, match="must be"):
        Sampler(rate, per_second)


def test_the_client_request_id_is_kept() -> None:
    request_id, added, trace = trace_fields(head("X-Request-Id: r-1"), ALWAYS)
    assert request_id == b"r-1"
    assert b"x-request-id" not in added and trace is not None


def test_a_sampled_traceparent_is_continued_with_this_hop_as_parent() -> None:
    incoming = f"00-{TRACE}-{PARENT}-01".encode()
    _, added, trace = trace_fields(head(f"traceparent: {incoming.decode()}"), NEVER)
    assert trace is not None  # the first hop decided: honoured whatever our rate
    assert (trace.trace_id, trace.parent_id, trace.present) == (TRACE.encode(), PARENT.encode(),
                                                                incoming)  # fmt: skip
    assert b"traceparent" not in added  # the client's line is rewritten in place
    upstream = b"GET /a HTTP/1.1\r\nHost: w\r\ntraceparent: " + incoming + b"\r\n" + added + b"\r\n"
    rewritten = trace.upstream_head(upstream)
    assert rewritten.count(b"traceparent: ") == 1
    assert b"traceparent: 00-%s-%s-01\r\n" % (TRACE.encode(), trace.client_id) in rewritten
    retried = trace.next_attempt(rewritten)
    assert b"traceparent: 00-%s-%s-01\r\n" % (TRACE.encode(), trace.client_id) in retried
    assert retried.count(b"traceparent: ") == 1 and retried != rewritten


def test_an_unsampled_traceparent_is_forwarded_as_it_came() -> None:
    _, added, trace = trace_fields(head(f"traceparent: 00-{TRACE}-{PARENT}-00"), ALWAYS)
    assert trace is None and b"traceparent" not in added


def test_an_invalid_traceparent_is_replaced_only_by_a_sampled_trace() -> None:
    bad = "00-xyz-b7ad6b7169203331-01"
    _, added, trace = trace_fields(head(f"traceparent: {bad}"), ALWAYS)
    assert trace is not None and trace.present == bad.encode() and trace.parent_id is None
    rewritten = trace.upstream_head(b"GET / HTTP/1.1\r\ntraceparent: " + bad.encode() + b"\r\n\r\n")
    assert bad.encode() not in rewritten and trace.trace_id in rewritten
    _, added, trace = trace_fields(head(f"traceparent: {bad}"), NEVER)
    assert trace is None and b"traceparent" not in added


def test_x_amzn_trace_id_starts_the_trace_it_names() -> None:
    amzn = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    _, added, trace = trace_fields(head(f"X-Amzn-Trace-Id: {amzn}"), NEVER)
    assert trace is not None
    assert trace.trace_id == b"5759e988bd862e3fe1be46a994272793"
    assert trace.parent_id == b"53995c3f42cd8ad8"
    assert added_traceparent(added) == (trace.trace_id.decode(), trace.client_id.decode(), "01")
    _, added, trace = trace_fields(head(f"X-Amzn-Trace-Id: {amzn[:-1]}0"), ALWAYS)
    assert trace is None and added_traceparent(added)[::2] == (
        "5759e988bd862e3fe1be46a994272793", "00")  # fmt: skip
    _, added, trace = trace_fields(head(f"X-Amzn-Trace-Id: {amzn[:-1]}?"), ALWAYS)
    assert trace is not None  # "?": ours to decide


# -- spans ------------------------------------------------------------------------------------


def traced_request(trace: Trace) -> spans_module.TracedRequest:
    return (
        trace, 100.0, 100.25, 200, [], "10.0.0.2:8080", "demo/worker-v1:8080", "outbound",
        "worker.corp", b"GET", b"/a?b=1", b"r-1", 100.1,
    )  # fmt: skip


def test_a_request_with_a_retry_has_a_server_span_and_two_client_spans() -> None:
    trace = Trace(TRACE.encode(), b"1" * 16, PARENT.encode(), b"2" * 16)
    trace.attempt_ended(100.0, 100.05, "10.0.0.1:8080", 503, "")
    trace.next_attempt(b"")
    spans = spans_of(traced_request(trace), IDENTITY)
    server, first, second = spans
    assert (server.kind, server.parent_id, server.span_id) == (SERVER, PARENT, "1" * 16)
    assert server.name == "outbound worker.corp" and not server.error
    assert [s.kind for s in (first, second)] == [CLIENT, CLIENT]
    assert {first.parent_id, second.parent_id} == {server.span_id}
    assert first.span_id == "2" * 16 and second.span_id == trace.client_id.decode()
    assert first.attributes["http.status_code"] == 503 and first.error
    assert second.attributes["mapmesh.attempt"] == 2
    assert second.attributes["mapmesh.upstream"] == "10.0.0.2:8080"
    assert second.start == pytest.approx(spans_module.WALL_OFFSET + 100.1)
    assert server.attributes["mapmesh.request_id"] == "r-1"


def test_span_documents_are_what_the_control_plane_accepts() -> None:
    trace = Trace(TRACE.encode(), b"1" * 16, None, b"2" * 16)
    traced = traced_request(trace)
    long_path = (*traced[:10], b"/" + b"x" * 5000, *traced[11:])
    documents = [span_document(span) for span in spans_of(long_path, IDENTITY)]  # type: ignore[arg-type]
    body = {
        "mesh": "demo", "kind": "virtualNode", "name": "frontend", "instance": "frontend-1",
        "window": {"start": 1.0, "end": 2.0}, "spans": documents,
    }  # fmt: skip
    report, _ = parse_report(body)
    assert [span.kind for span in report.spans] == ["server", "client"]
    assert report.spans[1].parent_span_id == report.spans[0].span_id


def test_a_span_buffer_drops_whole_requests_when_full() -> None:
    buffer = SpanBuffer(2)
    trace = Trace(TRACE.encode(), b"1" * 16, None, b"2" * 16)
    for _ in range(3):
        buffer.add(traced_request(trace))
    assert (len(buffer), buffer.dropped) == (2, 1)
    taken = buffer.take()
    buffer.add(traced_request(trace))
    buffer.put_back(taken)  # a failed export: back ahead of newer ones, within the limit
    assert (len(buffer), buffer.dropped) == (2, 2)
