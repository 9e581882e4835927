"""The plumbing every demo service shares, so each service file is only its behaviour.

- ``Identity``: who answered (service, version, replica), from the runner's ``MAPMESH_*`` env,
  stamped on every JSON answer so a client can see the split and the restarts.
- ``App``: routes a ``Request`` to a handler and turns every outcome — a ``Response``, an
  ``HttpError``, a bug — into a JSON answer. It does no I/O, so it reads (and tests) as a table.
- ``Backend``: one outgoing HTTP dependency. Calls go through ``HTTP_PROXY`` (the sidecar) to
  ``http://<name>.<namespace>``, carry the incoming request's trace headers, have a timeout,
  and turn every failure into an ``HttpError`` that names the backend and what it said.
- ``serve``: listens on ``$HOST:$PORT`` (``PORT=0`` picks a free port; the ``listening`` log
  line names it), logs one JSON line per request on stdout, and on SIGTERM/SIGINT stops
  accepting, lets requests in flight finish (up to ``DRAIN_SECONDS``, default 5) and exits 0.

Standard library only: the services must run on any Python 3.11 without installing anything.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

# Forwarded from each incoming request to the calls it causes, so one trace covers the chain.
TRACE_HEADERS = ("x-request-id", "traceparent", "tracestate", "x-amzn-trace-id")
OVERLOADED_HEADER = "x-mapmesh-overloaded"
DEFAULT_NAMESPACE = "social.local"
MAX_BODY_BYTES = 1 << 20
# Longer than the sidecar's 300 s upstream idle timeout, so the proxy closes idle keep-alive
# connections first and never reuses one the app is closing.
IDLE_CONNECTION_SECONDS = 360.0

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class Identity:
    """Which process answered: ``worker-v2-1`` is replica 1 of version v2 of worker."""

    service: str
    version: str
    replica: str

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], *, service: str, version: str | None = None
    ) -> Identity:
        return cls(
            service=env.get("MAPMESH_SERVICE") or service,
            version=version or env.get("MAPMESH_VERSION") or "",
            replica=env.get("MAPMESH_REPLICA") or f"pid{os.getpid()}",
        )

    @property
    def instance(self) -> str:
        parts = [self.service, self.version, self.replica]
        return "-".join(part for part in parts if part)

    def stamp(self) -> JsonObject:
        return {"service": self.service, "version": self.version, "instance": self.instance}


class HttpError(Exception):
    """An answer other than success, with the status and message the client should get."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        details: JsonObject | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = tuple(headers)
        self.details = details or {}


@dataclass(frozen=True)
class Request:
    """An incoming request, already read: header names are lower case."""

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def request_id(self) -> str:
        return self.headers.get("x-request-id", "")

    def trace_headers(self) -> dict[str, str]:
        return {name: self.headers[name] for name in TRACE_HEADERS if name in self.headers}

    def json(self) -> JsonObject:
        """The body as a JSON object, or 400 saying why it is not one."""
        try:
            value = json.loads(self.body or b"null")
        except ValueError as error:
            raise HttpError(400, f"body is not valid JSON: {error}") from None
        if not isinstance(value, dict):
            raise HttpError(400, "body must be a JSON object")
        return value

    def int_query(self, name: str, *, default: int, low: int, high: int) -> int:
        raw = self.query.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise HttpError(400, f"query {name}: must be an integer") from None
        if not low <= value <= high:
            raise HttpError(400, f"query {name}: must be between {low} and {high}")
        return value


@dataclass(frozen=True)
class Response:
    status: int
    body: JsonObject
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


def route(method: str, template: str, handler: Handler) -> Route:
    """``route("GET", "/users/{user_id}", h)``: each ``{name}`` matches one path segment."""
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    return Route(method, re.compile(f"^{regex}$"), handler)


