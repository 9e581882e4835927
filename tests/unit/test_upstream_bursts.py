"""Upstream sends in a burst are written together at the end of the loop iteration.

A send after a quiet spell is written at once; one that follows another within the burst
window, and every later send in the same iteration, waits for the iteration's I/O callbacks
to finish, then goes out as one write per connection, head before body. The burst state is
set here explicitly (``last_send``) rather than by racing the clock.
"""

from __future__ import annotations

import asyncio

import pytest

from mapmesh.proxy import upstream as upstream_module
from tests.unit.outbound_harness import REQUEST, RESPONSE, OutboundProxy

BURSTS = upstream_module._BURSTS
CHUNKED = (
    b"POST /items HTTP/1.1\r\nHost: worker.corp\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n"
)


def quiet() -> None:
    BURSTS.last_send = -1.0  # the last send was long ago


def just_sent() -> None:
    BURSTS.last_send = float("inf")  # as if a send had happened a moment ago


async def quiet_then_burst() -> None:
    proxy = OutboundProxy(per_endpoint=3)
    try:
        first, _ = proxy.client()
        quiet()
        first.data_received(REQUEST)
        ((upstream, data),) = proxy.written_upstream()  # at once: no added delay
        assert data.startswith(b"GET / HTTP/1.1\r\n")
        upstream.data_received(RESPONSE)

        second, _ = proxy.client()
        third, _ = proxy.client()
        streamed, _ = proxy.client()
        just_sent()
        second.data_received(REQUEST)
        quiet()  # later sends in the same iteration join the open burst anyway
        third.data_received(REQUEST)
        streamed.data_received(CHUNKED)
        streamed.data_received(b"2\r\nef\r\n")  # streamed body: after the held head
        assert proxy.written_upstream() == []

        await asyncio.sleep(0)  # the iteration ends
        writes = [data for _, data in proxy.written_upstream()]
        assert sorted(data[:4] for data in writes) == [b"GET ", b"GET ", b"POST"]
        (post,) = [data for data in writes if data.startswith(b"POST")]
        assert post.endswith(b"\r\n\r\n4\r\nabcd\r\n2\r\nef\r\n")  # one write, head first
        streamed.data_received(b"0\r\n\r\n")  # after the burst: straight through
        assert [data for _, data in proxy.written_upstream()] == [b"0\r\n\r\n"]
    finally:
        proxy.close()


async def client_gone_before_the_flush() -> None:
    proxy = OutboundProxy()
    try:
        downstream, _ = proxy.client()
        just_sent()
        downstream.data_received(REQUEST)
        downstream.connection_lost(None)  # the request is dropped, its connection discarded
        await asyncio.sleep(0)
        assert proxy.written_upstream() == []
    finally:
        proxy.close()


def test_a_send_after_a_quiet_spell_is_written_at_once_and_a_burst_at_its_end() -> None:
    asyncio.run(quiet_then_burst())


def test_a_burst_dropped_before_it_ends_writes_nothing() -> None:
    asyncio.run(client_gone_before_the_flush())


def test_sends_in_a_burst_do_not_ask_asyncio_for_the_running_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``asyncio.get_running_loop()`` makes a getpid system call each time; under load that
    was one more system call per request than HAProxy makes."""

    async def burst() -> int:
        proxy = OutboundProxy(per_endpoint=3)
        asked = 0
        running = asyncio.get_running_loop

        def counted() -> asyncio.AbstractEventLoop:
            nonlocal asked
            asked += 1
            return running()

        try:
            clients = [proxy.client()[0] for _ in range(3)]
            quiet()
            clients[0].data_received(REQUEST)  # the first request sets up what is made once
            ((upstream, _),) = proxy.written_upstream()
            upstream.data_received(RESPONSE)
            monkeypatch.setattr(asyncio, "get_running_loop", counted)
            just_sent()
            for client in clients:
                client.data_received(REQUEST)
            await asyncio.sleep(0)
            assert len(proxy.written_upstream()) == 3
            return asked
        finally:
            monkeypatch.undo()
            proxy.close()

    assert asyncio.run(burst()) == 0


def test_a_burst_left_by_a_stopped_loop_does_not_hold_up_the_next_loop() -> None:
    async def stranded() -> None:  # held, then the loop is gone before its iteration ends
        proxy = OutboundProxy()
        proxy.client()[0].data_received(REQUEST)
        BURSTS.held = [upstream for upstream, _ in proxy.parked]
        proxy.close()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(stranded())
    BURSTS.loop = loop
    loop.close()
    asyncio.run(quiet_then_burst())
