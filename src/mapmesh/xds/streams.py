"""Versioned snapshots per proxy, pushed to every connected stream as inputs change.

Theory of operation
-------------------
A *proxy identity* is (mesh, kind, name): every replica of a virtual node's sidecar shares
one identity and therefore one snapshot. For each identity that has at least one connected
stream the hub keeps the current snapshot as an encoded NDJSON line, its digest and version.

Inputs change (a route weight, a registration, a health transition) → the caller names the
identities that may be affected → they are queued and, on the next loop iteration, compiled
once each (bursts coalesce: ten writes in one batch cost one compile). A compile whose digest
equals the previous one changes nothing and sends nothing — only proxies whose snapshot
changed hear about it. A changed snapshot gets a new version (the store revision it was
compiled at, so versions grow across restarts), its line is encoded once, and every waiting
stream of that identity wakes through one shared future; each stream then writes the same
bytes. A stream that was slow only ever sees the latest version (per-stream coalescing).

Acknowledgements are recorded per stream (proxy instance): the version it applied, or the
version it rejected and why; a rejecting proxy keeps serving its last good snapshot.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["Ack", "ProxyId", "SnapshotHub", "Versioned"]

log = logging.getLogger(__name__)

PROXY_KINDS = ("virtualNode", "virtualGateway")


@dataclass(frozen=True, slots=True, order=True)
class ProxyId:
    mesh: str
    kind: str  # "virtualNode" | "virtualGateway"
    name: str

    def __str__(self) -> str:
        return f"{self.mesh}/{self.kind}/{self.name}"


@dataclass(frozen=True, slots=True)
class Versioned:
    version: int
    digest: str
    line: bytes  # one NDJSON line: {"type":"snapshot","version":..,"snapshot":..}\n


@dataclass(slots=True)
class Ack:
    instance: str
    version: int
    accepted: bool
    error: str | None
    at: float


# Compile one identity: the encoded snapshot (canonical JSON bytes), or None when the
# identity does not exist (yet).
Compile = Callable[[ProxyId], bytes | None]


@dataclass
class _Entry:
    current: Versioned | None = None
    streams: int = 0
    changed: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    acks: dict[str, Ack] = field(default_factory=dict)


class SnapshotHub:
    def __init__(self, compile: Compile, revision: Callable[[], int]) -> None:
        self._compile = compile
        self._revision = revision
        self._entries: dict[ProxyId, _Entry] = {}
        self._pending: set[ProxyId] = set()
        self._flush_scheduled = False
        self._ack_listeners: list[Callable[[ProxyId, Ack], None]] = []
        self.compiles = 0
        self.pushes = 0

    # -- streams -------------------------------------------------------------------------

    def connect(self, proxy: ProxyId) -> Versioned | None:
        """Register a stream for ``proxy``; its current snapshot (compiled on first use)."""
        entry = self._entries.get(proxy)
        if entry is None:
            entry = self._entries[proxy] = _Entry()
        entry.streams += 1
        if entry.current is None:
            self._recompile(proxy, entry)
        return entry.current

    def disconnect(self, proxy: ProxyId, instance: str | None = None) -> None:
        entry = self._entries.get(proxy)
        if entry is None:
            return
        entry.streams -= 1
        if instance is not None:
            entry.acks.pop(instance, None)
        if entry.streams <= 0:
            del self._entries[proxy]

    async def next_version(self, proxy: ProxyId, after: int, timeout: float) -> Versioned | None:
        """The snapshot newer than ``after``, waiting up to ``timeout``; None if none came."""
        entry = self._entries[proxy]
        if entry.current is not None and entry.current.version > after:
            return entry.current
        try:
            await asyncio.wait_for(asyncio.shield(entry.changed), timeout)
        except TimeoutError:
            return None
        current = self._entries[proxy].current
        return current if current is not None and current.version > after else None

    def ack(
        self, proxy: ProxyId, instance: str, version: int, accepted: bool, error: str | None
    ) -> bool:
        entry = self._entries.get(proxy)
        if entry is None:
            return False
        recorded = entry.acks[instance] = Ack(instance, version, accepted, error, time.time())
        for listener in self._ack_listeners:
            listener(proxy, recorded)
        if not accepted:
            log.warning(
                "proxy rejected snapshot",
                extra={
                    "proxy": str(proxy),
                    "instance": instance,
                    "version": version,
                    "error": error,
                },
            )
        return True

    def on_ack(self, listener: Callable[[ProxyId, Ack], None]) -> None:
        """Call ``listener`` with every acknowledgement recorded (the telemetry event log)."""
        self._ack_listeners.append(listener)

    # -- inputs changed ------------------------------------------------------------------

    def connected(self) -> list[ProxyId]:
        return sorted(self._entries)

    def invalidate(self, proxies: Iterable[ProxyId] | None = None) -> None:
        """Recompile ``proxies`` (all connected ones when None) on the next loop iteration."""
        targets = self._entries.keys() if proxies is None else proxies
        self._pending.update(p for p in targets if p in self._entries)
        if self._pending and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, set()
        for proxy in sorted(pending):
            entry = self._entries.get(proxy)
            if entry is not None:
                self._recompile(proxy, entry)

    def _recompile(self, proxy: ProxyId, entry: _Entry) -> None:
        self.compiles += 1
        try:
            encoded = self._compile(proxy)
        except Exception:
            log.exception(
                "snapshot compile failed; keeping the last one", extra={"proxy": str(proxy)}
            )
            return
        if encoded is None:
            return
        digest = hashlib.sha256(encoded).hexdigest()
        if entry.current is not None and entry.current.digest == digest:
            return
        version = max(self._revision(), (entry.current.version + 1) if entry.current else 1)
        line = b'{"type":"snapshot","version":%d,"digest":"%s","snapshot":%s}\n' % (
            version,
            digest.encode(),
            encoded,
        )
        entry.current = Versioned(version, digest, line)
        self.pushes += 1
        waking, entry.changed = entry.changed, asyncio.get_running_loop().create_future()
        waking.set_result(None)

    # -- visibility ----------------------------------------------------------------------

    def status(self) -> list[dict[str, object]]:
        """Every connected identity: its version and what each of its streams applied."""
        out: list[dict[str, object]] = []
        for proxy, entry in sorted(self._entries.items()):
            out.append(
                {
                    "mesh": proxy.mesh,
                    "kind": proxy.kind,
                    "name": proxy.name,
                    "version": entry.current.version if entry.current else None,
                    "streams": entry.streams,
                    "acks": [
                        {
                            "instance": a.instance,
                            "version": a.version,
                            "accepted": a.accepted,
                            "error": a.error,
                            "at": a.at,
                        }
                        for a in sorted(entry.acks.values(), key=lambda a: a.instance)
                    ],
                }
            )
        return out

    def statistics(self) -> dict[str, int]:
        return {
            "identities": len(self._entries),
            "streams": sum(e.streams for e in self._entries.values()),
            "compiles": self.compiles,
            "pushes": self.pushes,
        }


def encode_line(kind: str, **fields: object) -> bytes:
    """A non-snapshot stream line (``ping``, ``error``)."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":")).encode() + b"\n"