class App:
    """A service's routes plus ``GET /health``; every answer is JSON stamped with the identity."""

    def __init__(self, identity: Identity, routes: Iterable[Route]) -> None:
        self.identity = identity
        self.started = time.monotonic()
        self.routes = (route("GET", "/health", self._health), *routes)

    def handle(self, request: Request) -> Response:
        try:
            response = self._dispatch(request)
        except HttpError as error:
            body = {"error": error.message, **error.details}
            response = Response(error.status, body, error.headers)
        except Exception as error:  # a bug: answer 500 and keep serving
            print(f"unhandled error in {request.method} {request.path}:", file=sys.stderr)
            traceback.print_exc()
            response = Response(500, {"error": f"internal error: {type(error).__name__}"})
        stamped = self.identity.stamp()
        stamped.update(response.body)
        if request.request_id:
            stamped["requestId"] = request.request_id
        return Response(response.status, stamped, response.headers)

    def _dispatch(self, request: Request) -> Response:
        allowed: list[str] = []
        for candidate in self.routes:
            match = candidate.pattern.match(request.path)
            if match is None:
                continue
            if candidate.method != request.method:
                allowed.append(candidate.method)
                continue
            params = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
            return candidate.handler(_with_params(request, params))
        if allowed:
            raise HttpError(
                405,
                f"{request.method} not allowed on {request.path}",
                headers=[("Allow", ", ".join(allowed))],
            )
        raise HttpError(404, f"no such path: {request.path}")

    def _health(self, _request: Request) -> Response:
        uptime = round(time.monotonic() - self.started, 1)
        return Response(200, {"status": "ok", "pid": os.getpid(), "uptimeSeconds": uptime})


def _with_params(request: Request, params: Mapping[str, str]) -> Request:
    return Request(
        request.method, request.path, request.query, request.headers, request.body, params
    )


