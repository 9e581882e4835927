"""Listener TLS: contexts from certificate files (and the reasons a snapshot is refused), and
one listening socket whose acceptor follows the mode — on a real loopback socket."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import replace

import pytest

from mapmesh.model import snapshot
from mapmesh.model.plain import decode
from mapmesh.proxy.tls import ListenerServer, ListenerTlsError, ServerTls, TlsListeners
from tests.integration.test_gateway_tls import Pki, make_pki
from tests.unit.test_compiler import compile_node


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls(pki: Pki, mode: str = "STRICT", **certificate: str) -> snapshot.ListenerTls:
    files = {"certificate_chain": str(pki.server_cert), "private_key": str(pki.server_key)}
    return decode(
        snapshot.ListenerTls,
        {"mode": mode, "certificate": {"source": "file", **files, **certificate}},
    )


def gateway(listener_tls: snapshot.ListenerTls | None) -> snapshot.Snapshot:
    snap = compile_node("ingress", kind="virtualGateway").snapshot
    listener = replace(snap.listeners[0], tls=listener_tls)
    return replace(snap, listeners=(listener,))


def test_a_plan_per_mode_and_contexts_reused_while_nothing_changed(pki: Pki) -> None:
    listeners = TlsListeners()
    assert listeners.prepare(gateway(None)) == {"gateway": None}
    assert listeners.prepare(gateway(tls(pki, "DISABLED", private_key="/nope"))) == {
        "gateway": None
    }
    first = listeners.prepare(gateway(tls(pki)))["gateway"]
    assert first is not None and first.mode == "STRICT"
    listeners.commit({"gateway": first})
    again = listeners.prepare(gateway(tls(pki)))["gateway"]
    assert again is not None and again.context is first.context
    assert listeners.prepare(compile_node("frontend").snapshot) == {"inbound": None}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"certificate_chain": "/missing/chain.pem"}, "certificateChain: cannot read"),
        ({"private_key": "CA"}, "are not a PEM certificate chain and its private key"),
        ({"source": "acm", "certificate_arn": "arn:x"}, "source acm is not supported"),
    ],
)
def test_certificates_that_cannot_be_served_refuse_the_snapshot(
    pki: Pki, change: dict[str, str], reason: str
) -> None:
    if change.get("private_key") == "CA":
        change = {"private_key": str(pki.ca)}  # a certificate where the key should be
    with pytest.raises(ListenerTlsError, match=reason) as caught:
        TlsListeners().prepare(gateway(tls(pki, **change)))
    assert str(caught.value).startswith("listener 8443 tls.certificate")


def test_validation_needs_a_trust_file_and_no_names(pki: Pki) -> None:
    with_names = replace(
        tls(pki),
        validation=snapshot.TlsValidation(
            trust="file", certificate_chain=str(pki.ca), subject_alternative_names=("a",)
        ),
    )
    with pytest.raises(ListenerTlsError, match="subjectAlternativeNames"):
        TlsListeners().prepare(gateway(with_names))
    sds = replace(tls(pki), validation=snapshot.TlsValidation(trust="sds", secret_name="ca"))
    with pytest.raises(ListenerTlsError, match="sds trust is not supported"):
        TlsListeners().prepare(gateway(sds))


class Hello(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert isinstance(self.transport, asyncio.WriteTransport)
        self.transport.write(b"hello")

    def close(self) -> None:
        self.transport.close()


async def _ask(port: int, context: ssl.SSLContext | None) -> bytes:
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost" if context else None
        )
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(5), 2)
        writer.close()
        return answer
    except (OSError, TimeoutError):
        return b""


def test_one_socket_follows_the_mode_for_new_connections(pki: Pki) -> None:
    server_context = TlsListeners().prepare(gateway(tls(pki)))["gateway"]
    assert server_context is not None
    client = ssl.create_default_context(cafile=str(pki.ca))

    async def story() -> None:
        server = ListenerServer(Hello, "127.0.0.1", 0, 16, 2.0)
        port = server.sockets[0].getsockname()[1]
        await server.open(None)
        assert await _ask(port, None) == b"hello"
        # STRICT: TLS only.
        server.want(ServerTls("STRICT", server_context.context))
        await asyncio.sleep(0.05)
        assert await _ask(port, client) == b"hello"
        assert await _ask(port, None) == b""
        # PERMISSIVE: both, told apart by the first byte.
        server.want(ServerTls("PERMISSIVE", server_context.context))
        await asyncio.sleep(0.05)
        assert await _ask(port, client) == b"hello"
        assert await _ask(port, None) == b"hello"
        assert server.tls is not None and server.tls.mode == "PERMISSIVE"
        server.close()
        await server.wait_closed()

    asyncio.run(story())
