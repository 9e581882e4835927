"""The query path's byte handling: header and question parsing, EDNS0, truncation.

Queries are crafted byte by byte where dnspython would refuse to build them; every reply
is decoded with dnspython, which checks each compression pointer it follows.
"""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest

from mapmesh.dns import DnsTable, wire
from mapmesh.model.registry import RecordType
from tests.unit.test_dns_zone import StaticRegistry, answer_texts, ask, built, web_registry


@pytest.fixture(scope="module")
def table() -> DnsTable:
    registry, _ = web_registry(3)
    return built(registry)


def raw_query(
    name: bytes = b"\x03web\x04corp\x05local\x00",
    qtype: int = 1,
    qclass: int = 1,
    *,
    ident: int = 0x1234,
    flags: int = 0x0100,
    counts: tuple[int, int, int, int] = (1, 0, 0, 0),
    extra: bytes = b"",
) -> bytes:
    return (
        struct.pack(">HHHHHH", ident, flags, *counts)
        + name
        + struct.pack(">HH", qtype, qclass)
        + extra
    )


def decode(reply: bytes | None) -> dns.message.Message:
    assert reply is not None
    return dns.message.from_wire(reply)


# -- header --------------------------------------------------------------------------------


def test_packets_without_a_readable_header_or_with_qr_set_are_dropped(table: DnsTable) -> None:
    assert table.answer(b"", 4096) is None
    assert table.answer(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00", 4096) is None
    assert table.answer(raw_query(flags=0x8100), 4096) is None


def test_opcodes_other_than_query_get_notimp_with_the_opcode_copied(table: DnsTable) -> None:
    notify = dns.opcode.to_flags(dns.opcode.NOTIFY)
    message = decode(table.answer(raw_query(flags=notify), 4096))
    assert message.rcode() == dns.rcode.NOTIMP
    assert message.opcode() == dns.opcode.NOTIFY
    assert message.id == 0x1234 and message.flags & dns.flags.QR


@pytest.mark.parametrize("qdcount", [0, 2])
def test_qdcount_other_than_one_is_formerr(table: DnsTable, qdcount: int) -> None:
    message = decode(table.answer(raw_query(counts=(qdcount, 0, 0, 0)), 4096))
    assert message.rcode() == dns.rcode.FORMERR and message.id == 0x1234


MALFORMED = {
    "question-cut-short": raw_query()[:-1],
    "name-cut-short": raw_query()[:20],
    "no-question": raw_query()[:12],
    "pointer-in-question": raw_query(name=b"\xc0\x0c"),
    "label-over-63": raw_query(name=b"\x40" + b"a" * 64 + b"\x00"),
    "no-root-label": raw_query()[:12] + b"\x3f" + b"a" * 63,
    "name-of-257": raw_query(name=b"".join(b"\x3f" + bytes((c,)) * 63 for c in b"abcd") + b"\x00"),
}


@pytest.mark.parametrize("query", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_questions_are_formerr(table: DnsTable, query: bytes) -> None:
    message = decode(table.answer(query, 4096))
    assert message.rcode() == dns.rcode.FORMERR and message.id == 0x1234


def test_rd_is_copied_and_ra_is_never_set(table: DnsTable) -> None:
    with_rd = decode(table.answer(raw_query(flags=0x0100), 4096))
    without = decode(table.answer(raw_query(flags=0x0000), 4096))
    assert with_rd.flags & dns.flags.RD and not without.flags & dns.flags.RD
    assert not (with_rd.flags | without.flags) & dns.flags.RA


def test_a_name_of_exactly_255_octets_is_accepted() -> None:
    registry = StaticRegistry()
    registry.add_namespace("corp")
    table = built(registry)
    labels = [b"a" * 63, b"b" * 63, b"c" * 63, b"d" * 56]
    name = b"".join(bytes((len(label),)) + label for label in labels) + b"\x04corp\x00"
    assert len(name) == 255
    assert decode(table.answer(raw_query(name=name), 4096)).rcode() == dns.rcode.NXDOMAIN


# -- question ------------------------------------------------------------------------------


def test_the_reply_echoes_the_question_bytes_exactly(table: DnsTable) -> None:
    query = raw_query(name=b"\x03wEb\x04CORP\x05local\x00")
    reply = table.answer(query, 4096)
    assert reply is not None
    assert reply[12 : 12 + 20] == query[12:32]
    message = decode(reply)
    assert message.answer[0].name.to_text() == "wEb.CORP.local."


@pytest.mark.parametrize("qclass", [3, 4, 255])  # CH, HS, ANY
def test_classes_other_than_in_are_refused(table: DnsTable, qclass: int) -> None:
    message = decode(table.answer(raw_query(qclass=qclass), 4096))
    assert message.rcode() == dns.rcode.REFUSED
    assert len(message.question) == 1 and not message.answer


@pytest.mark.parametrize("rdtype", ["AXFR", "IXFR"])
def test_zone_transfers_are_refused(table: DnsTable, rdtype: str) -> None:
    qtype = dns.rdatatype.from_text(rdtype)
    message = decode(table.answer(raw_query(name=b"\x04corp\x05local\x00", qtype=qtype), None))
    assert message.rcode() == dns.rcode.REFUSED


def test_unknown_types_at_existing_names_are_nodata(table: DnsTable) -> None:
    message = decode(table.answer(raw_query(qtype=65), 4096))  # HTTPS
    assert message.rcode() == dns.rcode.NOERROR and not message.answer
    assert message.authority[0].rdtype == dns.rdatatype.SOA


# -- EDNS0 ---------------------------------------------------------------------------------


def test_edns_queries_get_our_opt_record(table: DnsTable) -> None:
    message = ask(table, "web.corp.local", use_edns=0, payload=4096)
    assert message.edns == 0
    assert message.payload == wire.EDNS_PAYLOAD
    assert not message.options
    assert len(answer_texts(message)) == 3


def test_the_do_bit_is_echoed(table: DnsTable) -> None:
    query = dns.message.make_query("web.corp.local", "A", want_dnssec=True)
    message = decode(table.answer(query.to_wire(), 4096))
    assert message.ednsflags & dns.flags.DO


def test_options_such_as_cookies_are_ignored(table: DnsTable) -> None:
    cookie = dns.edns.GenericOption(dns.edns.COOKIE, b"\x01" * 8)
    query = dns.message.make_query("web.corp.local", "A", use_edns=0, options=[cookie])
    message = decode(table.answer(query.to_wire(), 4096))
    assert message.edns == 0 and not message.options
    assert len(answer_texts(message)) == 3


def test_edns_version_above_zero_is_badvers(table: DnsTable) -> None:
    query = dns.message.make_query("web.corp.local", "A", use_edns=1)
    message = decode(table.answer(query.to_wire(), 4096))
    assert message.rcode() == dns.rcode.BADVERS
    assert message.edns == 0 and not message.answer


def test_edns_applies_to_negative_and_refused_answers(table: DnsTable) -> None:
    assert ask(table, "nope.corp.local", use_edns=0).edns == 0
    assert ask(table, "example.org", use_edns=0).edns == 0


OPT_RR = b"\x00" + struct.pack(">HHIH", 41, 1232, 0, 0)
A_RR = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + b"\x0a\x00\x00\x01"


@pytest.mark.parametrize(
    ("counts", "extra"),
    [
        ((1, 1, 0, 0), OPT_RR),  # OPT in the answer section
        ((1, 0, 0, 2), OPT_RR + OPT_RR),  # two OPT records
        ((1, 0, 0, 1), b"\x01a" + OPT_RR),  # OPT owned by a non-root name
        ((1, 0, 0, 1), OPT_RR[:-1]),  # truncated OPT
        ((1, 0, 0, 1), b"\x00" + struct.pack(">HHIH", 41, 1232, 0, 8) + b"\x00\x0a"),  # rdata cut
        ((1, 0, 0, 3), OPT_RR),  # fewer records than counted
    ],
    ids=["opt-in-answer", "two-opts", "non-root-owner", "truncated", "short-rdata", "missing"],
)
def test_bad_additional_records_are_formerr(
    table: DnsTable, counts: tuple[int, int, int, int], extra: bytes
) -> None:
    message = decode(table.answer(raw_query(counts=counts, extra=extra), 4096))
    assert message.rcode() == dns.rcode.FORMERR


def test_other_records_after_the_question_are_skipped(table: DnsTable) -> None:
    query = raw_query(counts=(1, 1, 0, 1), extra=A_RR + OPT_RR)
    message = decode(table.answer(query, 4096))
    assert message.rcode() == dns.rcode.NOERROR and message.edns == 0
    no_opt = decode(table.answer(raw_query(counts=(1, 0, 0, 1), extra=A_RR), 4096))
    assert no_opt.rcode() == dns.rcode.NOERROR and no_opt.edns == -1


# -- truncation ----------------------------------------------------------------------------


def big_srv_table(id_length: int) -> DnsTable:
    """Eight SRV records with long targets, each with A and AAAA glue."""
    registry = StaticRegistry()
    corp = registry.add_namespace("corp")
    db = registry.add_service(corp, "db", {RecordType.SRV: 30})
    for index in range(8):
        instance_id = f"{index}".rjust(id_length, "x")
        registry.register(
            db, instance_id, ipv4=f"10.0.0.{index}", ipv6=f"2001:db8::{index}", port=5432
        )
    return built(registry)


def test_a_reply_too_big_for_512_octets_is_truncated_without_records() -> None:
    table = big_srv_table(id_length=50)
    message = ask(table, "db.corp", "SRV")
    assert message.flags & dns.flags.TC
    assert not message.answer and not message.additional
    assert message.flags & dns.flags.AA


def test_edns_raises_the_limit_and_tcp_has_none() -> None:
    table = big_srv_table(id_length=50)
    over_edns = ask(table, "db.corp", "SRV", use_edns=0, payload=4096)
    assert not over_edns.flags & dns.flags.TC
    assert len(answer_texts(over_edns, "SRV")) == 8
    assert len(over_edns.additional) == 16
    over_tcp = ask(table, "db.corp", "SRV", max_udp=None)
    assert not over_tcp.flags & dns.flags.TC and len(over_tcp.additional) == 16


def test_a_small_edns_payload_counts_as_512_and_the_server_cap_wins() -> None:
    table = big_srv_table(id_length=50)
    assert ask(table, "db.corp", "SRV", use_edns=0, payload=100).flags & dns.flags.TC
    capped = ask(table, "db.corp", "SRV", use_edns=0, payload=4096, max_udp=600)
    assert capped.flags & dns.flags.TC and capped.edns == 0


def test_glue_is_dropped_before_answers_are() -> None:
    table = big_srv_table(id_length=30)
    message = ask(table, "db.corp", "SRV")
    assert not message.flags & dns.flags.TC
    assert len(answer_texts(message, "SRV")) == 8 and not message.additional


# -- encoders ------------------------------------------------------------------------------


def test_encode_name() -> None:
    assert wire.encode_name("corp.local.") == b"\x04corp\x05local\x00"
    assert wire.encode_name("corp.local") == b"\x04corp\x05local\x00"
    assert wire.encode_name(".") == b"\x00"
    for bad in ("a..b", "a" * 64 + ".corp", ".".join(["a" * 63] * 4), "caf\u00e9.corp"):
        with pytest.raises(ValueError):
            wire.encode_name(bad)


def test_pointer_range() -> None:
    assert wire.pointer(12) == b"\xc0\x0c"
    with pytest.raises(ValueError):
        wire.pointer(0x4000)


def test_skip_name_handles_labels_pointers_and_overruns() -> None:
    message = b"\x00" * 12 + b"\x03abc\xc0\x0c\x00"
    assert wire.skip_name(message, 12) == 18
    assert wire.skip_name(message, 16) == 18
    with pytest.raises(wire.FormatError):
        wire.skip_name(message + b"\x05ab", 19)
    with pytest.raises(wire.FormatError):
        wire.skip_name(b"\x00" * 12 + b"\x80", 12)