class Backend:
    """One service this one calls, at ``$<NAME>_URL`` (default ``http://<name>.<namespace>``).

    urllib sends the request to ``HTTP_PROXY`` when it is set — except for hosts in
    ``NO_PROXY`` and always for ``localhost`` — so mesh names go through the sidecar, which
    routes by the host name, while direct loopback URLs (tests) go straight to the service.
    """

    def __init__(self, name: str, url: str, timeout: float) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._opener = urllib.request.build_opener()  # ProxyHandler reads HTTP_PROXY now

    @classmethod
    def from_env(cls, env: Mapping[str, str], name: str) -> Backend:
        namespace = env.get("MAPMESH_NAMESPACE") or DEFAULT_NAMESPACE
        url = env.get(f"{name.upper()}_URL") or f"http://{name}.{namespace}"
        return cls(name, url, float(env.get("BACKEND_TIMEOUT_S") or 10.0))

    def call(
        self,
        method: str,
        path: str,
        *,
        incoming: Request,
        body: JsonObject | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> JsonObject:
        """The backend's JSON answer, or an ``HttpError`` saying what went wrong and where."""
        headers = {"Accept": "application/json", **incoming.trace_headers(), **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        outgoing = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with self._opener.open(outgoing, timeout=self.timeout) as reply:
                raw = reply.read()
        except urllib.error.HTTPError as error:
            with error:
                raise self._failed(error.code, error.headers, error.read()) from None
        except urllib.error.URLError as error:  # could not connect
            if isinstance(error.reason, TimeoutError):
                raise self._timed_out() from None
            raise self._unreachable(error.reason) from None
        except TimeoutError:
            raise self._timed_out() from None
        except (OSError, http.client.HTTPException) as error:  # reset, garbled answer
            raise self._unreachable(error) from None
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise HttpError(502, f"{self.name}: answered with something other than a JSON object")
        return answer

    def _timed_out(self) -> HttpError:
        message = f"{self.name}: no answer within {self.timeout:g} s"
        return HttpError(504, message, details=self._where())

    def _unreachable(self, reason: object) -> HttpError:
        return HttpError(502, f"{self.name}: unreachable: {reason}", details=self._where())

    def _failed(self, status: int, headers: Message, raw: bytes) -> HttpError:
        """Client errors pass through; 503/504 keep their status; other failures become 502.

        A circuit breaker's ``x-mapmesh-overloaded`` is passed on, so the client at the edge
        can tell "shed under load" from "broken".
        """
        reason = _error_text(raw)
        answer = status if status < 500 or status in (503, 504) else 502
        overloaded = headers.get(OVERLOADED_HEADER)
        passed = [(OVERLOADED_HEADER, overloaded)] if overloaded else []
        return HttpError(
            answer,
            f"{self.name}: {reason}",
            headers=passed,
            details={**self._where(), "backendStatus": status},
        )

    def _where(self) -> JsonObject:
        return {"backend": self.name}


def _error_text(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("error"), str):
        return str(value["error"])
    return text[:200] or "no reason given"


def answered_by(answer: JsonObject, *extra: str) -> JsonObject:
    """Who produced a backend's answer (its identity stamp), plus any ``extra`` fields of it."""
    keys = ("service", "version", "instance", *extra)
    return {key: answer[key] for key in keys if key in answer}


class JsonLog:
    """One JSON object per line on stdout; a lock keeps lines from different threads whole."""

    def __init__(self, identity: Identity) -> None:
        self._identity = identity
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields: Any) -> None:
        record = {"ts": round(time.time(), 3), "event": event, **self._identity.stamp(), **fields}
        line = json.dumps(record)
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


class _InFlight:
    """Counts requests being handled, so shutdown can wait for them to finish."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def __enter__(self) -> None:
        with self._idle:
            self._count += 1

    def __exit__(self, *_exc: object) -> None:
        with self._idle:
            self._count -= 1
            if self._count == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not hold up the exit
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App, log: JsonLog) -> None:
        super().__init__(address, _Handler)
        self.app = app
        self.log = log
        self.in_flight = _InFlight()
        self.draining = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the sidecar can pool connections
    timeout = IDLE_CONNECTION_SECONDS
    # Head and body leave in two writes; with Nagle on, the body would wait for the peer's
    # delayed ACK of the head (~40 ms on Linux) on every response.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        started = time.monotonic()
        request_id = ""
        with self.server.in_flight:
            try:
                request = self._read_request()
            except HttpError as error:
                response = Response(error.status, {"error": error.message})
                self.close_connection = True
            else:
                request_id = request.request_id
                response = self.server.app.handle(request)
            try:
                self._write(response)
            except ConnectionError:  # the client left; nothing more to tell it
                self.close_connection = True
        if _logged(self.path):
            self.server.log(
                "request",
                method=self.command,
                path=self.path,
                status=response.status,
                durationMs=round((time.monotonic() - started) * 1000, 1),
                requestId=request_id,
            )

    def _read_request(self) -> Request:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise HttpError(411, "send the body with a Content-Length")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise HttpError(400, "Content-Length is not a number") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise HttpError(413, f"body larger than {MAX_BODY_BYTES} bytes")
        body = self.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        headers = {name.lower(): value for name, value in self.headers.items()}
        if not headers.get("x-request-id"):
            headers["x-request-id"] = uuid.uuid4().hex
        return Request(self.command, url.path or "/", query, headers, body)

    def _write(self, response: Response) -> None:
        payload = json.dumps(response.body, indent=2).encode() + b"\n"
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        request_id = response.body.get("requestId")
        if isinstance(request_id, str):
            self.send_header("x-request-id", request_id)
        for name, value in response.headers:
            self.send_header(name, value)
        if self.server.draining:
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Requests are logged by ``_serve``, with their duration and request id."""

    def log_message(self, format: str, *args: Any) -> None:
        """http.server's own messages (malformed requests and the like) as JSON lines too."""
        self.server.log("http", message=format % args)


def _logged(path: str) -> bool:
    """Health probes arrive every few seconds from every checker; logging them is noise."""
    return not path.startswith("/health")


def serve(app: App, env: Mapping[str, str]) -> None:
    """Serve until SIGTERM or SIGINT, then drain and return (the process exits 0)."""
    log = JsonLog(app.identity)
    host = env.get("HOST") or "127.0.0.1"
    port = int(env.get("PORT") or 8000)
    drain_seconds = float(env.get("DRAIN_SECONDS") or 5.0)
    server = _Server((host, port), app, log)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    loop.start()
    log("listening", host=host, port=server.server_address[1], pid=os.getpid())
    stop.wait()
    server.draining = True
    server.shutdown()
    server.server_close()
    drained = server.in_flight.wait_idle(drain_seconds)
    log("stopped", drained=drained)
