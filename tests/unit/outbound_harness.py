"""The frontend's outbound listener as the sidecar builds it, over in-memory transports.

The walkthrough snapshot's frontend forwards ``GET /`` for worker.corp; every endpoint has
``per_endpoint`` pooled keep-alive connections parked the way ``Pool._open`` parks a new one,
each on a :class:`FakeTransport` (as in ``bench/proxy_path.py``). No sockets, no sampling
unless asked: for tests of what the request path does with its objects and writes.
"""

from __future__ import annotations

import random
import time

from bench.proxy_path import FakeTransport

from mapmesh.proxy.accesslog import AccessLogger
from mapmesh.proxy.config import ClusterSet, build_config
from mapmesh.proxy.deadlines import Deadlines
from mapmesh.proxy.downstream import DownstreamConnection
from mapmesh.proxy.router import Router
from mapmesh.proxy.stats import Stats
from mapmesh.proxy.telemetry.edges import EdgeSet
from mapmesh.proxy.telemetry.recorder import ListenerTelemetry
from mapmesh.proxy.telemetry.tracing import Sampler
from mapmesh.proxy.upstream import UpstreamConnection
from tests.unit.test_compiler import compile_node

REQUEST = b"GET / HTTP/1.1\r\nHost: worker.corp\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"


class OutboundProxy:
    """Call inside a running event loop; :meth:`close` when done."""

    def __init__(self, sampling: float = 0.0, per_endpoint: int = 1) -> None:
        stats, clock, rng = Stats(), time.monotonic, random.Random(1)
        self._stats = stats
        self._clusters = ClusterSet(stats, clock, rng)
        self._config = build_config(compile_node().snapshot, 1, self._clusters)
        self._deadlines = Deadlines(clock)
        self._router = Router("outbound", 15001, stats, clock, rng, self._deadlines)
        self._telemetry = ListenerTelemetry(
            "outbound", "outbound", EdgeSet(stats), stats, sampler=Sampler(sampling, None)
        )
        self.parked: list[tuple[UpstreamConnection, FakeTransport]] = []
        for runtime in self._config.clusters.values():
            pool = runtime.pool
            for key in runtime.endpoints:
                idle = pool._idle.setdefault(key, [])
                for _ in range(per_endpoint):
                    upstream = UpstreamConnection(pool._exchange_ended, pool._connection_closed)
                    transport = FakeTransport()
                    upstream.connection_made(transport)  # type: ignore[arg-type]
                    runtime.breaker.on_connection_opening()
                    pool._endpoint_of[upstream] = key
                    idle.append(upstream)
                    self.parked.append((upstream, transport))

    def client(self) -> tuple[DownstreamConnection, FakeTransport]:
        """A new downstream connection and what it is sent."""
        config = self._config
        downstream = DownstreamConnection(
            self._router, lambda: config, self._stats, AccessLogger(None), "outbound",
            lambda _: None, telemetry=self._telemetry,
        )  # fmt: skip
        transport = FakeTransport()
        downstream.connection_made(transport)  # type: ignore[arg-type]
        return downstream, transport

    def written_upstream(self) -> list[tuple[UpstreamConnection, bytes]]:
        """What each parked connection was sent since the last call (and clear it)."""
        sent = [(upstream, transport.take()) for upstream, transport in self.parked]
        return [(upstream, data) for upstream, data in sent if data]

    def close(self) -> None:
        self._deadlines.close()
        self._clusters.close()
