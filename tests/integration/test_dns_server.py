"""DnsServer on loopback: real UDP and TCP sockets, dnspython as the client.

Each test starts its own server on port 0 over a small in-memory registry and tells one
story: what a client sends, what it gets back, what the server counted.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from mapmesh.dns import DnsServer, DnsTable
from mapmesh.model.registry import RecordType
from tests.unit.test_dns_zone import StaticRegistry, answer_texts

HOST = "127.0.0.1"
TIMEOUT = 2.0


@pytest.fixture
def registry() -> StaticRegistry:
    registry = StaticRegistry()
    corp = registry.add_namespace("corp")
    web = registry.add_service(corp, "web")
    for index in range(3):
        registry.register(web, f"w{index}", ipv4=f"10.0.0.{index + 1}")
    db = registry.add_service(corp, "db", {RecordType.SRV: 30})
    for index in range(8):  # long ids: eight SRV records with glue exceed 512 octets
        instance_id = f"database-replica-{index}".rjust(50, "x")
        registry.register(
            db, instance_id, ipv4=f"10.1.0.{index}", ipv6=f"2001:db8::{index}", port=5432
        )
    return registry


@pytest.fixture
def table(registry: StaticRegistry) -> DnsTable:
    table = DnsTable(rng=random.Random(1))
    table.rebuild(registry, registry.change(reset=True))
    return table


@pytest.fixture
def server(table: DnsTable) -> Iterator[DnsServer]:
    server = DnsServer(table, HOST, 0, tcp_idle_timeout=0.3, max_tcp_connections=4)
    server.start()
    yield server
    server.stop()


def query(name: str, rdtype: str = "A", **options: object) -> dns.message.QueryMessage:
    return dns.message.make_query(name, rdtype, **options)  # type: ignore[arg-type]


def framed(message: dns.message.Message) -> bytes:
    wire = message.to_wire()
    return struct.pack(">H", len(wire)) + wire


def read_framed(sock: socket.socket) -> dns.message.Message:
    (size,) = struct.unpack(">H", recv_exactly(sock, 2))
    return dns.message.from_wire(recv_exactly(sock, size))


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


# -- UDP and TCP ---------------------------------------------------------------------------


def test_udp_and_tcp_answer_on_the_same_port(server: DnsServer) -> None:
    over_udp = dns.query.udp(query("web.corp"), HOST, port=server.port, timeout=TIMEOUT)
    over_tcp = dns.query.tcp(query("web.corp"), HOST, port=server.port, timeout=TIMEOUT)
    for reply in (over_udp, over_tcp):
        assert reply.flags & dns.flags.AA
        assert sorted(answer_texts(reply)) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    stats = server.statistics()
    assert (stats.udp_queries, stats.tcp_queries, stats.responses["NOERROR"]) == (1, 1, 2)


def test_a_big_answer_is_truncated_over_udp_and_complete_over_tcp(server: DnsServer) -> None:
    truncated = dns.query.udp(query("db.corp", "SRV"), HOST, port=server.port, timeout=TIMEOUT)
    assert truncated.flags & dns.flags.TC and not truncated.answer

    reply, used_tcp = dns.query.udp_with_fallback(
        query("db.corp", "SRV"), HOST, port=server.port, timeout=TIMEOUT
    )
    assert used_tcp and not reply.flags & dns.flags.TC
    assert len(answer_texts(reply, "SRV")) == 8 and len(reply.additional) == 16
    assert server.statistics().truncated == 2


def test_edns_lets_the_big_answer_through_udp(server: DnsServer) -> None:
    big = query("db.corp", "SRV", use_edns=0, payload=1232)
    reply = dns.query.udp(big, HOST, port=server.port, timeout=TIMEOUT)
    assert not reply.flags & dns.flags.TC and len(answer_texts(reply, "SRV")) == 8


def test_several_pipelined_queries_on_one_tcp_connection(server: DnsServer) -> None:
    names = ["web.corp", "db.corp", "nope.corp", "example.com"]
    queries = [query(name) for name in names]
    with socket.create_connection((HOST, server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"".join(framed(q) for q in queries))  # all at once, one write
        replies = [read_framed(sock) for _ in queries]
        # and one more after the first batch, byte by byte
        last = query("web.corp", "AAAA")
        for byte in framed(last):
            sock.sendall(bytes((byte,)))
        replies.append(read_framed(sock))
    assert [r.id for r in replies] == [q.id for q in [*queries, last]]
    assert [dns.rcode.to_text(r.rcode()) for r in replies] == [
        "NOERROR",
        "NOERROR",
        "NXDOMAIN",
        "REFUSED",
        "NOERROR",
    ]


def test_idle_tcp_connections_are_closed(server: DnsServer) -> None:
    with socket.create_connection((HOST, server.port), timeout=TIMEOUT) as sock:
        sock.sendall(framed(query("web.corp")))
        read_framed(sock)
        started = time.monotonic()
        assert sock.recv(1) == b""  # the server closed the idle connection
        assert 0.1 < time.monotonic() - started < TIMEOUT
    assert server.statistics().tcp_idle_closed == 1


def test_connections_over_the_cap_are_closed_at_once(server: DnsServer) -> None:
    held = [socket.create_connection((HOST, server.port), timeout=TIMEOUT) for _ in range(4)]
    try:
        for sock in held:  # each is being served
            sock.sendall(framed(query("web.corp")))
            read_framed(sock)
        extra = socket.create_connection((HOST, server.port), timeout=TIMEOUT)
        with extra, contextlib.suppress(ConnectionResetError):  # closed, maybe with a reset
            assert extra.recv(1) == b""
        assert server.statistics().tcp_connections_rejected == 1
        assert server.statistics().tcp_connections_open == 4
    finally:
        for sock in held:
            sock.close()


def test_garbage_on_tcp_closes_only_that_connection(server: DnsServer) -> None:
    with socket.create_connection((HOST, server.port), timeout=TIMEOUT) as sock:
        sock.sendall(struct.pack(">H", 3) + b"\x00\x01\x02")  # no readable header
        assert sock.recv(1) == b""
    reply = dns.query.tcp(query("web.corp"), HOST, port=server.port, timeout=TIMEOUT)
    assert reply.rcode() == dns.rcode.NOERROR
    assert server.statistics().dropped == 1


# -- concurrency and changes ---------------------------------------------------------------


def test_concurrent_clients_all_get_answers(table: DnsTable) -> None:
    server = DnsServer(table, HOST, 0)  # default TCP limits: one connection per query here
    server.start()
    errors: list[BaseException] = []

    def client(kind: str) -> None:
        try:
            for _ in range(40):
                send = dns.query.udp if kind == "udp" else dns.query.tcp
                reply = send(query("web.corp"), HOST, port=server.port, timeout=TIMEOUT)
                assert len(answer_texts(reply)) == 3
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in ("udp", "tcp") * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    server.stop()
    assert not errors
    assert server.statistics().queries == 320


def test_a_registry_change_is_answered_as_soon_as_rebuild_returns(
    server: DnsServer, table: DnsTable, registry: StaticRegistry
) -> None:
    corp = next(iter(registry.namespaces.values()))
    api = registry.add_service(corp, "api")
    registry.register(api, "a1", ipv4="10.9.9.9")
    before = dns.query.udp(query("api.corp"), HOST, port=server.port, timeout=TIMEOUT)
    assert before.rcode() == dns.rcode.NXDOMAIN

    table.rebuild(registry, registry.change(namespaces=[corp.id], services=[api.id]))
    after = dns.query.udp(query("api.corp"), HOST, port=server.port, timeout=TIMEOUT)
    assert answer_texts(after) == ["10.9.9.9"]


def test_rebuilding_while_queries_fly_never_breaks_an_answer(
    server: DnsServer, table: DnsTable, registry: StaticRegistry
) -> None:
    web = next(s for s in registry.services.values() if s.name == "web")
    stop = threading.Event()

    def churn() -> None:
        index = 0
        while not stop.is_set():
            index += 1
            registry.register(web, f"churn{index % 20}", ipv4=f"10.5.0.{index % 20}")
            table.rebuild(registry, registry.change(services=[web.id]))

    writer = threading.Thread(target=churn)
    writer.start()
    try:
        for _ in range(100):
            reply = dns.query.udp(query("web.corp"), HOST, port=server.port, timeout=TIMEOUT)
            assert reply.rcode() == dns.rcode.NOERROR
            assert 3 <= len(answer_texts(reply)) <= 8
    finally:
        stop.set()
        writer.join()


# -- lifecycle -----------------------------------------------------------------------------


def test_port_zero_binds_udp_and_tcp_to_one_number_and_stop_releases_it(table: DnsTable) -> None:
    server = DnsServer(table, HOST, 0)
    server.start()
    port = server.port
    dns.query.udp(query("web.corp"), HOST, port=port, timeout=TIMEOUT)
    dns.query.tcp(query("web.corp"), HOST, port=port, timeout=TIMEOUT)
    server.stop()
    server.stop()  # idempotent

    again = DnsServer(table, HOST, port)
    again.start()  # both sockets free again
    try:
        reply = dns.query.udp(query("web.corp"), HOST, port=port, timeout=TIMEOUT)
        assert reply.rcode() == dns.rcode.NOERROR
    finally:
        again.stop()


def test_a_busy_port_raises_oserror_from_start(server: DnsServer, table: DnsTable) -> None:
    with pytest.raises(OSError):
        DnsServer(table, HOST, server.port).start()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp_only:
        tcp_only.bind((HOST, 0))
        tcp_only.listen()
        blocked = DnsServer(table, HOST, tcp_only.getsockname()[1])
        with pytest.raises(OSError):
            blocked.start()
        with pytest.raises(RuntimeError):
            _ = blocked.port


def test_ipv6_loopback() -> None:
    registry = StaticRegistry()
    corp = registry.add_namespace("corp")
    registry.register(registry.add_service(corp, "web"), "w", ipv4="10.0.0.1")
    table = DnsTable()
    table.rebuild(registry, registry.change(reset=True))
    server = DnsServer(table, "::1", 0)
    try:
        server.start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        reply = dns.query.udp(query("web.corp"), "::1", port=server.port, timeout=TIMEOUT)
        assert answer_texts(reply) == ["10.0.0.1"]
    finally:
        server.stop()


class Exploding:
    def answer(self, query: bytes, max_udp: int | None) -> bytes | None:
        raise RuntimeError("bug in the table")


def test_an_exception_in_the_table_drops_the_query_and_the_server_keeps_going() -> None:
    server = DnsServer(Exploding(), HOST, 0)
    server.start()
    try:
        for _ in range(2):
            with pytest.raises(dns.exception.Timeout):
                dns.query.udp(query("web.corp"), HOST, port=server.port, timeout=0.2)
        assert server.statistics().errors == 2
    finally:
        server.stop()
