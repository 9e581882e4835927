"""TLS termination on a virtual gateway's listener, from certificate files, with a test CA
made here: STRICT serves only TLS, PERMISSIVE both on one port, a client certificate is
required once the listener names a trust file, and a certificate that cannot be read is
refused in the gateway's acknowledgement while it keeps serving what it had."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.integration.sidecar_support import HTTP_8080, Mesh, appmesh_client, wait_for, worker_mesh
from tests.support import ServerProcess, free_port


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_pki(directory: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("mapmesh test CA"))
        .issuer_name(_name("mapmesh test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def issue(common: str, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]) -> Any:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    server, server_key = issue(
        "gateway",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client, client_key = issue("client", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    pki = Pki(
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server-key.pem",
        directory / "client.pem",
        directory / "client-key.pem",
    )
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.server_cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    _write_key(server_key, pki.server_key)
    pki.client_cert.write_bytes(client.public_bytes(serialization.Encoding.PEM))
    _write_key(client_key, pki.client_key)
    return pki


def listener(pki: Pki, mode: str, **extra: Any) -> dict[str, Any]:
    certificate = {"certificateChain": str(pki.server_cert), "privateKey": str(pki.server_key)}
    return {
        "portMapping": HTTP_8080,
        "tls": {"mode": mode, "certificate": {"file": extra.pop("file", certificate)}, **extra},
    }


@dataclass
class Gateway:
    port: int
    admin: int
    process: subprocess.Popen[bytes]

    def https(self, pki: Pki, *, client_cert: bool = False) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(pki.ca))
        if client_cert:
            context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
        return httpx.Client(base_url=f"https://127.0.0.1:{self.port}", verify=context, timeout=5)

    def plain(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5)


@contextmanager
def tls_gateway(server: ServerProcess, mesh: Mesh, pki: Pki, tmp_path: Path) -> Iterator[Gateway]:
    appmesh = appmesh_client(server.url)
    appmesh.create_virtual_gateway(
        meshName=mesh.name, virtualGatewayName="ingress",
        spec={"listeners": [listener(pki, "STRICT")]},
    )  # fmt: skip
    appmesh.create_gateway_route(
        meshName=mesh.name, virtualGatewayName="ingress", gatewayRouteName="all",
        spec={"httpRoute": {
            "match": {"prefix": "/"},
            "action": {"target": {"virtualService": {"virtualServiceName": mesh.service}}},
        }},
    )  # fmt: skip
    port, admin = free_port(), free_port()
    with (tmp_path / "gateway.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mapmesh", "gateway", "--control-plane", server.url,
             "--mesh", mesh.name, "--virtual-gateway", "ingress", "--port", str(port),
             "--admin-port", str(admin), "--state-dir", str(tmp_path / "state")],
            stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "MAPMESH_PROXY_SEED": "5"},
        )  # fmt: skip
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{admin}/ready").status_code == 200)
        yield Gateway(port, admin, process)
    finally:
        process.terminate()
        process.wait(timeout=15)


def set_listener(mesh: Mesh, spec_listener: dict[str, Any]) -> None:
    mesh.appmesh.update_virtual_gateway(
        meshName=mesh.name, virtualGatewayName="ingress", spec={"listeners": [spec_listener]}
    )


def answers(client: httpx.Client) -> bool:
    try:
        return client.get("/x").status_code == 200
    except httpx.HTTPError:
        return False


def last_ack(server: ServerProcess, mesh: str) -> dict[str, Any]:
    proxies = httpx.get(f"{server.url}/v1/proxies").json()["proxies"]
    gateway = next(p for p in proxies if p["mesh"] == mesh and p["name"] == "ingress")
    acks: list[dict[str, Any]] = gateway["acks"]
    return max(acks, key=lambda a: a["version"])


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


def test_gateway_terminates_tls_strict_permissive_mutual_and_refuses_bad_files(
    server: ServerProcess, sd: Any, unique: str, tmp_path: Path, pki: Pki
) -> None:
    with (
        worker_mesh(server.url, sd, unique, tmp_path, weights=(100, 0), start_proxy=False) as mesh,
        tls_gateway(server, mesh, pki, tmp_path) as gateway,
        gateway.https(pki) as https,
        gateway.https(pki, client_cert=True) as mutual,
        gateway.plain() as plain,
    ):
        # STRICT: an https client that trusts the test CA reaches the upstream through the
        # gateway; a plain-text client gets no HTTP answer at all.
        wait_for(lambda: answers(https))
        answer = https.get("/orders?id=1")
        assert answer.status_code == 200
        assert answer.json()["from"] == "v1"
        assert answer.json()["host"] == mesh.service
        with pytest.raises(httpx.HTTPError):
            plain.get("/x")

        # PERMISSIVE: the same port now takes both.
        set_listener(mesh, listener(pki, "PERMISSIVE"))
        wait_for(lambda: answers(plain))
        assert answers(https)

        # A certificate path that does not exist: the gateway refuses that snapshot, says
        # why in its acknowledgement, and keeps serving the PERMISSIVE listener it had.
        missing = {"certificateChain": str(tmp_path / "missing.pem"), "privateKey": "/nope"}
        set_listener(mesh, listener(pki, "STRICT", file=missing))
        wait_for(lambda: last_ack(server, unique)["accepted"] is False)
        ack = last_ack(server, unique)
        assert "missing.pem" in ack["error"] and "cannot read" in ack["error"]
        assert answers(plain) and answers(https)

        # Mutual TLS: with a trust file, a client must present a certificate the CA signed.
        trust = {"trust": {"file": {"certificateChain": str(pki.ca)}}}
        set_listener(mesh, listener(pki, "STRICT", validation=trust))
        wait_for(lambda: answers(mutual) and not answers(plain))
        assert not answers(https)  # no client certificate

        # DISABLED: plain text again; connections accepted under TLS are drained.
        set_listener(mesh, listener(pki, "DISABLED"))
        wait_for(lambda: answers(plain))
        wait_for(lambda: not answers(mutual), within=5)
