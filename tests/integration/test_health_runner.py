"""Active health checks against real listeners on loopback.

The probes talk to real asyncio HTTP/HTTPS servers and TCP listeners; the runner is driven by
a small in-memory view with RegistryView's shape and a recorder that writes back into it the
way the registry does (a status equal to the stored one writes nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import random
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mapmesh.health import HealthRunner, ProbeOutcome, ProbeTarget, probe
from mapmesh.model.registry import (
    HealthCheckConfig,
    HealthCheckType,
    HealthStatus,
    Instance,
    Service,
    ServiceType,
)
from mapmesh.registry.view import ViewChange

HTTP, HTTPS, TCP = HealthCheckType.HTTP, HealthCheckType.HTTPS, HealthCheckType.TCP
HEALTHY, UNHEALTHY = HealthStatus.HEALTHY, HealthStatus.UNHEALTHY
NOW = datetime(2024, 1, 1, tzinfo=UTC)
LOCAL = "127.0.0.1"

pytestmark = pytest.mark.timeout(30)


# -- listeners ---------------------------------------------------------------------------


@dataclass
class HttpServer:
    """An HTTP/1.1 server whose answer can be changed mid-test.

    ``behaviour`` is a status code ("200", "301", "500"), "hang" (never answer), "close"
    (close right after accepting) or "garbage" (an endless line that is not a status line).
    """

    behaviour: str = "200"
    tls: ssl.SSLContext | None = None
    port: int = 0
    requests: list[tuple[str, bytes]] = field(default_factory=list)  # (behaviour, head)
    open_connections: int = 0
    max_open_connections: int = 0
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)
    _closed: bool = False

    def served(self, path: str, behaviour: str | None = None) -> int:
        return sum(
            1
            for answer, head in self.requests
            if head.startswith(f"GET {path} ".encode()) and behaviour in (None, answer)
        )

    async def __aenter__(self) -> HttpServer:
        self._server = await asyncio.start_server(self._handle, LOCAL, 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._closed = True  # connections accepted from here on are closed at once
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.open_connections += 1
        self.max_open_connections = max(self.max_open_connections, self.open_connections)
        try:
            behaviour = self.behaviour
            if behaviour == "close" or self._closed:
                return
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append((behaviour, head))
            if behaviour == "hang":
                await reader.read()  # until the prober gives up and closes
                return
            if behaviour == "garbage":
                writer.write(b"x" * 4096)
            else:
                writer.write(
                    f"HTTP/1.1 {behaviour} Whatever\r\nContent-Length: 2\r\n\r\nok".encode()
                )
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError, asyncio.CancelledError):
            pass  # also cancellation at teardown: Python 3.11 logs cancelled stream handlers
        finally:
            self.open_connections -= 1
            self._handlers.discard(task)
            writer.close()


@dataclass
class TcpListener:
    """Accepts, writes ``banner`` and closes; remembers when each connection arrived."""

    banner: bytes = b""
    port: int = 0
    accepted: list[float] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def __aenter__(self) -> TcpListener:
        self._server = await asyncio.start_server(self._handle, LOCAL, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted.append(time.monotonic())
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            if self.banner:
                writer.write(self.banner)
                await asyncio.sleep(0.1)  # let the client read it before the close
        finally:
            self._handlers.discard(task)
            writer.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCAL, 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server context with a self-signed certificate made for this run."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    _self_signed(cert, key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def _self_signed(cert: Path, key: Path) -> None:
    if importlib.util.find_spec("cryptography") is not None:  # pragma: no cover
        _self_signed_with_cryptography(cert, key)
        return
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("neither cryptography nor the openssl CLI is available")
    options = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        [openssl, *options.split(), "-subj", "/CN=mapmesh-test", *files],
        check=True,
        capture_output=True,
    )


def _self_signed_with_cryptography(cert: Path, key: Path) -> None:  # pragma: no cover
    from datetime import timedelta

    from cryptography import x509  # type: ignore[import-not-found,unused-ignore]
    from cryptography.hazmat.primitives import hashes, serialization  # type: ignore[import-not-found,unused-ignore]
    from cryptography.hazmat.primitives.asymmetric import ec  # type: ignore[import-not-found,unused-ignore]
    from cryptography.x509.oid import NameOID  # type: ignore[import-not-found,unused-ignore]

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mapmesh-test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


# -- probes ------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["200", "204", "301", "302", "399"])
async def test_2xx_and_3xx_are_healthy(code: str) -> None:
    async with HttpServer(code) as server:
        result = await probe(ProbeTarget(HTTP, LOCAL, server.port, "/health"), 1.0)
    assert result.ok
    assert result.reason == f"HTTP {code} from {LOCAL}:{server.port}/health"


@pytest.mark.parametrize("code", ["404", "500", "503"])
async def test_4xx_and_5xx_are_unhealthy_and_named(code: str) -> None:
    async with HttpServer(code) as server:
        result = await probe(ProbeTarget(HTTP, LOCAL, server.port, "/health"), 1.0)
    assert result.outcome is ProbeOutcome.BAD_STATUS
    assert result.reason == f"HTTP {code} from {LOCAL}:{server.port}/health"


async def test_the_request_is_a_get_of_the_path_with_ip_port_host() -> None:
    async with HttpServer() as server:
        await probe(ProbeTarget(HTTP, LOCAL, server.port, "/ready?deep=1"), 1.0)
    (_, head), *_ = server.requests
    lines = head.decode().split("\r\n")
    assert lines[0] == "GET /ready?deep=1 HTTP/1.1"
    assert f"Host: {LOCAL}:{server.port}" in lines


async def test_a_server_that_hangs_fails_at_the_timeout() -> None:
    async with HttpServer("hang") as server:
        started = time.monotonic()
        result = await probe(ProbeTarget(HTTP, LOCAL, server.port), 0.2)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.05)
        assert server.open_connections == 0, "the probe closed its connection"
    assert result.outcome is ProbeOutcome.RESPONSE_TIMEOUT
    assert result.reason == f"no response within 0.2s from {LOCAL}:{server.port}/"
    assert 0.18 <= elapsed < 0.4


async def test_a_server_that_closes_at_once_is_unhealthy() -> None:
    async with HttpServer("close") as server:
        result = await probe(ProbeTarget(HTTP, LOCAL, server.port), 1.0)
    assert result.outcome is ProbeOutcome.BAD_RESPONSE
    assert "before a status line" in result.reason
    assert f"from {LOCAL}:{server.port}/" in result.reason


async def test_only_the_status_line_is_read_and_its_length_is_capped() -> None:
    async with HttpServer("garbage") as server:
        result = await probe(ProbeTarget(HTTP, LOCAL, server.port), 1.0)
    assert result.outcome is ProbeOutcome.BAD_RESPONSE
    assert "longer than 1024 bytes" in result.reason


async def test_https_accepts_a_self_signed_certificate(server_tls: ssl.SSLContext) -> None:
    async with HttpServer("200", tls=server_tls) as server:
        result = await probe(ProbeTarget(HTTPS, LOCAL, server.port, "/health"), 2.0)
    assert result.ok, result
    assert result.reason == f"HTTPS 200 from {LOCAL}:{server.port}/health"
    assert server.served("/health") == 1


async def test_https_reports_the_status_like_http(server_tls: ssl.SSLContext) -> None:
    async with HttpServer("503", tls=server_tls) as server:
        result = await probe(ProbeTarget(HTTPS, LOCAL, server.port), 2.0)
    assert result.outcome is ProbeOutcome.BAD_STATUS


async def test_https_against_a_plain_http_server_times_out_in_the_handshake() -> None:
    async with HttpServer("200") as server:  # waits for a request head that never comes
        result = await probe(ProbeTarget(HTTPS, LOCAL, server.port), 0.2)
    assert result.outcome is ProbeOutcome.TLS_ERROR
    assert result.reason == f"TLS handshake timeout after 0.2s with {LOCAL}:{server.port}"


async def test_https_against_a_plaintext_banner_is_a_tls_error() -> None:
    async with TcpListener(banner=b"SSH-2.0-OpenSSH_9.2\r\n") as listener:
        result = await probe(ProbeTarget(HTTPS, LOCAL, listener.port), 1.0)
    assert result.outcome is ProbeOutcome.TLS_ERROR
    assert result.reason.startswith(f"TLS error with {LOCAL}:{listener.port}: "), result


async def test_tcp_is_healthy_when_a_connection_opens() -> None:
    async with TcpListener() as listener:
        result = await probe(ProbeTarget(TCP, LOCAL, listener.port), 1.0)
        await asyncio.sleep(0.02)
    assert result.ok
    assert result.reason == f"TCP connect to {LOCAL}:{listener.port} ok"
    assert len(listener.accepted) == 1


@pytest.mark.parametrize("kind", [HTTP, HTTPS, TCP])
async def test_a_closed_port_is_refused(kind: HealthCheckType) -> None:
    port = closed_port()
    result = await probe(ProbeTarget(kind, LOCAL, port), 1.0)
    assert result.outcome is ProbeOutcome.CONNECT_REFUSED
    assert result.reason == f"connection refused by {LOCAL}:{port}"


async def test_a_connect_that_never_completes_times_out() -> None:
    """A listener whose accept queue is full drops new SYNs, so connect hangs."""
    with socket.socket() as backlog:
        backlog.bind((LOCAL, 0))
        backlog.listen(0)
        port = backlog.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((LOCAL, port))
        try:
            await asyncio.sleep(0.05)
            result = await probe(ProbeTarget(TCP, LOCAL, port), 0.2)
        finally:
            for filler in fillers:
                filler.close()
    if result.ok:
        pytest.skip("this kernel accepted past the listen backlog")
    assert result.outcome is ProbeOutcome.CONNECT_TIMEOUT
    assert result.reason == f"connect timeout after 0.2s to {LOCAL}:{port}"


@pytest.mark.parametrize(
    ("host", "port", "reason"),
    [
        (LOCAL, 99999, "invalid port 99999"),
        ("bad\0host", 80, "connect to bad\0host:80 failed: "),
    ],
)
async def test_unusable_targets_fail_instead_of_raising(host: str, port: int, reason: str) -> None:
    result = await probe(ProbeTarget(HTTP, host, port), 0.5)
    assert result.outcome is ProbeOutcome.CONNECT_ERROR
    assert result.reason.startswith(reason)


async def test_an_instance_without_an_address_fails_without_io() -> None:
    result = await probe(ProbeTarget(HTTP, None, 80), 1.0)
    assert result.outcome is ProbeOutcome.NO_ADDRESS
    assert result.reason == "no address attribute"


# -- the runner --------------------------------------------------------------------------


class StandInView:
    """RegistryView's shape (services, instances_of, subscribe), changed by the test."""

    def __init__(self) -> None:
        self.services: dict[str, Service] = {}
        self.instances: dict[str, dict[str, Instance]] = {}
        self.revision = 0
        self._listeners: list[Callable[[ViewChange], None]] = []

    def instances_of(self, service_id: str) -> dict[str, Instance]:
        return self.instances.get(service_id, {})

    def subscribe(self, listener: Callable[[ViewChange], None]) -> None:
        self._listeners.append(listener)

    def put_service(self, service_id: str, config: HealthCheckConfig | None) -> None:
        self.services[service_id] = Service(
            id=service_id,
            arn=f"arn:aws:servicediscovery:us-east-1:111122223333:service/{service_id}",
            name=service_id,
            namespace_id="ns-1",
            type=ServiceType.HTTP,
            health_check_config=config,
            create_date=NOW,
            created_by_account="111122223333",
            resource_owner="111122223333",
        )
        self._notify(service_id)

    def put_instance(
        self,
        service_id: str,
        instance_id: str,
        port: int | None,
        status: HealthStatus = HEALTHY,
        host: str | None = LOCAL,
    ) -> None:
        attributes = {} if host is None else {"AWS_INSTANCE_IPV4": host}
        if port is not None:
            attributes["AWS_INSTANCE_PORT"] = str(port)
        self.instances.setdefault(service_id, {})[instance_id] = Instance(
            id=instance_id,
            service_id=service_id,
            attributes=attributes,
            created_by_account="111122223333",
            health_status=status,
            registered_at=NOW,
        )
        self._notify(service_id)

    def set_health(self, service_id: str, instance_id: str, status: HealthStatus) -> None:
        current = self.instances[service_id][instance_id]
        self.instances[service_id][instance_id] = current.model_copy(
            update={"health_status": status}
        )
        self._notify(service_id)

    def remove_instance(self, service_id: str, instance_id: str) -> None:
        del self.instances[service_id][instance_id]
        self._notify(service_id)

    def _notify(self, service_id: str) -> None:
        self.revision += 1
        for listener in self._listeners:
            listener(ViewChange(self.revision, services={service_id}))


