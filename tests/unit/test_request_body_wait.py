"""A small request body that arrives after its head is collected, then sent with the head.

Bodies up to the replay limit are kept so that a retry can send them again: the forwarding
waits for the whole body before its first attempt, and the head and body leave in one write.
"""

from __future__ import annotations

import asyncio

from mapmesh.proxy import upstream as upstream_module
from tests.unit.outbound_harness import RESPONSE, OutboundProxy

HEAD = b"POST /items HTTP/1.1\r\nHost: worker.corp\r\nContent-Length: 7\r\n\r\n"


async def body_after_head() -> tuple[list[bytes], list[bytes]]:
    proxy = OutboundProxy()
    try:
        downstream, client = proxy.client()
        upstream_module._BURSTS.last_send = -1.0  # a quiet proxy: sends are written at once
        downstream.data_received(HEAD)
        waiting = [data for _, data in proxy.written_upstream()]
        downstream.data_received(b"abc")
        downstream.data_received(b"defg")
        ((upstream, sent),) = proxy.written_upstream()
        upstream.data_received(RESPONSE)
        return waiting, [sent, *client.written]
    finally:
        proxy.close()


def test_a_small_body_is_awaited_then_sent_with_its_head_in_one_write() -> None:
    waiting, (sent, answer) = asyncio.run(body_after_head())
    assert waiting == []  # nothing goes upstream before the whole body is in
    assert sent.startswith(b"POST /items HTTP/1.1\r\n") and sent.endswith(b"\r\n\r\nabcdefg")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"ok")
