"""Follow the control plane's snapshot stream and acknowledge what was applied.

The proxy connects to ``GET /v1/stream`` with its identity, receives NDJSON lines (snapshots
and pings), hands each snapshot to ``apply`` — which returns None when it took the snapshot
or a reason when it refused it — and posts the outcome to ``/v1/ack``. On any failure it
reconnects with backoff, sending the last applied version so an unchanged snapshot is not
sent again. A stream silent for longer than ``idle_timeout`` (three missed pings) counts as
dead. This is not the request path: plain asyncio streams are fine here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from mapmesh.core.backoff import Backoff

__all__ = ["StreamIdentity", "StreamRejected", "follow_snapshots"]

log = logging.getLogger("mapmesh.proxy.config")


@dataclass(frozen=True, slots=True)
class StreamIdentity:
    mesh: str
    kind: str  # "virtualNode" | "virtualGateway"
    name: str
    instance: str = ""

    def query(self, version: int) -> str:
        return urlencode(
            {"mesh": self.mesh, self.kind: self.name, "instance": self.instance, "version": version}
        )


class StreamRejected(Exception):
    """The control plane refused the stream (unknown node, bad request): ``status`` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


Apply = Callable[[int, dict[str, Any]], str | None]


async def follow_snapshots(
    control_plane: str,
    identity: StreamIdentity,
    apply: Apply,
    *,
    version: int = 0,
    idle_timeout: float = 45.0,
    backoff: Backoff | None = None,
) -> None:
    """Run forever: stream snapshots into ``apply`` and acknowledge them."""
    if not identity.instance:
        identity = StreamIdentity(identity.mesh, identity.kind, identity.name, str(uuid.uuid4()))
    backoff = backoff or Backoff()
    applied = version
    while True:
        try:
            async for line in _stream_lines(control_plane, identity.query(applied), idle_timeout):
                backoff.reset()
                message = json.loads(line)
                if message.get("type") != "snapshot":
                    continue
                offered = int(message["version"])
                error = apply(offered, message["snapshot"])
                if error is None:
                    applied = offered
                await _post_ack(control_plane, identity, offered, error)
        except asyncio.CancelledError:
            raise
        except (OSError, TimeoutError, ValueError, StreamRejected) as exc:
            delay = backoff.next()
            log.info(
                "snapshot stream interrupted; reconnecting",
                extra={"error": str(exc), "retry_in_s": round(delay, 2)},
            )
            await asyncio.sleep(delay)


def _endpoint(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


async def _stream_lines(control_plane: str, query: str, idle_timeout: float) -> Any:
    host, port = _endpoint(control_plane)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5.0)
    try:
        writer.write(
            f"GET /v1/stream?{query} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Accept: application/x-ndjson\r\n\r\n".encode()
        )
        status, headers = await asyncio.wait_for(_read_head(reader), 5.0)
        if status != 200:
            body = await _read_body(reader, headers)
            raise StreamRejected(status, body.decode(errors="replace"))
        chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        buffer = b""
        while True:
            data = await asyncio.wait_for(
                _read_chunk(reader) if chunked else reader.read(65536), idle_timeout
            )
            if not data:
                raise ConnectionError("the control plane closed the stream")
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    yield line
    finally:
        writer.close()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def _read_chunk(reader: asyncio.StreamReader) -> bytes:
    size_line = await reader.readuntil(b"\r\n")
    size = int(size_line.split(b";", 1)[0], 16)
    if size == 0:
        return b""
    data = await reader.readexactly(size + 2)
    return data[:-2]


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while chunk := await _read_chunk(reader):
            parts.append(chunk)
        return b"".join(parts)
    length = int(headers.get("content-length", "0"))
    return await reader.readexactly(length) if length else b""


async def _post_ack(
    control_plane: str, identity: StreamIdentity, version: int, error: str | None
) -> None:
    body = json.dumps(
        {
            "mesh": identity.mesh,
            identity.kind: identity.name,
            "instance": identity.instance,
            "version": version,
            "accepted": error is None,
            "error": error,
        }
    ).encode()
    host, port = _endpoint(control_plane)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5.0)
    try:
        writer.write(
            f"POST /v1/ack HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        status, _ = await asyncio.wait_for(_read_head(reader), 5.0)
        if status >= 300:
            log.warning("acknowledgement refused", extra={"status": status, "version": version})
    finally:
        writer.close()
