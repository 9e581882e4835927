"""The registry end to end: boto3 writes, DNS and DiscoverInstances follow within a second.

The seed story: namespace ``corp``-like, service ``worker`` with A and SRV records (TTL 10),
tasks registering and failing health checks, answers over real DNS queries.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.integration.test_cloudmap_api import dns_namespace
from tests.support import ServerProcess


def query(server: ServerProcess, name: str, rdtype: str, tcp: bool = False) -> dns.message.Message:
    request = dns.message.make_query(name, rdtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(request, "127.0.0.1", port=server.dns_port, timeout=2)


def a_records(response: dns.message.Message) -> set[str]:
    return {rd.address for rrset in response.answer for rd in rrset if rrset.rdtype == 1}


def eventually(check: Callable[[], bool], within: float = 1.0) -> float:
    """Seconds until ``check`` held; fails if it did not within ``within``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > within:
            pytest.fail(f"condition not met within {within}s")
        time.sleep(0.01)
    return time.monotonic() - start


class _App(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def app() -> Iterator[tuple[type[_App], int]]:
    handler = type("App", (_App,), {"status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler, int(server.server_address[1])
    server.shutdown()
    server.server_close()


def worker_service(sd: Any, namespace_id: str, **extra: Any) -> str:
    return str(
        sd.create_service(
            Name="worker",
            NamespaceId=namespace_id,
            DnsConfig={
                "RoutingPolicy": "MULTIVALUE",
                "DnsRecords": [{"Type": "A", "TTL": 10}, {"Type": "SRV", "TTL": 10}],
            },
            **extra,
        )["Service"]["Id"]
    )


def test_registration_reaches_dns_within_a_second(
    sd: Any, server: ServerProcess, unique: str
) -> None:
    zone = f"{unique}.corp"
    ns_id = dns_namespace(sd, zone)
    sid = worker_service(sd, ns_id, HealthCheckCustomConfig={})
    name = f"worker.{zone}"
    empty = query(server, name, "A")
    assert empty.rcode() == dns.rcode.NOERROR and not empty.answer  # the name exists: NODATA
    assert empty.authority[0].rdtype == dns.rdatatype.SOA

    for i in (1, 2):
        sd.register_instance(
            ServiceId=sid,
            InstanceId=f"task-{i}",
            Attributes={"AWS_INSTANCE_IPV4": f"10.1.0.{i}", "AWS_INSTANCE_PORT": "8080"},
        )
    eventually(lambda: a_records(query(server, name, "A")) == {"10.1.0.1", "10.1.0.2"})
    answer = query(server, name, "A")
    assert answer.flags & dns.flags.AA
    assert answer.answer[0].ttl == 10

    srv = query(server, name, "SRV")
    targets = {(rd.port, rd.target.to_text()) for rrset in srv.answer for rd in rrset}
    assert targets == {(8080, f"task-1.{name}."), (8080, f"task-2.{name}.")}
    assert a_records(query(server, f"task-1.{name}", "A")) == {"10.1.0.1"}

    # Health transitions are answered within a second; DiscoverInstances agrees.
    sd.update_instance_custom_health_status(ServiceId=sid, InstanceId="task-2", Status="UNHEALTHY")
    eventually(lambda: a_records(query(server, name, "A")) == {"10.1.0.1"})
    healthy = sd.discover_instances(
        NamespaceName=zone, ServiceName="worker", HealthStatus="HEALTHY"
    )
    assert [i["InstanceId"] for i in healthy["Instances"]] == ["task-1"]

    sd.deregister_instance(ServiceId=sid, InstanceId="task-1")
    # Only an unhealthy instance is left: Route 53 answers with unhealthy records then.
    eventually(lambda: a_records(query(server, name, "A")) == {"10.1.0.2"})

    missing = query(server, f"absent.{zone}", "A")
    assert missing.rcode() == dns.rcode.NXDOMAIN
    assert missing.authority[0].rdtype == dns.rdatatype.SOA
    assert query(server, "example.org", "A").rcode() == dns.rcode.REFUSED


def test_active_health_check_removes_a_failing_task(
    sd: Any, server: ServerProcess, unique: str, app: tuple[type[_App], int]
) -> None:
    handler, port = app
    zone = f"{unique}.corp"
    ns_id = dns_namespace(sd, zone)
    sid = worker_service(
        sd,
        ns_id,
        HealthCheckConfig={"Type": "HTTP", "ResourcePath": "/health", "FailureThreshold": 1},
    )
    closed = _closed_port()
    sd.register_instance(
        ServiceId=sid,
        InstanceId="live",
        Attributes={"AWS_INSTANCE_IPV4": "127.0.0.1", "AWS_INSTANCE_PORT": str(port)},
    )
    sd.register_instance(
        ServiceId=sid,
        InstanceId="dead",
        Attributes={"AWS_INSTANCE_IPV4": "127.0.0.2", "AWS_INSTANCE_PORT": str(closed)},
    )
    name = f"worker.{zone}"

    def statuses() -> dict[str, str]:
        return dict(sd.get_instances_health_status(ServiceId=sid)["Status"])

    # The server checks every 0.2 s (the fixture's --health-interval).
    eventually(lambda: statuses() == {"live": "HEALTHY", "dead": "UNHEALTHY"}, within=3)
    eventually(lambda: a_records(query(server, name, "A")) == {"127.0.0.1"})

    handler.status = 500
    eventually(lambda: statuses()["live"] == "UNHEALTHY", within=3)
    handler.status = 200
    eventually(lambda: statuses()["live"] == "HEALTHY", within=3)
    eventually(lambda: a_records(query(server, name, "A")) == {"127.0.0.1"})


def test_truncated_udp_answer_is_complete_over_tcp(
    sd: Any, server: ServerProcess, unique: str
) -> None:
    zone = f"{unique}.corp"
    ns_id = dns_namespace(sd, zone)
    sid = str(
        sd.create_service(
            Name="wide",
            NamespaceId=ns_id,
            DnsConfig={"DnsRecords": [{"Type": "SRV", "TTL": 10}, {"Type": "A", "TTL": 10}]},
        )["Service"]["Id"]
    )
    for i in range(8):
        sd.register_instance(
            ServiceId=sid,
            InstanceId=f"task-{i}-" + "x" * 55,  # long targets: 8 SRV records exceed 512 bytes
            Attributes={"AWS_INSTANCE_IPV4": f"10.2.0.{i}", "AWS_INSTANCE_PORT": "9000"},
        )
    name = f"wide.{zone}"
    request = dns.message.make_query(name, "SRV", use_edns=False)
    udp = dns.query.udp(request, "127.0.0.1", port=server.dns_port, timeout=2, ignore_trailing=True)
    assert udp.flags & dns.flags.TC
    tcp = query(server, name, "SRV", tcp=True)
    assert not tcp.flags & dns.flags.TC
    assert sum(len(rrset) for rrset in tcp.answer) == 8


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
