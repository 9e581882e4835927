"""App file → App Mesh resources, Cloud Map entries and each replica's launch (no I/O)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mapmesh.cli.meshfile import MeshFileError
from mapmesh.runner.appfile import parse
from mapmesh.runner.derive import OWNER_TAG, derive, duration, to_documents
from mapmesh.runner.launch import app_environment, launch_specs, url_variable
from tests.unit.test_runner_appfile import SPEC_EXAMPLE


def documents(text: str, ready: set[str] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    derived = derive(parse(text), ready)
    return {(d["kind"], d["name"]): d for d in derived.documents}


def test_the_example_becomes_a_mesh_with_four_resource_kinds_per_service() -> None:
    derived = derive(parse(SPEC_EXAMPLE))
    assert (derived.mesh, derived.namespace) == ("social", "social.local")
    assert derived.cloud_map_services == ("frontend", "auth", "worker")
    labels = [(d["kind"], d.get("virtualRouter") or d.get("virtualGateway"), d["name"])
              for d in derived.documents]  # fmt: skip
    assert labels == [
        ("Mesh", None, "social"),
        ("VirtualNode", None, "frontend"),
        ("VirtualNode", None, "auth"),
        ("VirtualNode", None, "worker-v1"),
        ("VirtualNode", None, "worker-v2"),
        ("VirtualRouter", None, "frontend"),
        ("Route", "frontend", "default"),
        ("VirtualService", None, "frontend.social.local"),
        ("VirtualRouter", None, "auth"),
        ("Route", "auth", "default"),
        ("VirtualService", None, "auth.social.local"),
        ("VirtualRouter", None, "worker"),
        ("Route", "worker", "default"),
        ("VirtualService", None, "worker.social.local"),
        ("VirtualGateway", None, "gateway"),
        ("GatewayRoute", "gateway", "to-frontend"),
    ]
    assert all(d["tags"] == {OWNER_TAG: "social"} for d in derived.documents)
    # The App Mesh API model accepts every one of them (what `mapmesh apply` checks).
    assert len(to_documents(derived, "app.yaml (derived)")) == len(labels)


def test_a_node_carries_discovery_backends_and_listener_policies() -> None:
    spec = documents(SPEC_EXAMPLE)[("VirtualNode", "frontend")]["spec"]
    assert spec == {
        "listeners": [
            {
                "portMapping": {"port": 8080, "protocol": "http"},
                "healthCheck": {"protocol": "http", "path": "/health", "intervalMillis": 5000,
                                "timeoutMillis": 2000, "healthyThreshold": 2,
                                "unhealthyThreshold": 2},
                "connectionPool": {"http": {"maxConnections": 50, "maxPendingRequests": 10}},
                "outlierDetection": {"maxServerErrors": 5, "interval": {"unit": "s", "value": 10},
                                     "baseEjectionDuration": {"unit": "s", "value": 30},
                                     "maxEjectionPercent": 50},
                "timeout": {"http": {"perRequest": {"unit": "s", "value": 15}}},
            }
        ],
        "serviceDiscovery": {
            "awsCloudMap": {"namespaceName": "social.local", "serviceName": "frontend"}
        },
        "backends": [
            {"virtualService": {"virtualServiceName": "auth.social.local"}},
            {"virtualService": {"virtualServiceName": "worker.social.local"}},
        ],
    }  # fmt: skip


def test_versions_are_nodes_told_apart_by_an_attribute_and_weighted_by_the_route() -> None:
    resources = documents(SPEC_EXAMPLE)
    discovery = resources[("VirtualNode", "worker-v2")]["spec"]["serviceDiscovery"]
    assert discovery == {"awsCloudMap": {
        "namespaceName": "social.local", "serviceName": "worker",
        "attributes": [{"key": "version", "value": "v2"}]}}  # fmt: skip
    route = resources[("Route", "default")]  # the last one: worker's
    assert route["virtualRouter"] == "worker"
    assert route["spec"] == {"httpRoute": {
        "match": {"prefix": "/"},
        "action": {"weightedTargets": [{"virtualNode": "worker-v1", "weight": 90},
                                       {"virtualNode": "worker-v2", "weight": 10}]}}}  # fmt: skip
    service = resources[("VirtualService", "worker.social.local")]["spec"]
    assert service == {"provider": {"virtualRouter": {"virtualRouterName": "worker"}}}


def test_routes_name_only_versions_that_can_answer() -> None:
    def targets(ready: set[str] | None) -> list[str]:
        route = next(
            d for d in derive(parse(SPEC_EXAMPLE), ready).documents
            if d["kind"] == "Route" and d["virtualRouter"] == "worker"
        )  # fmt: skip
        return [t["virtualNode"] for t in route["spec"]["httpRoute"]["action"]["weightedTargets"]]

    assert targets(None) == ["worker-v1", "worker-v2"]
    assert targets({"worker-v1"}) == ["worker-v1"]  # v2 is still starting, or is down
    assert targets({"frontend"}) == ["worker-v1", "worker-v2"]  # none ready: keep them all


def test_retries_and_timeout_go_on_the_route() -> None:
    route = next(
        d for d in derive(parse(SPEC_EXAMPLE)).documents
        if d["kind"] == "Route" and d["virtualRouter"] == "frontend"
    )  # fmt: skip
    http = route["spec"]["httpRoute"]
    assert http["retryPolicy"] == {
        "maxRetries": 2, "perRetryTimeout": {"unit": "s", "value": 2},
        "httpRetryEvents": ["gateway-error"], "tcpRetryEvents": ["connection-error"],
    }  # fmt: skip
    assert http["timeout"] == {"perRequest": {"unit": "s", "value": 15}}


def test_health_checks_are_clamped_to_what_app_mesh_accepts() -> None:
    text = "app: a\nservices:\n  web: {command: x, health: {interval: 200ms, timeout: 100ms}}\n"
    check = documents(text)[("VirtualNode", "web")]["spec"]["listeners"][0]["healthCheck"]
    assert (check["intervalMillis"], check["timeoutMillis"]) == (5000, 2000)
    tcp = "app: a\nservices:\n  db: {command: x, health: {tcp: true}}\n"
    check = documents(tcp)[("VirtualNode", "db")]["spec"]["listeners"][0]["healthCheck"]
    assert check["protocol"] == "tcp" and "path" not in check


def test_gateway_routes_keep_file_order_as_priority_and_map_rewrites() -> None:
    text = (
        "app: a\ngateway:\n  port: 9000\n  routes:\n"
        "    - {prefix: /api/, service: api, rewrite: false}\n"
        "    - {prefix: /v1/, service: api, rewrite: /v2/}\n"
        "    - {prefix: /, service: web}\n"
        "services:\n  api: {command: x}\n  web: {command: y}\n"
    )
    derived = derive(parse(text))
    gateway = next(d for d in derived.documents if d["kind"] == "VirtualGateway")
    assert gateway["spec"] == {"listeners": [{"portMapping": {"port": 9000, "protocol": "http"}}]}
    routes = [d for d in derived.documents if d["kind"] == "GatewayRoute"]
    assert [(r["name"], r["spec"]["priority"]) for r in routes] == [
        ("to-api", 0), ("to-api-2", 1), ("to-web", 2),
    ]  # fmt: skip
    actions = [r["spec"]["httpRoute"]["action"] for r in routes]
    assert actions[0]["rewrite"] == {"prefix": {"defaultPrefix": "DISABLED"}}
    assert actions[1]["rewrite"] == {"prefix": {"value": "/v2/"}}
    assert "rewrite" not in actions[2]  # App Mesh's default: the matched prefix becomes /
    assert actions[2]["target"] == {"virtualService": {"virtualServiceName": "web.a.local"}}
    to_documents(derived, "app.yaml")


def test_what_app_mesh_refuses_is_caught_before_anything_runs() -> None:
    rewrite = "/" + "x" * 300  # App Mesh takes at most 255 characters
    text = f"app: a\ngateway:\n  routes: [{{prefix: /, service: web, rewrite: {rewrite}}}]\n"
    text += "services:\n  web: {command: x}\n"
    with pytest.raises(MeshFileError) as caught:
        to_documents(derive(parse(text)), "app.yaml")
    assert "spec.httpRoute.action.rewrite.prefix.value" in caught.value.message


@pytest.mark.parametrize(
    ("seconds", "wire"),
    [(2.0, {"unit": "s", "value": 2}), (0.5, {"unit": "ms", "value": 500}),
     (1.25, {"unit": "ms", "value": 1250})],
)  # fmt: skip
def test_durations_on_the_wire(seconds: float, wire: dict[str, Any]) -> None:
    assert duration(seconds) == wire


def test_each_replica_gets_its_port_its_sidecar_as_proxy_and_its_backends_urls(
    tmp_path: Path,
) -> None:
    specs = launch_specs(parse(SPEC_EXAMPLE), tmp_path)
    assert list(specs) == ["frontend", "auth", "worker-v1", "worker-v2"]
    frontend = specs["frontend"]
    assert frontend.cwd == str(tmp_path)
    env = app_environment(frontend, 3, 41000, 42000, {"HOME": "/home/me", "GREETING": "old"})
    assert env == {
        "HOME": "/home/me",
        "GREETING": "hi",  # the file wins over the inherited environment
        "AUTH_URL": "http://auth.social.local",
        "WORKER_URL": "http://worker.social.local",
        "PORT": "41000",
        "HTTP_PROXY": "http://127.0.0.1:42000",
        "http_proxy": "http://127.0.0.1:42000",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "MAPMESH_SERVICE": "frontend",
        "MAPMESH_VERSION": "",
        "MAPMESH_REPLICA": "3",
    }
    worker = app_environment(specs["worker-v2"], 1, 1, 2, {"PATH": "/usr/bin"}, "/venv/bin")
    assert worker["PATH"] == "/venv/bin:/usr/bin"  # `python` is the runner's interpreter
    assert (worker["MAPMESH_VERSION"], worker["WORKER_VERSION"]) == ("v2", "v2")
    assert url_variable("user-db") == "USER_DB_URL"


def test_a_replica_is_replaced_exactly_when_its_launch_changes(tmp_path: Path) -> None:
    before = launch_specs(parse(SPEC_EXAMPLE), tmp_path)
    reweighted = launch_specs(parse(SPEC_EXAMPLE.replace("weight: 90", "weight: 80")), tmp_path)
    assert reweighted == before  # a route change: no replica restarts
    rescaled = launch_specs(parse(SPEC_EXAMPLE.replace("replicas: 2", "replicas: 5")), tmp_path)
    assert rescaled == before  # more replicas of the same thing
    greeted = launch_specs(parse(SPEC_EXAMPLE.replace("GREETING: hi", "GREETING: yo")), tmp_path)
    assert [n for n in before if before[n] != greeted[n]] == ["frontend"]


def test_the_egress_filter_is_the_mesh_s() -> None:
    mesh = documents("app: a\nservices:\n  web: {command: x}\n")[("Mesh", "a")]
    assert mesh["spec"] == {"egressFilter": {"type": "DROP_ALL"}}
    text = "app: a\negressFilter: ALLOW_ALL\nservices:\n  web: {command: x}\n"
    assert documents(text)[("Mesh", "a")]["spec"] == {"egressFilter": {"type": "ALLOW_ALL"}}
