"""The supervisor's control endpoint: tiny JSON over HTTP on loopback, and its client.

``mapmesh ps|scale|down`` and a second ``mapmesh up`` talk to a running supervisor here. The
endpoint listens on 127.0.0.1 on a free port and answers only requests that carry the token
from ``runner.json`` (which only its owner can read) in ``X-Mapmesh-Token``, so other local
users cannot drive it. One request per connection; bodies and answers are JSON objects.

    GET  /status                 everything ``ps`` shows
    POST /apply  {"file": PATH}  roll out a changed app file; answers {"generation": N}
    POST /scale  {"counts": {NODE_OR_SERVICE: N}}; answers {"generation": N}
    POST /down                   stop everything; answers at once, the supervisor then exits
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

__all__ = ["ControlClient", "ControlError", "ControlServer", "Handler"]

log = logging.getLogger("mapmesh.runner.control")

Handler = Callable[[str, str, dict[str, Any]], Awaitable[tuple[int, dict[str, Any]]]]
TOKEN_HEADER = "X-Mapmesh-Token"
_MAX_BODY = 1 << 20


class ControlServer:
    def __init__(self, handler: Handler, token: str, host: str = "127.0.0.1") -> None:
        self._handler = handler
        self._token = token
        self._host = host
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, answer = await self._answer(reader)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            writer.close()
            return
        body = json.dumps(answer).encode()
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3:
            return 400, {"error": "malformed request line"}
        method, path = parts[0], parts[1]
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            return 400, {"error": "bad Content-Length"}
        if not 0 <= length <= _MAX_BODY:
            return 413, {"error": "body too large"}
        raw = await asyncio.wait_for(reader.readexactly(length), 5.0) if length else b""
        if headers.get(TOKEN_HEADER.lower()) != self._token:
            return 403, {"error": "wrong or missing token; read it from runner.json"}
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return 400, {"error": "the body is not JSON"}
        if not isinstance(body, dict):
            return 400, {"error": "the body must be a JSON object"}
        try:
            return await self._handler(method, path, body)
        except Exception as exc:  # the endpoint answers; the supervisor keeps running
            log.exception("control request failed")
            return 500, {"error": f"{type(exc).__name__}: {exc}"}


class ControlError(Exception):
    """The supervisor could not be reached, or refused; the message is for the user."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ControlClient:
    def __init__(self, url: str, token: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status")

    def apply(self, file: str) -> dict[str, Any]:
        return self._call("POST", "/apply", {"file": file})

    def scale(self, counts: dict[str, int]) -> dict[str, Any]:
        return self._call("POST", "/scale", {"counts": counts})

    def down(self) -> dict[str, Any]:
        return self._call("POST", "/down")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={TOKEN_HEADER: self._token, "Content-Type": "application/json"},
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                status, payload = int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                status, payload = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ControlError(
                f"the runner's control endpoint {self.url} does not answer ({reason})"
            ) from None
        try:
            answer = json.loads(payload)
        except ValueError:
            raise ControlError(
                f"the control endpoint answered HTTP {status} without JSON"
            ) from None
        if status >= 400:
            raise ControlError(str(answer.get("error") or f"HTTP {status}"), status)
        if not isinstance(answer, dict):
            raise ControlError("the control endpoint answered something other than an object")
        return answer
