"""The demo's services (examples/demo) as real processes wired straight to each other, no mesh.

Each app listens on a port of its own choosing (``PORT=0``; its ``listening`` log line names
it), and the backend URLs point at the other apps directly. A small in-test HTTP server stands
in for a sidecar where a test needs one: to see what an app sends through ``HTTP_PROXY``, or
to answer like a circuit breaker that has opened.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE = {
    "x-request-id": "req-42",
    "traceparent": TRACEPARENT,
    "tracestate": "vendor=opaque",
    "x-amzn-trace-id": "Root=1-5759e988-bd862e3fe1be46a994272793",
}
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class App:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: dict[str, Any]


def call(
    url: str,
    *,
    method: str = "GET",
    body: dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, dict(headers or {}), method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _DIRECT.open(request, timeout=5) as response:
            status, reply_headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            status, reply_headers, raw = error.code, error.headers, error.read()
    lowered = {name.lower(): value for name, value in reply_headers.items()}
    return Reply(status, lowered, json.loads(raw))


class Apps:
    """Starts demo apps and stops them all at the end, whatever happened."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self.started: list[App] = []

    def start(self, script: str, **env: str) -> App:
        name = f"{script}-{len(self.started)}"
        log_path = self._log_dir / f"{name}.log"
        environment = {
            key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")
        }
        environment.update({"HTTP_PROXY": "", "PORT": "0", "PYTHONUNBUFFERED": "1", **env})
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, f"{script}.py"],
                cwd=DEMO,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        app = App(name, process, log_path)
        self.started.append(app)
        app.port = _listening_port(app)
        return app

    def stop_all(self) -> None:
        for app in self.started:
            if app.process.poll() is None:
                app.process.send_signal(signal.SIGTERM)
        for app in self.started:
            try:
                app.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                app.process.kill()
                app.process.wait()


