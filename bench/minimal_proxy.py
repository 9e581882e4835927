"""The design's anchor as a process: the least an HTTP/1.1 forwarder does with the sidecar's tools.

asyncio Protocols on uvloop, httptools on both sides, a LIFO pool of keep-alive upstream
connections, the request line rebuilt and the header bytes forwarded, one write each way per
request: the forwarder the design notes measured at 0.71x HAProxy's requests per CPU-second.
``bench.proxy`` runs it beside HAProxy, nginx and the sidecar, so every ratio it reports for
the sidecar can be read against what this floor reaches in the same run.

It does nothing a proxy must do beyond that (no routing, no timeouts, no retries, no
hop-by-hop handling, no limits, no request bodies), and answers any request it cannot
forward by closing the connection. It is a yardstick, not a proxy to deploy.

Run: ``python -m bench.minimal_proxy --port P --upstream-port U``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence
from typing import cast

import httptools
import uvloop

HOST = "127.0.0.1"


class Upstream(asyncio.Protocol):
    """One keep-alive connection to the upstream; carries one request at a time."""

    def __init__(self, pool: list[Upstream]) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.client: Downstream | None = None
        self.chunks: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def send(self, client: Downstream, head: bytes) -> None:
        assert self.transport is not None
        self.client = client
        self.transport.write(head)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.abort()

    def on_message_complete(self) -> None:
        response = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks.clear()
        client, self.client = self.client, None
        self.pool.append(self)
        if client is not None:
            client.respond(response)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.pool:
            self.pool.remove(self)
        client, self.client = self.client, None
        if client is not None:
            client.abort()


class Downstream(asyncio.Protocol):
    """One client connection: parse its requests, forward each over a pooled connection."""

    def __init__(self, pool: list[Upstream], upstream_port: int) -> None:
        self.pool = pool
        self.upstream_port = upstream_port
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.abort()

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        head = b"".join(
            [self.parser.get_method(), b" ", self.url, b" HTTP/1.1\r\n"]
            + [b"%s: %s\r\n" % field for field in self.headers]
            + [b"\r\n"]
        )
        self.headers = []
        if self.pool:
            self.pool.pop().send(self, head)
        else:
            asyncio.get_running_loop().create_task(self._send_on_new_connection(head))

    async def _send_on_new_connection(self, head: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await loop.create_connection(
                lambda: Upstream(self.pool), HOST, self.upstream_port
            )
        except OSError:
            self.abort()
            return
        upstream.send(self, head)

    def respond(self, response: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(response)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def serve(port: int, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    pool: list[Upstream] = []
    server = await loop.create_server(
        lambda: Downstream(pool, upstream_port), HOST, port, backlog=1024
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True, help="port to listen on (127.0.0.1)")
    p.add_argument("--upstream-port", type=int, required=True, help="upstream on 127.0.0.1")
    args = p.parse_args(argv)
    uvloop.run(serve(args.port, args.upstream_port))


if __name__ == "__main__":
    main()
