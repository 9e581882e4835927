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
from urllib.parse import urlencode

from mapmesh.core.backoff import Backoff
from mapmesh.proxy.control_http import endpoint_of, read_body, read_chunk, read_head, request

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


async def _stream_lines(control_plane: str, query: str, idle_timeout: float) -> Any:
    host, port = endpoint_of(control_plane)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5.0)
    try:
        writer.write(
            f"GET /v1/stream?{query} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Accept: application/x-ndjson\r\n\r\n".encode()
        )
        status, headers = await asyncio.wait_for(read_head(reader), 5.0)
        if status != 200:
            body = await read_body(reader, headers)
            raise StreamRejected(status, body.decode(errors="replace"))
        chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        buffer = b""
        while True:
            data = await asyncio.wait_for(
                read_chunk(reader) if chunked else reader.read(65536), idle_timeout
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
    status, _ = await request(
        control_plane, "POST", "/v1/ack", body, {"Content-Type": "application/json"}
    )
    if status >= 300:
        log.warning("acknowledgement refused", extra={"status": status, "version": version})
