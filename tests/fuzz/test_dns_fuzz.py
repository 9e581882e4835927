"""Invariant: whatever bytes arrive, the DNS path never raises, and every reply it sends
is a DNS message dnspython can decode, flagged as a response and carrying the query's id.

Inputs are random bytes, every prefix of valid queries (byte-at-a-time), and valid
queries with random bytes overwritten, cut or inserted; they go to ``DnsTable.answer``
directly and, fewer of them, to a live UDP socket.
"""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Iterator

import dns.flags
import dns.message
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mapmesh.dns import DnsServer, DnsTable
from mapmesh.model.registry import RecordType, RoutingPolicy
from tests.unit.test_dns_zone import StaticRegistry

NAMES = ["corp", "web.corp", "WEB.Corp", "db.corp", "i-1.db.corp", "nope.corp", "example.com"]
TYPES = ["A", "AAAA", "SRV", "CNAME", "SOA", "NS", "ANY", "TXT", "AXFR"]


def fuzz_table() -> DnsTable:
    registry = StaticRegistry()
    corp = registry.add_namespace("corp")
    web = registry.add_service(corp, "web", {RecordType.A: 60, RecordType.AAAA: 60})
    for index in range(12):
        registry.register(web, f"w{index}", ipv4=f"10.0.0.{index}", ipv6=f"2001:db8::{index}")
    db = registry.add_service(corp, "db", {RecordType.SRV: 30}, routing=RoutingPolicy.WEIGHTED)
    for index in range(3):
        registry.register(db, f"i-{index}", ipv4=f"10.1.0.{index}", port=5432)
    table = DnsTable(rng=random.Random(0))
    table.rebuild(registry, registry.change(reset=True))
    return table


TABLE = fuzz_table()


def check_reply(query: bytes, reply: bytes | None) -> None:
    if reply is None:
        return
    message = dns.message.from_wire(reply)
    assert message.flags & dns.flags.QR
    assert reply[:2] == query[:2]


def answer_both_ways(query: bytes) -> None:
    for max_udp in (4096, 512, None):
        check_reply(query, TABLE.answer(query, max_udp))


valid_queries = st.builds(
    lambda name, rdtype, edns, do: dns.message.make_query(
        name, rdtype, use_edns=edns, want_dnssec=do
    ).to_wire(),
    st.sampled_from(NAMES),
    st.sampled_from(TYPES),
    st.sampled_from([False, 0, 1]),
    st.booleans(),
)


@st.composite
def mutated_queries(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(valid_queries))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "set-count"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[position] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[position:]
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif len(data) >= 12:
            index = draw(st.sampled_from([4, 6, 8, 10]))
            data[index : index + 2] = struct.pack(">H", draw(st.integers(0, 0xFFFF)))
    return bytes(data)


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    answer_both_ways(data)


@settings(max_examples=1500, deadline=None)
@given(mutated_queries())
def test_mutated_queries(data: bytes) -> None:
    answer_both_ways(data)


@settings(max_examples=100, deadline=None)
@given(valid_queries)
def test_every_prefix_of_a_valid_query(query: bytes) -> None:
    for end in range(len(query) + 1):
        answer_both_ways(query[:end])


# -- over a live socket --------------------------------------------------------------------


@pytest.fixture(scope="module")
def udp_server() -> Iterator[DnsServer]:
    server = DnsServer(TABLE, "127.0.0.1", 0)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(udp_server: DnsServer) -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", udp_server.port))
        sock.settimeout(2.0)
        yield sock


def replies_to(sock: socket.socket, data: bytes) -> list[bytes]:
    """Send ``data`` then a probe; what arrives before the probe's reply answers ``data``.

    The server answers one datagram at a time in arrival order, so no timeout is needed
    to learn that ``data`` was dropped.
    """
    probe = dns.message.make_query("web.corp", "A")
    probe.id = (data[0] << 8 | data[1]) ^ 0xFFFF if len(data) >= 2 else 0xBEEF
    sock.send(data)
    sock.send(probe.to_wire())
    received = []
    while (reply := sock.recv(65535))[:2] != struct.pack(">H", probe.id):
        received.append(reply)
    return received


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.one_of(st.binary(min_size=1, max_size=600), mutated_queries()))
def test_live_udp_socket(client: socket.socket, data: bytes) -> None:
    replies = replies_to(client, data)
    assert len(replies) <= 1
    for reply in replies:
        check_reply(data, reply)
        assert len(reply) <= 4096
