"""One JSON line per request: what happened, how long it took, and why (response flags).

Fields follow Envoy's access-log vocabulary: ``start_time``, ``method``, ``authority``,
``path``, ``response_code``, ``response_flags`` (NR, UH, UF, UC, UT, URX, UO, DC, ...),
``duration_ms``, ``upstream_host``, ``bytes_received``, ``bytes_sent``, ``request_id``,
``route_name``. The logger writes to a file (``/dev/stdout`` works) or keeps nothing.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import IO, Any, Protocol

__all__ = ["AccessLogEntry", "AccessLogger"]


class _Exchange(Protocol):
    status: int
    flags: list[str]
    upstream: str | None
    route_name: str | None
    bytes_received: int
    bytes_sent: int
    request_id: bytes

    @property
    def started(self) -> float: ...

    @property
    def duration_ms(self) -> float: ...

    @property
    def head(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class AccessLogEntry:
    start_time: str
    listener: str
    method: str
    authority: str
    path: str
    protocol: str
    response_code: int
    response_flags: str
    duration_ms: float
    upstream_host: str | None
    route_name: str | None
    bytes_received: int
    bytes_sent: int
    request_id: str

    @classmethod
    def of(cls, exchange: _Exchange, listener: str) -> AccessLogEntry:
        head = exchange.head
        return cls(
            start_time=datetime.fromtimestamp(exchange.started, UTC).isoformat(
                timespec="milliseconds"
            ),
            listener=listener,
            method=head.method.decode("latin-1"),
            authority=(head.authority or b"").decode("latin-1"),
            path=head.path.decode("latin-1"),
            protocol=f"HTTP/{head.http_version}",
            response_code=exchange.status,
            response_flags=",".join(exchange.flags) or "-",
            duration_ms=round(exchange.duration_ms, 3),
            upstream_host=exchange.upstream,
            route_name=exchange.route_name,
            bytes_received=exchange.bytes_received,
            bytes_sent=exchange.bytes_sent,
            request_id=exchange.request_id.decode("latin-1"),
        )


class AccessLogger:
    def __init__(self, path: str | None) -> None:
        self.path = path
        self._stream: IO[str] | None = None
        if path in ("/dev/stdout", "-"):
            self._stream = sys.stdout
        elif path:
            self._stream = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115

    @property
    def enabled(self) -> bool:
        """False when no log is kept: then entries are not even built."""
        return self._stream is not None

    def record(self, entry: AccessLogEntry) -> None:
        if self._stream is not None:
            self._stream.write(json.dumps(asdict(entry), separators=(",", ":")) + "\n")

    def close(self) -> None:
        if self._stream is not None and self._stream is not sys.stdout:
            self._stream.close()