def _listening_port(app: App, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in app.log():
            if record.get("event") == "listening":
                return int(record["port"])
        if app.process.poll() is not None:
            break
        time.sleep(0.02)
    raise AssertionError(f"{app.name} did not start:\n{app.log_path.read_text()}")


@dataclass
class FakeUpstream:
    """A loopback HTTP server that records requests and answers with ``answer(path)``."""

    answer: Callable[[str], tuple[int, dict[str, str], bytes]]
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def fake_upstream() -> Iterator[Callable[..., FakeUpstream]]:
    servers: list[ThreadingHTTPServer] = []

    def make(answer: Callable[[str], tuple[int, dict[str, str], bytes]]) -> FakeUpstream:
        fake = FakeUpstream(answer)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.seen.append(
                    (self.requestline, {k.lower(): v for k, v in self.headers.items()})
                )
                status, headers, body = fake.answer(self.path)
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST

            def log_message(self, *args: object) -> None:
                return

        fake.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=fake.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        servers.append(fake.server)
        return fake

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[Apps]:
    started = Apps(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


@dataclass
class Network:
    frontend: App
    auth: App
    user: App
    feed: App
    timeline: App
    worker: App


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """The whole social network, one process per service, calling each other directly."""
    started = Apps(tmp_path_factory.mktemp("demo"))
    try:
        auth = started.start("auth", MAPMESH_REPLICA="1")
        user = started.start("user", MAPMESH_REPLICA="1")
        worker = started.start("worker", WORKER_VERSION="v2", MAPMESH_REPLICA="3")
        timeline = started.start("timeline", MAPMESH_REPLICA="1", WORKER_URL=worker.url)
        feed = started.start("feed", MAPMESH_REPLICA="1", WORKER_URL=worker.url)
        frontend = started.start(
            "frontend",
            MAPMESH_REPLICA="2",
            AUTH_URL=auth.url,
            USER_URL=user.url,
            FEED_URL=feed.url,
            TIMELINE_URL=timeline.url,
        )
        yield Network(frontend, auth, user, feed, timeline, worker)
    finally:
        started.stop_all()


def test_home_page_is_composed_from_every_backend_and_names_who_served_it(
    network: Network,
) -> None:
    home = call(network.frontend.url + "/", headers={"Authorization": "Bearer demo-carol"})

    assert home.status == 200, home.body
    assert home.body["instance"] == "frontend-2"
    assert home.body["user"]["id"] == "carol"
    assert home.body["user"]["name"] == "Carol Danvers"
    assert [post["id"] for post in home.body["timeline"]] == ["p4", "p1"]  # ranked by worker
    assert home.body["worker"]["version"] == "v2"
    assert home.body["worker"]["instance"] == "worker-v2-3"
    assert home.body["servedBy"] == {
        "auth": "auth-1",
        "user": "user-1",
        "timeline": "timeline-1",
        "worker": "worker-v2-3",
    }


def test_a_bare_request_is_the_demo_user_and_a_query_token_works_too(network: Network) -> None:
    assert call(network.frontend.url + "/").body["user"]["id"] == "alice"
    assert call(network.frontend.url + "/?token=demo-bob").body["user"]["id"] == "bob"


def test_posting_goes_through_feed_to_worker_and_shows_up_in_the_feed(network: Network) -> None:
    posted = call(
        network.frontend.url + "/posts",
        method="POST",
        body={"text": "  hello mesh  "},
        headers={"Authorization": "Bearer demo-bob"},
    )

    assert posted.status == 201, posted.body
    assert posted.body["post"]["author"] == "bob"
    assert posted.body["post"]["text"] == "hello mesh"
    assert posted.body["worker"]["version"] == "v2"
    assert posted.body["servedBy"]["feed"] == "feed-1"
    recent = call(network.feed.url + "/posts?limit=5")
    assert posted.body["post"] in recent.body["posts"]


def test_bad_tokens_get_401_from_auth_and_the_frontend_passes_it_on(network: Network) -> None:
    direct = call(network.auth.url + "/verify?token=letmein")
    assert direct.status == 401
    assert "invalid token" in direct.body["error"]
    assert direct.headers["www-authenticate"].startswith("Bearer")
    assert call(network.auth.url + "/verify").body["error"] == "missing token"
    assert call(network.auth.url + "/verify?token=demo-dave").body["userId"] == "dave"

    through = call(network.frontend.url + "/", headers={"Authorization": "Bearer letmein"})
    assert through.status == 401
    assert through.body["backend"] == "auth"
    assert through.body["error"].startswith("auth: invalid token")


def test_unknown_users_and_bad_requests_are_answered_with_reasons(network: Network) -> None:
    missing = call(network.frontend.url + "/?token=demo-zed")
    assert missing.status == 404
    assert missing.body["error"] == "user: no profile for user 'zed'"

    empty = call(network.frontend.url + "/posts", method="POST", body={"text": " "})
    assert empty.status == 400
    assert "text: must be 1 to 280 characters" in empty.body["error"]
    assert call(network.frontend.url + "/nowhere").status == 404
    wrong_method = call(network.frontend.url + "/", method="DELETE")
    assert wrong_method.status == 405
    assert wrong_method.headers["allow"] == "GET"
    assert call(network.timeline.url + "/timeline/alice?limit=0").status == 400


def test_trace_headers_reach_the_worker_two_hops_away(network: Network) -> None:
    home = call(network.frontend.url + "/", headers=TRACE)
    assert home.body["worker"]["trace"] == TRACE
    assert home.body["requestId"] == "req-42"
    assert home.headers["x-request-id"] == "req-42"

    posted = call(
        network.frontend.url + "/posts", method="POST", body={"text": "hi"}, headers=TRACE
    )
    assert posted.body["worker"]["trace"] == TRACE

    worker_log = [r for r in network.worker.log() if r.get("event") == "request"]
    assert {"req-42"} <= {record["requestId"] for record in worker_log}


def test_a_request_without_an_id_gets_one_that_follows_it_downstream(network: Network) -> None:
    home = call(network.frontend.url + "/")
    request_id = home.headers["x-request-id"]
    assert len(request_id) == 32
    assert home.body["worker"]["trace"] == {"x-request-id": request_id}


def test_every_app_answers_health(network: Network) -> None:
    for app in (network.frontend, network.auth, network.user, network.feed, network.timeline):
        health = call(app.url + "/health")
        assert health.status == 200
        assert health.body["status"] == "ok"
        assert health.body["pid"] == app.process.pid
    assert call(network.worker.url + "/health").body["instance"] == "worker-v2-3"


def test_worker_fail_rate_answers_503_and_callers_name_the_backend(apps: Apps) -> None:
    broken = apps.start("worker", WORKER_VERSION="v1", WORKER_FAIL_RATE="1")
    timeline = apps.start("timeline", WORKER_URL=broken.url)

    assert call(broken.url + "/work").status == 503
    assert call(broken.url + "/health").status == 200  # health is never failed on purpose
    failed = call(timeline.url + "/timeline/alice")
    assert failed.status == 503
    assert failed.body["error"] == "worker: injected failure (WORKER_FAIL_RATE=1)"
    assert failed.body["backend"] == "worker"

    flaky = apps.start("worker", WORKER_FAIL_RATE="0.5", WORKER_SEED="7")
    statuses = {call(flaky.url + "/work").status for _ in range(30)}
    assert statuses == {200, 503}


def test_worker_delay_slows_work_but_not_health(apps: Apps) -> None:
    slow = apps.start("worker", WORKER_DELAY_MS="300")

    started = time.monotonic()
    assert call(slow.url + "/rank", method="POST", body={"posts": []}).status == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert call(slow.url + "/health").status == 200
    assert time.monotonic() - started < 0.25


def test_calls_go_through_http_proxy_by_mesh_name(
    apps: Apps, fake_upstream: Callable[..., FakeUpstream]
) -> None:
    """With HTTP_PROXY set and no WORKER_URL, timeline asks its sidecar for worker.social.local."""
    answer = json.dumps({"posts": [], "version": "v1", "instance": "worker-v1-1"}).encode()
    sidecar = fake_upstream(lambda _path: (200, {"Content-Type": "application/json"}, answer))
    timeline = apps.start("timeline", HTTP_PROXY=sidecar.url, NO_PROXY="127.0.0.1,localhost")

    reply = call(timeline.url + "/timeline/bob", headers={"traceparent": TRACEPARENT})

    assert reply.status == 200, reply.body
    assert reply.body["rankedBy"]["instance"] == "worker-v1-1"
    request_line, headers = sidecar.seen[0]
    assert request_line == "POST http://worker.social.local/rank HTTP/1.1"
    assert headers["host"] == "worker.social.local"
    assert headers["traceparent"] == TRACEPARENT


def test_an_open_circuit_breaker_reaches_the_client_as_503_overloaded(
    apps: Apps, fake_upstream: Callable[..., FakeUpstream]
) -> None:
    """The sidecar's own overflow answer is passed on hop by hop, header included."""
    breaker = fake_upstream(
        lambda _path: (
            503,
            {"x-mapmesh-overloaded": "true", "Content-Type": "text/plain"},
            b"upstream overloaded (circuit breaker open)\n",
        )
    )
    auth = apps.start("auth")
    user = apps.start("user")
    timeline = apps.start("timeline", WORKER_URL=breaker.url)
    frontend = apps.start(
        "frontend",
        AUTH_URL=auth.url,
        USER_URL=user.url,
        TIMELINE_URL=timeline.url,
        FEED_URL="http://127.0.0.1:9",  # nothing listens on the discard port
    )

    shed = call(frontend.url + "/")
    assert shed.status == 503
    assert shed.headers["x-mapmesh-overloaded"] == "true"
    assert shed.body["error"] == "timeline: worker: upstream overloaded (circuit breaker open)"

    unreachable = call(frontend.url + "/posts", method="POST", body={"text": "hi"})
    assert unreachable.status == 502
    assert unreachable.body["error"].startswith("feed: unreachable")
    assert "x-mapmesh-overloaded" not in unreachable.headers


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(apps: Apps) -> None:
    worker = apps.start("worker", WORKER_DELAY_MS="500")
    replies: list[Reply] = []
    in_flight = threading.Thread(target=lambda: replies.append(call(worker.url + "/work")))
    in_flight.start()
    time.sleep(0.2)  # the request is now inside its 500 ms of work

    worker.process.send_signal(signal.SIGTERM)

    assert worker.process.wait(timeout=3) == 0
    in_flight.join(timeout=3)
    assert [reply.status for reply in replies] == [200]
    assert worker.log()[-1]["event"] == "stopped"
    assert worker.log()[-1]["drained"] is True


def test_sigterm_on_an_idle_app_exits_0_at_once(apps: Apps) -> None:
    frontend = apps.start("frontend")
    started = time.monotonic()
    frontend.process.send_signal(signal.SIGTERM)
    assert frontend.process.wait(timeout=3) == 0
    assert time.monotonic() - started < 1.5
