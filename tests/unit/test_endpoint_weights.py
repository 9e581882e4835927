"""Endpoint weights: a Cloud Map attribute, through the snapshot, to the load balancer.

Story: worker-v1 has two usable instances; one registers ``MAPMESH_WEIGHT=3``. The compiled
endpoint carries weight 3, the encoding of endpoints without a weight is what it always was,
``explain`` shows the weight, a bad value is a warning rather than a failed compile, and the
cluster runtime's load balancer sends three picks in four to the heavy endpoint.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from mapmesh.model.plain import RecordError, to_json
from mapmesh.model.plain import decode as decode_record
from mapmesh.model.registry import HealthStatus
from mapmesh.model.snapshot import Cluster, Endpoint, decode, encode
from mapmesh.proxy.cluster import ClusterRuntime
from mapmesh.proxy.pool import EndpointKey
from mapmesh.proxy.stats import Stats
from mapmesh.xds import WarningCode, explain, render_text
from mapmesh.xds.endpoints import InvalidWeight, endpoint_weight
from tests.unit.test_compiler import FakeRegistry, compile_node, instance, walkthrough_registry

HEAVY = EndpointKey("10.0.0.1", 8080)
LIGHT = EndpointKey("10.0.0.5", 8080)


def weighted_registry(weight: str | None) -> FakeRegistry:
    registry = walkthrough_registry()
    attributes = {"version": "v1", "AWS_INSTANCE_IPV4": "10.0.0.1", "AWS_INSTANCE_PORT": "8080"}
    if weight is not None:
        attributes["MAPMESH_WEIGHT"] = weight
    registry.instances["srv-worker"]["i-1"] = instance(
        "i-1", "srv-worker", HealthStatus.HEALTHY, **attributes
    )
    return registry


def worker_v1(weight: str | None) -> tuple[Cluster, list[str]]:
    registry = weighted_registry(weight)
    result = compile_node(registry=registry)
    cluster = result.snapshot.cluster("demo/worker-v1:8080")
    assert cluster is not None
    weight_warnings = [w.message for w in result.warnings if w.code == WarningCode.INVALID_WEIGHT]
    return cluster, weight_warnings


# -- compiling -------------------------------------------------------------------------------


def test_the_weight_attribute_becomes_the_endpoint_weight() -> None:
    cluster, warnings = worker_v1("3")
    assert [(e.instance_id, e.weight) for e in cluster.endpoints] == [
        ("i-1", 3),
        ("i-2", None),
        ("i-5", None),
    ]
    assert warnings == []


@pytest.mark.parametrize("raw", ["0", "129", "-1", "2.5", "heavy", "", "\uff13"])
def test_an_invalid_weight_is_ignored_with_a_warning(raw: str) -> None:
    cluster, warnings = worker_v1(raw)
    assert [e.weight for e in cluster.endpoints] == [None, None, None]
    (message,) = warnings
    assert "instance 'i-1'" in message
    assert "MAPMESH_WEIGHT" in message and "1 to 128" in message


def test_weight_parsing_bounds() -> None:
    assert endpoint_weight(None) is None
    assert endpoint_weight("1") == 1
    assert endpoint_weight(" 128 ") == 128
    assert isinstance(endpoint_weight("129"), InvalidWeight)


# -- the wire format -------------------------------------------------------------------------


def test_unweighted_endpoints_encode_as_before() -> None:
    """No ``weight`` key at all when none is set: digests of existing snapshots hold."""
    cluster, _ = worker_v1(None)
    snapshot = compile_node(registry=weighted_registry(None)).snapshot
    data = json.loads(encode(snapshot))
    for encoded in data["clusters"]:
        for endpoint in encoded["endpoints"]:
            assert set(endpoint) == {"address", "port", "health", "instance_id"}
    assert encode(decode(encode(snapshot))) == encode(snapshot)
    assert to_json(cluster.endpoints[0]) == {
        "address": "10.0.0.1",
        "port": 8080,
        "health": "HEALTHY",
        "instance_id": "i-1",
    }


def test_weighted_endpoints_round_trip() -> None:
    snapshot = compile_node(registry=weighted_registry("3")).snapshot
    data = encode(snapshot)
    assert b'"weight":3' in data
    assert decode(data) == snapshot
    assert encode(decode(data)) == data


@pytest.mark.parametrize("weight", [0, 129])
def test_a_snapshot_with_an_out_of_range_weight_does_not_decode(weight: int) -> None:
    with pytest.raises(RecordError, match="weight"):
        decode_record(
            Endpoint, {"address": "10.0.0.1", "port": 80, "health": "HEALTHY", "weight": weight}
        )


# -- explain ---------------------------------------------------------------------------------


def test_explain_shows_endpoint_weights() -> None:
    result = compile_node(registry=weighted_registry("3"))
    document = explain(result.snapshot, result.warnings)
    (backend,) = document["backends"]
    upstream = backend["routes"][0]["targets"][0]["upstream"]
    assert [e["weight"] for e in upstream["endpoints"]] == [
        {"value": 3, "source": "configured"},
        {"value": 1, "source": "default"},
        {"value": 1, "source": "default"},
    ]
    text = render_text(document)
    assert "10.0.0.1:8080 HEALTHY weight 3 (i-1)" in text
    assert "10.0.0.5:8080 HEALTHY (i-5)" in text


def test_explain_lists_the_invalid_weight_warning() -> None:
    result = compile_node(registry=weighted_registry("lots"))
    text = render_text(explain(result.snapshot, result.warnings))
    assert "INVALID_WEIGHT" in text
    assert "MAPMESH_WEIGHT='lots'" in text


# -- the cluster runtime ---------------------------------------------------------------------


def runtime(weight: str | None) -> ClusterRuntime:
    cluster, _ = worker_v1(weight)
    return ClusterRuntime(cluster, Stats(), lambda: 0.0)


def test_the_runtime_balances_by_weight() -> None:
    cluster = runtime("3")
    try:
        # i-2 is registry-unhealthy: only the heavy and the light endpoint take picks.
        picks = Counter(cluster.pick() for _ in range(400))
        assert picks == {HEAVY: 300, LIGHT: 100}
        state = cluster.snapshot_state()
        assert [(e["address"], e["weight"]) for e in state["endpoints"]] == [
            ("10.0.0.1", 3),
            ("10.0.0.2", 1),
            ("10.0.0.5", 1),
        ]
    finally:
        cluster.close()


def test_a_weight_change_is_reconciled_in_place() -> None:
    cluster = runtime(None)
    try:
        assert Counter(cluster.pick() for _ in range(100)) == {HEAVY: 50, LIGHT: 50}
        weighted, _ = worker_v1("4")
        pool = cluster.pool
        cluster.update(weighted)
        assert cluster.pool is pool  # same policies: same runtime, same pool
        assert Counter(cluster.pick() for _ in range(100)) == {HEAVY: 80, LIGHT: 20}
        cluster.update(worker_v1(None)[0])
        assert Counter(cluster.pick() for _ in range(100)) == {HEAVY: 50, LIGHT: 50}
    finally:
        cluster.close()
