"""A proxied request leaves nothing for the cyclic garbage collector.

Objects in a reference cycle outlive their request until a GC pass finds them, and those
passes stop every request in flight (they showed in the p99). The sidecar's own protocol
objects run here on in-memory transports, as in ``bench/proxy_path.py``: the frontend's
outbound listener forwards ``GET /`` for worker.corp to a pooled upstream connection.
"""

from __future__ import annotations

import asyncio
import gc

from mapmesh.proxy.downstream import DownstreamExchange
from mapmesh.proxy.forwarding import Forwarding
from tests.unit.outbound_harness import REQUEST, RESPONSE, OutboundProxy


async def proxy_requests(count: int, sampling: float) -> list[bytes]:
    proxy = OutboundProxy(sampling)
    downstream, client = proxy.client()
    try:
        for _ in range(count):
            downstream.data_received(REQUEST)
            await asyncio.sleep(0)  # back-to-back requests are a burst: written after this
            ((upstream, _),) = proxy.written_upstream()
            upstream.data_received(RESPONSE)
        return client.written
    finally:
        proxy.close()


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
