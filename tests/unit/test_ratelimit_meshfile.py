"""The rateLimit extension in mesh files: written inside the spec, split off before the App
Mesh model sees it, compared like the spec, and put back for diffs and ``get -o yaml``."""

from __future__ import annotations

import pytest

from mapmesh.cli.meshfile import (
    Action,
    MeshFileError,
    document_from_data,
    merge_extensions,
    parse,
    plan,
    split_extensions,
)
from mapmesh.mesh.kinds import KINDS

NODE = """\
kind: VirtualNode
mesh: demo
name: worker
spec:
  listeners:
    - portMapping: {port: 8080, protocol: http}
      rateLimit: {requestsPerUnit: 50, unit: second}
    - portMapping: {port: 9090, protocol: http}
"""

ROUTE = """\
kind: GatewayRoute
mesh: demo
virtualGateway: ingress
name: api
spec:
  httpRoute:
    match: {prefix: /api/}
    action: {target: {virtualService: {virtualServiceName: worker.corp}}}
  rateLimit: {requestsPerUnit: 100, unit: minute, burst: 10}
"""


def test_the_extension_is_split_off_the_spec() -> None:
    (node,) = parse(NODE, "mesh.yaml")
    assert "rateLimit" not in str(node.spec)
    assert node.extensions == {
        "listeners": [{"port": 8080, "rateLimit": {"requestsPerUnit": 50, "unit": "second"}}]
    }
    (route,) = parse(ROUTE, "mesh.yaml")
    assert set(route.spec) == {"httpRoute"}
    assert route.extensions == {
        "rateLimit": {"requestsPerUnit": 100, "unit": "minute", "burst": 10}
    }


def test_split_and_merge_are_inverse() -> None:
    written = {
        "listeners": [
            {"portMapping": {"port": 8080}, "rateLimit": {"requestsPerUnit": 1, "unit": "second"}},
            {"portMapping": {"port": 9090}},
        ]
    }
    spec, extensions = split_extensions("virtualNode", written)
    assert merge_extensions("virtualNode", spec, extensions) == written
    # Kinds without extensions keep the member (the App Mesh model then refuses it).
    assert split_extensions("virtualGateway", written) == (written, {})


def test_errors_point_at_the_rate_limit_written() -> None:
    bad = NODE.replace("unit: second", "unit: hour")
    with pytest.raises(MeshFileError) as caught:
        parse(bad, "mesh.yaml")
    assert caught.value.line == 7
    assert "spec.listeners[0].rateLimit.unit" in caught.value.message
    assert "mapmesh extension" in caught.value.message
    gateway = "kind: VirtualGateway\nmesh: demo\nname: ingress\nspec:\n  listeners:\n"
    gateway += "    - portMapping: {port: 8080, protocol: http}\n      rateLimit: {}\n"
    with pytest.raises(MeshFileError, match="GatewayRoute's spec or a VirtualNode's listeners"):
        parse(gateway, "mesh.yaml")


def test_plan_compares_extensions_and_the_diff_shows_them_in_place() -> None:
    (route,) = parse(ROUTE, "mesh.yaml")
    live = dict(route.spec)
    same = plan(route, live, None, route.extensions)
    assert same.action is Action.UNCHANGED
    changed = plan(route, live, None, {"rateLimit": {"requestsPerUnit": 5, "unit": "minute"}})
    assert changed.action is Action.UPDATE
    assert changed.extensions_changed and not changed.spec_changed
    diff = changed.diff()
    assert (
        "\n   rateLimit:\n-    requestsPerUnit: 5\n+    burst: 10\n+    requestsPerUnit: 100\n"
        in diff
    )
    # Removing the block from the file removes the live limit.
    (bare,) = parse(
        ROUTE.replace("  rateLimit: {requestsPerUnit: 100, unit: minute, burst: 10}\n", ""), "f"
    )
    assert plan(bare, live, None, route.extensions).extensions_changed


def test_get_yaml_writes_the_extension_back_into_the_spec() -> None:
    (route,) = parse(ROUTE, "mesh.yaml")
    data = {
        "meshName": "demo",
        "virtualGatewayName": "ingress",
        "gatewayRouteName": "api",
        "spec": route.spec,
    }
    document = document_from_data(KINDS["gatewayRoute"], data, None, route.extensions)
    assert document["spec"]["rateLimit"] == {"requestsPerUnit": 100, "unit": "minute", "burst": 10}