@dataclass
class Record:
    at: float
    service_id: str
    instance_id: str
    status: HealthStatus
    reason: str


class Recorder:
    """Writes reports back into the view like the registry; can be told to fail."""

    def __init__(self, view: StandInView) -> None:
        self.view = view
        self.records: list[Record] = []
        self.fail_next = 0

    async def record_health(
        self, service_id: str, instance_id: str, status: HealthStatus, reason: str
    ) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("store unavailable")
        self.records.append(Record(time.monotonic(), service_id, instance_id, status, reason))
        instance = self.view.instances_of(service_id).get(instance_id)
        if instance is not None and instance.health_status is not status:
            self.view.set_health(service_id, instance_id, status)

    def statuses(self, instance_id: str) -> list[HealthStatus]:
        return [r.status for r in self.records if r.instance_id == instance_id]


async def eventually(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
def view() -> StandInView:
    return StandInView()


@pytest.fixture
def recorder(view: StandInView) -> Recorder:
    return Recorder(view)


@pytest.fixture
async def runner(view: StandInView, recorder: Recorder) -> AsyncIterator[HealthRunner]:
    health = HealthRunner(view, recorder, interval=0.1, timeout=0.08, rng=random.Random(7))
    await health.start()
    yield health
    await health.stop()


def http_check(path: str = "/health", threshold: int = 2) -> HealthCheckConfig:
    return HealthCheckConfig(type=HTTP, resource_path=path, failure_threshold=threshold)


async def test_an_instance_goes_unhealthy_after_threshold_failures_and_recovers(
    view: StandInView, recorder: Recorder, runner: HealthRunner
) -> None:
    async with HttpServer("200") as server:
        # A healthy instance is probed but nothing is written: it is already HEALTHY.
        view.put_service("srv", http_check(threshold=2))
        view.put_instance("srv", "web-1", server.port)
        await eventually(lambda: server.served("/health") >= 2)
        assert recorder.records == []

        # The app starts answering 500: after exactly 2 failing probes it is UNHEALTHY.
        server.behaviour = "500"
        await eventually(lambda: recorder.statuses("web-1") == [UNHEALTHY])
        assert server.served("/health", "500") == 2
        assert recorder.records[0].reason == f"HTTP 500 from {LOCAL}:{server.port}/health"
        assert view.instances["srv"]["web-1"].health_status is UNHEALTHY
        served_at_flip = len(server.requests)

        # It recovers: 2 consecutive successes bring it back.
        server.behaviour = "200"
        await eventually(lambda: recorder.statuses("web-1") == [UNHEALTHY, HEALTHY])
        assert len(server.requests) - served_at_flip == 2
        assert recorder.records[-1].reason == f"HTTP 200 from {LOCAL}:{server.port}/health"

    stats = runner.statistics()
    assert stats.transitions == 2
    assert stats.reports == 2
    assert stats.checked_instances == 1
    assert stats.failures >= 2
    assert stats.failures_by_outcome["bad_status"] == stats.failures
    assert stats.probes_run >= stats.failures + 4


async def test_the_flip_happens_on_exactly_the_threshold_th_failure(
    view: StandInView, recorder: Recorder, runner: HealthRunner
) -> None:
    async with HttpServer("500") as server:
        view.put_service("srv", http_check(threshold=3))
        view.put_instance("srv", "web-1", server.port)
        await eventually(lambda: server.served("/health") >= 2)
        assert recorder.records == [], "two failures are below the threshold"
        await eventually(lambda: bool(recorder.records))
        assert server.served("/health") == 3


async def test_removing_an_instance_stops_its_probes_at_once(
    view: StandInView, recorder: Recorder, runner: HealthRunner
) -> None:
    async with HttpServer("200") as server:
        view.put_service("srv", http_check())
        view.put_instance("srv", "web-1", server.port)
        await eventually(lambda: server.served("/health") >= 1)
        view.remove_instance("srv", "web-1")
        assert runner.statistics().checked_instances == 0
        served = len(server.requests)
        await asyncio.sleep(0.35)  # 3+ intervals
        assert len(server.requests) == served


async def test_removing_the_health_check_config_stops_probes(
    view: StandInView, recorder: Recorder, runner: HealthRunner
) -> None:
    async with HttpServer("200") as server:
        view.put_service("srv", http_check())
        view.put_instance("srv", "web-1", server.port)
        await eventually(lambda: server.served("/health") >= 1)
        view.put_service("srv", None)
        served = len(server.requests)
        await asyncio.sleep(0.3)
        assert len(server.requests) == served
        assert runner.statistics().checked_instances == 0


async def test_a_changed_config_restarts_the_checker_with_fresh_state(
    view: StandInView, recorder: Recorder, runner: HealthRunner
) -> None:
    async with HttpServer("500") as server:
        view.put_service("srv", http_check("/health", threshold=1))
        view.put_instance("srv", "web-1", server.port)
        await eventually(lambda: recorder.statuses("web-1") == [UNHEALTHY])

        # A new resource path: the new checker starts HEALTHY; the stored UNHEALTHY stands
        # until the new path is probed, and the first success converges the two.
        view.put_service("srv", http_check("/ready", threshold=3))
        server.behaviour = "200"
        await eventually(lambda: recorder.statuses("web-1") == [UNHEALTHY, HEALTHY])
        assert server.served("/ready") == 1
        assert recorder.records[-1].reason == f"HTTP 200 from {LOCAL}:{server.port}/ready"


async def test_a_changed_address_restarts_the_checker(
    view: StandInView, recorder: Recorder, runner: HealthRunner
) -> None:
    async with HttpServer("200") as server:
        view.put_service("srv", http_check(threshold=1))
        view.put_instance("srv", "web-1", server.port)
        await eventually(lambda: server.served("/health") >= 1)
        gone = closed_port()
        view.put_instance("srv", "web-1", gone)
        await eventually(lambda: recorder.statuses("web-1") == [UNHEALTHY])
        assert recorder.records[0].reason == f"connection refused by {LOCAL}:{gone}"


async def test_a_stale_stored_unhealthy_converges_after_one_success(
    view: StandInView, recorder: Recorder, runner: HealthRunner
) -> None:
    """After a control-plane restart the store may still say UNHEALTHY."""
    async with TcpListener() as listener:
        view.put_service("srv", HealthCheckConfig(type=TCP, failure_threshold=3))
        view.put_instance("srv", "db-1", listener.port, status=UNHEALTHY)
        await eventually(lambda: recorder.statuses("db-1") == [HEALTHY])
        assert len(listener.accepted) == 1
        await asyncio.sleep(0.25)
        assert recorder.statuses("db-1") == [HEALTHY], "reported once"


async def test_a_stale_unhealthy_is_not_cleared_while_probes_fail(
    view: StandInView, recorder: Recorder, runner: HealthRunner
) -> None:
    view.put_service("srv", HealthCheckConfig(type=TCP, failure_threshold=3))
    view.put_instance("srv", "db-1", closed_port(), status=UNHEALTHY)
    await eventually(lambda: runner.statistics().transitions == 1)
    assert recorder.statuses("db-1") == [UNHEALTHY]  # the machine's own flip; a no-op write
    assert view.instances["srv"]["db-1"].health_status is UNHEALTHY


async def test_an_instance_without_an_address_becomes_unhealthy(
    view: StandInView, recorder: Recorder, runner: HealthRunner
) -> None:
    view.put_service("srv", http_check(threshold=2))
    view.put_instance("srv", "lost", None, host=None)
    await eventually(lambda: recorder.statuses("lost") == [UNHEALTHY])
    assert recorder.records[0].reason == "no address attribute"
    assert runner.statistics().failures_by_outcome == {"no_address": 2}


async def test_a_recorder_error_is_logged_and_retried(
    view: StandInView,
    recorder: Recorder,
    runner: HealthRunner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder.fail_next = 2
    view.put_service("srv", HealthCheckConfig(type=TCP, failure_threshold=1))
    view.put_instance("srv", "db-1", closed_port())
    await eventually(lambda: recorder.statuses("db-1") == [UNHEALTHY])
    stats = runner.statistics()
    assert stats.recorder_errors == 2
    assert stats.transitions == 1, "retried as convergence, not as new transitions"
    assert "recording instance health failed" in caplog.text


async def test_transitions_are_logged_on_the_health_logger(
    view: StandInView,
    recorder: Recorder,
    runner: HealthRunner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="mapmesh.health")
    view.put_service("srv", HealthCheckConfig(type=TCP, failure_threshold=1))
    view.put_instance("srv", "db-1", closed_port())
    await eventually(lambda: bool(recorder.records))
    (entry,) = [r for r in caplog.records if r.name == "mapmesh.health" and "now" in r.msg]
    assert entry.levelname == "WARNING"
    assert entry.__dict__["status"] == "UNHEALTHY"
    assert entry.__dict__["previous"] == "HEALTHY"
    assert entry.__dict__["instance_id"] == "db-1"


async def test_first_probes_are_staggered_across_the_interval(
    view: StandInView, recorder: Recorder
) -> None:
    interval, count, seed = 1.0, 12, 42
    listeners = [TcpListener() for _ in range(count)]
    for listener in listeners:
        await listener.__aenter__()
    health = HealthRunner(view, recorder, interval=interval, timeout=0.5, rng=random.Random(seed))
    try:
        view.put_service("srv", HealthCheckConfig(type=TCP))
        for n, listener in enumerate(listeners):
            view.put_instance("srv", f"i-{n:02d}", listener.port)
        started = time.monotonic()
        await health.start()
        await eventually(lambda: all(x.accepted for x in listeners), timeout=interval + 0.5)
    finally:
        await health.stop()
        for listener in listeners:
            await listener.__aexit__()

    firsts = [listener.accepted[0] - started for listener in listeners]
    assert max(firsts) - min(firsts) > interval / 3, firsts
    # The offsets come from the seeded rng, one per instance in key order.
    rng = random.Random(seed)
    expected = [rng.uniform(0.0, interval) for _ in range(count)]
    for got, want in zip(firsts, expected, strict=True):
        assert abs(got - want) < 0.15, (firsts, expected)


async def test_concurrency_bounds_probes_in_flight(view: StandInView, recorder: Recorder) -> None:
    async with HttpServer("hang") as server:
        health = HealthRunner(
            view, recorder, interval=0.2, timeout=0.15, concurrency=2, rng=random.Random(1)
        )
        view.put_service("srv", http_check(threshold=10))
        for n in range(8):
            view.put_instance("srv", f"i-{n}", server.port)
        await health.start()
        try:
            await eventually(lambda: len(server.requests) >= 8)
            assert health.statistics().probes_in_flight <= 2
        finally:
            await health.stop()
        assert server.max_open_connections <= 2
        assert health.statistics().failures_by_outcome.get("response_timeout", 0) >= 6


async def test_stop_cancels_every_checker(view: StandInView, recorder: Recorder) -> None:
    async with HttpServer("hang") as server:
        health = HealthRunner(view, recorder, interval=0.1, timeout=0.08)
        view.put_service("srv", http_check())
        view.put_instance("srv", "web-1", server.port)
        await health.start()
        await eventually(lambda: server.open_connections == 1)
        await health.stop()
        assert health.statistics().checked_instances == 0
        await eventually(lambda: server.open_connections == 0)
        view.put_instance("srv", "web-2", server.port)  # ignored after stop
        assert health.statistics().checked_instances == 0


def test_timeout_must_be_shorter_than_the_interval(view: StandInView, recorder: Recorder) -> None:
    with pytest.raises(ValueError, match="timeout"):
        HealthRunner(view, recorder, interval=1.0, timeout=1.0)
    with pytest.raises(ValueError, match="concurrency"):
        HealthRunner(view, recorder, concurrency=0)
