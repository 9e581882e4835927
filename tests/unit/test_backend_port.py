"""A local port per backend, without sockets: the config view its listener is handed.

Story: the frontend's snapshot declares worker.corp (App Mesh's walkthrough router). A
backend port for worker.corp routes by that service's routes whatever the request's host; one
for an undeclared service answers 404 with the reason; the view is rebuilt only when the config
in force changes.
"""

from __future__ import annotations

import random
import time

import pytest

from mapmesh.proxy.backend_port import BackendPortConfig, FixedBackend, parse_backend_ports
from mapmesh.proxy.config import ClusterSet, ProxyConfig, build_config
from mapmesh.proxy.route import NoRoute, RequestHead, RouteHit
from mapmesh.proxy.stats import Stats
from tests.unit.test_compiler import compile_node, resource, walkthrough_mesh

_ROUTE_WITH_PORT = {
    "httpRoute": {
        "match": {"prefix": "/admin/", "port": 8080},
        "action": {"weightedTargets": [{"virtualNode": "worker-v1", "weight": 1}]},
    }
}


def config() -> ProxyConfig:
    snap = compile_node().snapshot
    return build_config(snap, 1, ClusterSet(Stats(), time.monotonic, random.Random(1)))


def head(path: str, host: str = "127.0.0.1", port: int = 9001, **headers: str) -> RequestHead:
    return RequestHead("GET", path, host, port, headers=headers)


def test_every_request_goes_to_the_fixed_table_whatever_its_host() -> None:
    view = BackendPortConfig("worker.corp", 9001, config).view(config())
    assert isinstance(view.outbound, FixedBackend)
    for host in ("127.0.0.1", "billing.corp", ""):
        hit = view.outbound.match(head("/orders/7", host))
        assert isinstance(hit, RouteHit)
        assert (hit.virtual_service, hit.route.name) == ("worker.corp", "worker-route")


def test_routing_within_the_table_still_applies() -> None:
    port_only = resource(
        "route", "port-only", {"priority": 0, **_ROUTE_WITH_PORT}, parent="worker-router"
    )
    snap = compile_node(resources=[*walkthrough_mesh(), port_only]).snapshot
    current = build_config(snap, 1, ClusterSet(Stats(), time.monotonic, random.Random(1)))
    outbound = BackendPortConfig("worker.corp", 9001, lambda: current).view(current).outbound
    # The router's single listener port (8080) stands in for the local port 9001, so a route
    # that matches port 8080 matches as it would for http://worker.corp:8080/.
    hit = outbound.match(head("/admin/users", port=9001))
    assert isinstance(hit, RouteHit) and hit.route.name == "port-only"
    other = outbound.match(head("/orders", port=9001))
    assert isinstance(other, RouteHit) and other.route.name == "worker-route"


def test_an_undeclared_service_answers_404_naming_the_reason() -> None:
    outbound = BackendPortConfig("billing.corp", 9002, config).view(config()).outbound
    miss = outbound.match(head("/"))
    assert isinstance(miss, NoRoute)
    assert (miss.status, miss.flag, miss.egress_allowed) == (404, "NR", False)
    assert miss.reason == (
        "billing.corp is not a declared backend of this node (local port 9002 is configured for it)"
    )


def test_the_view_follows_the_config_in_force_and_is_built_once_per_config() -> None:
    current: list[ProxyConfig | None] = [None]
    getter = BackendPortConfig("Worker.Corp", 9001, lambda: current[0])
    assert getter() is None  # no snapshot yet: the listener answers 503 "no configuration"
    current[0] = first = config()
    view = getter()
    assert view is not None and view is getter()
    assert (view.version, view.clusters, view.retry_policies) == (
        first.version,
        first.clusters,
        first.retry_policies,
    )
    current[0] = config()
    assert getter() is not view


def test_backend_port_flags_parse_and_name_the_bad_value() -> None:
    assert parse_backend_ports(["worker.corp=9001", " Billing.Corp = 9002 "]) == {
        "worker.corp": 9001,
        "billing.corp": 9002,
    }
    for bad, message in [
        ("worker.corp", "expects VIRTUAL_SERVICE=PORT"),
        ("=9001", "expects VIRTUAL_SERVICE=PORT"),
        ("worker.corp=http", "expects VIRTUAL_SERVICE=PORT"),
        ("worker.corp=70000", "port must be 1-65535"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_backend_ports([bad])
    with pytest.raises(ValueError, match=r"worker\.corp is given twice"):
        parse_backend_ports(["worker.corp=9001", "worker.corp=9002"])
    with pytest.raises(ValueError, match="port 9001 is given twice"):
        parse_backend_ports(["worker.corp=9001", "billing.corp=9001"])
