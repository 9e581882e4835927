"""The connect timeout: a proxy setting that reaches every cluster's pool.

Story: ``--connect-timeout`` is validated by the CLI, carried by ``ProxyOptions`` into the
``ClusterSet``, which builds every cluster runtime (snapshot clusters, passthrough clusters
and the inbound one) with it. A connect to a real loopback port that never completes its
handshake then fails after that many seconds as a connect failure ("connect timeout"), counted
as one, with its circuit-breaker slots given back.
"""

from __future__ import annotations

import random
import time

import pytest

from mapmesh.cli import proxy_commands
from mapmesh.model import snapshot
from mapmesh.proxy.config import ClusterSet
from mapmesh.proxy.pool import EndpointKey
from mapmesh.proxy.process import ProxyOptions, ProxyProcess
from mapmesh.proxy.stats import Stats
from mapmesh.proxy.telemetry.runtime import DEFAULT_SAMPLING
from mapmesh.proxy.telemetry.tracing import DEFAULT_RATE_LIMIT
from mapmesh.proxy.upstream import UpstreamFailure
from tests.integration.sidecar_support import hanging_listener

POOL = snapshot.ConnectionPool(max_connections=4, max_pending_requests=4, max_requests=4)


def cluster(port: int) -> snapshot.Cluster:
    return snapshot.Cluster(
        name="demo/worker:8080",
        virtual_node="worker",
        port=8080,
        protocol="http",
        lb_policy="round_robin",
        connection_pool=POOL,
        outlier_detection=None,
        health_check=None,
        discovery=snapshot.Discovery(kind="none", ip_preference="IPv4_PREFERRED"),
        endpoints=(snapshot.Endpoint(address="127.0.0.1", port=port, health="HEALTHY"),),
    )


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan")])
def test_a_connect_timeout_must_be_positive(seconds: float) -> None:
    with pytest.raises(ValueError, match="connect_timeout: must be > 0 seconds"):
        ClusterSet(Stats(), time.monotonic, random.Random(1), connect_timeout=seconds)


async def test_a_hanging_connect_fails_after_the_configured_timeout() -> None:
    stats = Stats()
    clusters = ClusterSet(stats, time.monotonic, random.Random(1), connect_timeout=0.2)
    with hanging_listener() as port:
        runtime = clusters.reconcile((cluster(port),))["demo/worker:8080"]
        started = time.monotonic()
        with pytest.raises(UpstreamFailure) as failure:
            await runtime.pool.acquire(EndpointKey("127.0.0.1", port))
        elapsed = time.monotonic() - started
    clusters.close()
    assert 0.15 <= elapsed < 2.0, elapsed
    assert (failure.value.kind, failure.value.detail) == ("connect", "connect timeout after 0.2s")
    assert stats.get("upstream_cx_connect_fail", (("cluster", "demo/worker:8080"),)) == 1
    breaker = runtime.breaker.statistics()
    assert (breaker.connections, breaker.active_requests, breaker.pending_requests) == (0, 0, 0)


async def test_passthrough_clusters_use_the_timeout_too() -> None:
    clusters = ClusterSet(Stats(), time.monotonic, random.Random(1), connect_timeout=0.2)
    with hanging_listener() as port:
        runtime = clusters.passthrough("127.0.0.1", port)
        with pytest.raises(UpstreamFailure, match=r"connect timeout after 0\.2s"):
            await runtime.pool.acquire(EndpointKey("127.0.0.1", port))
    clusters.close()


def test_the_proxy_process_threads_its_option_to_the_clusters() -> None:
    options = ProxyOptions("http://127.0.0.1:1", "demo", "virtualNode", "n", connect_timeout=0.7)
    process = ProxyProcess(options)
    assert process._clusters.connect_timeout == 0.7
    assert ProxyProcess(ProxyOptions("u", "m", "virtualNode", "n"))._clusters.connect_timeout == 5


@pytest.mark.parametrize("command", ["proxy", "gateway"])
@pytest.mark.parametrize("value", ["0", "-2"])
def test_the_cli_refuses_a_timeout_that_is_not_positive(
    command: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    identity = (
        ["--virtual-node", "n", "--app-port", "8080"]
        if command == "proxy"
        else ["--virtual-gateway", "g"]
    )
    with pytest.raises(SystemExit) as exited:
        proxy_commands.main(
            [command, "--control-plane", "http://127.0.0.1:1", "--mesh", "m", *identity,
             "--connect-timeout", value]
        )  # fmt: skip
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "argument --connect-timeout: must be more than 0 seconds" in error


def test_the_cli_defaults_are_the_processs() -> None:
    """The data-plane CLI repeats two defaults so that --help imports no proxy module."""
    assert proxy_commands.DEFAULT_SAMPLING == DEFAULT_SAMPLING
    assert proxy_commands.DEFAULT_RATE_LIMIT == DEFAULT_RATE_LIMIT
    defaults = proxy_commands.build_parser().parse_args(
        ["gateway", "--control-plane", "u", "--mesh", "m", "--virtual-gateway", "g"]
    )
    assert defaults.trace_sampling == ProxyOptions("u", "m", "virtualGateway", "g").trace_sampling
