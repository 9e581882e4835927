"""The proxy's admin port: readiness, Prometheus stats, the config in force, endpoints.

Not on the request path, so plain asyncio streams and one small request per connection.
Pages are callbacks returning (status, content type, body), registered by the proxy:

* ``GET /ready``        — 200 once a snapshot is in force and listeners are open, else 503;
* ``GET /stats``        — Prometheus text (``/stats/prometheus`` is an alias, as in Envoy);
* ``GET /config_dump``  — the snapshot in force, as JSON;
* ``GET /clusters``     — endpoints with health, ejection and load, as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

__all__ = ["AdminServer", "Page"]

log = logging.getLogger("mapmesh.proxy.admin")

Page = Callable[[], tuple[int, str, bytes]]

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class AdminServer:
    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._pages: dict[str, Page] = {}
        self._server: asyncio.Server | None = None

    def add(self, path: str, page: Page) -> None:
        self._pages[path] = page

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, target, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            path = target.split("?", 1)[0]
            page = self._pages.get(path)
            if method != "GET":
                status, kind, body = 405, "text/plain", b"only GET\n"
            elif page is None:
                known = ", ".join(sorted(self._pages))
                status, kind, body = 404, "text/plain", f"no page {path}; try {known}\n".encode()
            else:
                status, kind, body = page()
            writer.write(
                f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except Exception:
            log.exception("admin page failed")
        finally:
            writer.close()
