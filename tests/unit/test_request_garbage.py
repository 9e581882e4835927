"""A proxied request leaves nothing for the cyclic garbage collector.

Objects in a reference cycle outlive their request until a GC pass finds them, and those
passes stop every request in flight (they showed in the p99). The sidecar's own protocol
objects run here on in-memory transports, as in ``bench/proxy_path.py``: the frontend's
outbound listener forwards ``GET /`` for worker.corp to a pooled upstream connection.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time

from bench.proxy_path import FakeTransport

from mapmesh.proxy.accesslog import AccessLogger
from mapmesh.proxy.config import ClusterSet, build_config
from mapmesh.proxy.deadlines import Deadlines
from mapmesh.proxy.downstream import DownstreamConnection, DownstreamExchange
from mapmesh.proxy.forwarding import Forwarding
from mapmesh.proxy.router import Router
from mapmesh.proxy.stats import Stats
from mapmesh.proxy.telemetry.edges import EdgeSet
from mapmesh.proxy.telemetry.recorder import ListenerTelemetry
from mapmesh.proxy.telemetry.tracing import Sampler
from mapmesh.proxy.upstream import UpstreamConnection
from tests.unit.test_compiler import compile_node

REQUEST = b"GET / HTTP/1.1\r\nHost: worker.corp\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"


async def proxy_requests(count: int, sampling: float) -> list[bytes]:
    stats, clock, rng = Stats(), time.monotonic, random.Random(1)
    clusters = ClusterSet(stats, clock, rng)
    config = build_config(compile_node().snapshot, 1, clusters)
    deadlines = Deadlines(clock)
    router = Router("outbound", 15001, stats, clock, rng, deadlines)
    telemetry = ListenerTelemetry(
        "outbound", "outbound", EdgeSet(stats), stats, sampler=Sampler(sampling, None)
    )
    logger = AccessLogger(None)
    downstream = DownstreamConnection(
        router, lambda: config, stats, logger, "outbound", lambda _: None, telemetry=telemetry
    )
    client = FakeTransport()
    downstream.connection_made(client)  # type: ignore[arg-type]
    parked: list[tuple[UpstreamConnection, FakeTransport]] = []
    for runtime in config.clusters.values():  # one pooled connection per endpoint, parked
        pool = runtime.pool  # as Pool._open parks a new one
        for key in runtime.endpoints:
            upstream = UpstreamConnection(pool._exchange_ended, pool._connection_closed)
            transport = FakeTransport()
            upstream.connection_made(transport)  # type: ignore[arg-type]
            runtime.breaker.on_connection_opening()
            pool._endpoint_of[upstream] = key
            pool._idle[key] = [upstream]
            parked.append((upstream, transport))
    try:
        for _ in range(count):
            downstream.data_received(REQUEST)
            (upstream,) = [u for u, transport in parked if transport.written]
            for _, transport in parked:
                transport.written.clear()
            upstream.data_received(RESPONSE)
        return client.written
    finally:
        deadlines.close()
        clusters.close()


def test_a_proxied_request_leaves_no_reference_cycle() -> None:
    for sampling in (0.0, 1.0):  # a traced request keeps its spans, not its objects
        gc.collect()
        gc.disable()
        try:
            answers = asyncio.run(proxy_requests(50, sampling))
            assert len(answers) == 50 and all(a.startswith(b"HTTP/1.1 200") for a in answers)
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            left = [o for o in gc.garbage if isinstance(o, DownstreamExchange | Forwarding)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
        assert left == [], f"{len(left)} request objects were only freed by the GC"
