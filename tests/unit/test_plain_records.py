"""Snapshot records decoded from JSON: every value checked against its type hint, with the path
of the first one that does not fit (:mod:`mapmesh.model.plain`)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mapmesh.model import snapshot
from mapmesh.model.plain import RecordError, to_json
from mapmesh.model.plain import decode as decode_record
from tests.unit.test_compiler import compile_node


def encoded() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(snapshot.encode(compile_node().snapshot))
    return data


def test_a_compiled_snapshot_decodes_to_an_equal_value_and_the_same_bytes() -> None:
    original = compile_node().snapshot
    data = snapshot.encode(original)
    decoded = snapshot.decode(data)
    assert decoded == original and hash(decoded) == hash(original)
    assert snapshot.encode(decoded) == data
    assert snapshot.decode(json.loads(data)) == original  # a parsed object too


def cluster(data: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = data["clusters"][0]
    return first


def endpoint(data: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = cluster(data)["endpoints"][0]
    return first


CL = r"clusters\[0\]"
EP = r"clusters\[0\]\.endpoints\[0\]"
BAD_VALUES = [
    (lambda d: cluster(d).update(port="8080"), CL + r"\.port: expected an integer, got '8080'"),
    (lambda d: cluster(d).update(port=True), CL + r"\.port: expected an integer, got True"),
    (lambda d: d.update(kind="router"), r"kind: expected one of 'virtualNode', 'virtualGateway'"),
    (lambda d: endpoint(d).update(zone="a"), EP + r": unknown field 'zone'"),
    (lambda d: endpoint(d).pop("address"), EP + r"\.address: missing"),
    (lambda d: endpoint(d).update(weight=0), EP + r": endpoint weight must be 1 to 128"),
    (lambda d: d.update(listeners={}), r"listeners: expected a list"),
    (lambda d: cluster(d)["discovery"].update(attributes=[["a"]]), r"\[0\]: expected a list of 2"),
    (lambda d: d.update(access_log="x"), r"access_log: expected an object \(AccessLog\)"),
]


@pytest.mark.parametrize(("change", "message"), BAD_VALUES)
def test_a_value_that_does_not_fit_is_refused_with_its_path(change: Any, message: str) -> None:
    data = encoded()
    change(data)
    with pytest.raises(RecordError, match=message):
        snapshot.decode(json.dumps(data))


def test_invalid_json_is_refused_as_a_record_error() -> None:
    with pytest.raises(RecordError, match="invalid JSON"):
        snapshot.decode(b"{not json")


def test_optional_fields_take_their_defaults_and_none_fields_may_be_left_out() -> None:
    endpoint = decode_record(
        snapshot.Endpoint, {"address": "10.0.0.1", "port": 80, "health": "HEALTHY"}
    )
    assert endpoint.instance_id is None and endpoint.weight is None
    assert to_json(endpoint) == {
        "address": "10.0.0.1",
        "port": 80,
        "health": "HEALTHY",
        "instance_id": None,
    }
    weighted = decode_record(snapshot.Endpoint, {**to_json(endpoint), "weight": 3})
    assert to_json(weighted)["weight"] == 3
    match = decode_record(snapshot.RouteMatch, {})
    assert match.path == snapshot.PathMatch(kind="prefix", value="/")


def test_exclusions_apply_to_the_record_itself_not_to_nested_ones() -> None:
    cluster = compile_node().snapshot.clusters[0]
    shown = to_json(cluster, exclude={"defaulted"})
    assert "defaulted" not in shown and "defaulted" in shown["connection_pool"]


def test_records_are_built_in_code_with_their_constraints() -> None:
    with pytest.raises(ValueError, match="weight"):
        snapshot.Endpoint(address="10.0.0.1", port=80, health="HEALTHY", weight=500)
