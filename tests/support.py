"""Test helpers: a real control-plane process on loopback, and clients for it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ServerProcess", "free_port", "running_server", "servicediscovery_client"]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free for TCP and UDP at once (DNS needs both on one number)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    dns_port: int
    data_dir: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_ready(server: ServerProcess, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            if httpx.get(server.url + "/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server not ready in {timeout}s:\n{server.log()}")


def start_server(data_dir: Path, *extra: str, port: int | None = None) -> ServerProcess:
    port = port or free_port()
    dns_port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"server-{port}.log"
    args = [
        sys.executable,
        "-m",
        "mapmesh",
        "server",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        "--dns-port",
        str(dns_port),
        "--health-interval",
        "0.2",
        "--health-timeout",
        "0.1",
        *extra,
    ]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess(process, port, dns_port, data_dir, log_path)
    try:
        _wait_ready(server)
    except Exception:
        process.kill()
        raise
    return server


def stop_server(server: ServerProcess, sig: int = signal.SIGTERM) -> int:
    if server.process.poll() is None:
        server.process.send_signal(sig)
    try:
        return server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        raise


@contextmanager
def running_server(data_dir: Path, *extra: str) -> Iterator[ServerProcess]:
    server = start_server(data_dir, *extra)
    try:
        yield server
    finally:
        stop_server(server)


def servicediscovery_client(url: str, region: str = "us-east-1") -> Any:
    import boto3
    from botocore.config import Config

    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    return boto3.client(
        "servicediscovery",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(inject_host_prefix=False, retries={"max_attempts": 1}),
    )
