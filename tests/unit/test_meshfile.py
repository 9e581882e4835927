"""Mesh files without a server: parsing, dependency order, planning and diffs."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest

from mapmesh.cli.meshfile import (
    APPLY_ORDER,
    Action,
    Document,
    MeshFileError,
    apply_order,
    check_unique,
    delete_order,
    document_from_data,
    dump_documents,
    field_path,
    normalized_spec,
    parse,
    plan,
    tags_from_wire,
    tags_to_wire,
)
from mapmesh.mesh.kinds import KINDS, ResourceId

WALKTHROUGH = Path(__file__).parents[2] / "examples" / "walkthrough-mesh.yaml"

NODE = """\
kind: VirtualNode
mesh: demo
name: worker-v1
spec:
  listeners:
    - portMapping: {port: 8080, protocol: http}
  serviceDiscovery:
    dns: {hostname: worker.local}
"""

ROUTE = """\
kind: Route
mesh: demo
virtualRouter: worker
name: split
spec:
  httpRoute:
    match: {prefix: /}
    action:
      weightedTargets:
        - {virtualNode: worker-v1, weight: 90}
        - {virtualNode: worker-v2, weight: 10}
"""


def one(text: str) -> Document:
    (document,) = parse(text, "mesh.yaml")
    return document


def refused(text: str) -> MeshFileError:
    with pytest.raises(MeshFileError) as caught:
        parse(text, "mesh.yaml")
    return caught.value


def live(document: Document, version: int = 1) -> dict[str, Any]:
    """What the server would answer for ``document`` (its ``<Kind>Data``)."""
    kind = KINDS[document.id.kind]
    data: dict[str, Any] = {
        "meshName": document.id.mesh,
        "spec": normalized_spec(kind.name, copy.deepcopy(document.spec)),
        "metadata": {"arn": "arn:x", "version": version},
        "status": {"status": "ACTIVE"},
    }
    data[kind.name_field] = document.id.name
    if kind.parent_field:
        data[kind.parent_field] = document.id.parent
    return data


# -- parsing ------------------------------------------------------------------------------


def test_the_walkthrough_file_parses_into_its_ten_resources() -> None:
    documents = parse(WALKTHROUGH.read_text(), "walkthrough.yaml")

    assert [d.label for d in documents] == [
        "Mesh demo",
        "VirtualNode demo/frontend",
        "VirtualNode demo/worker-v1",
        "VirtualNode demo/worker-v2",
        "VirtualRouter demo/worker",
        "Route demo/worker/worker-split",
        "VirtualService demo/worker.corp",
        "VirtualService demo/frontend.corp",
        "VirtualGateway demo/ingress",
        "GatewayRoute demo/ingress/to-frontend",
    ]
    mesh, route = documents[0], documents[5]
    assert mesh.id == ResourceId("mesh", "demo", None, "demo")
    assert mesh.tags == {"team": "core"}
    assert route.id == ResourceId("route", "demo", "worker", "worker-split")
    assert route.tags is None
    retry = route.spec["httpRoute"]["retryPolicy"]
    assert retry["maxRetries"] == 2
    assert retry["httpRetryEvents"] == ["server-error", "gateway-error"]
    # every document knows where it starts (the comment block comes first)
    assert [d.source.index for d in documents] == list(range(1, 11))
    assert mesh.source.line > 1
    assert WALKTHROUGH.read_text().splitlines()[route.source.line - 1] == "kind: Route"


def test_fields_are_traced_back_to_their_lines() -> None:
    route = one("# a comment\n" + ROUTE)

    assert route.source.line == 2
    assert route.line_of("spec.httpRoute.action.weightedTargets[1]") == 12
    assert route.line_of("spec.httpRoute.action.weightedTargets[1].virtualNode") == 12
    assert route.line_of("spec.httpRoute.match.prefix") == 8
    # a member the file does not have points at its nearest ancestor, then at the document
    assert route.line_of("spec.httpRoute.retryPolicy.maxRetries") == route.line_of("spec.httpRoute")
    assert route.line_of("nothing.here") == 2
    assert route.line_of(None) == 2


def test_empty_documents_are_skipped_and_indexes_count_them() -> None:
    documents = parse("---\n" + NODE + "---\n---\n" + ROUTE + "---\n", "m.yaml")

    assert [d.id.kind for d in documents] == ["virtualNode", "route"]
    assert [d.source.index for d in documents] == [1, 3]


def test_a_mesh_document_needs_only_a_name() -> None:
    mesh = one("kind: Mesh\nname: demo\n")

    assert mesh.id == ResourceId("mesh", "demo", None, "demo")
    assert mesh.spec == {}
    assert one("kind: Mesh\nname: demo\nmesh: demo\n").id == mesh.id
    assert one("kind: Mesh\nname: demo\nspec:\n").spec == {}


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("kind: VirtualNodes\nmesh: d\nname: x\nspec: {}\n", 1, "did you mean 'VirtualNode'?"),
        ("kind: virtualnode\nmesh: d\nname: x\nspec: {}\n", 1, "did you mean 'VirtualNode'?"),
        ("mesh: d\nname: x\nspec: {}\n", 1, "kind: missing; one of Mesh, VirtualNode"),
        ("kind: VirtualNode\nmesh: d\nspec: {}\n", 1, "name: missing; add `name: NAME`"),
        ("kind: VirtualNode\nname: x\nspec: {}\n", 1, "mesh: missing; add `mesh: NAME`"),
        ("kind: VirtualNode\nmesh: d\nname: 42\nspec: {}\n", 3, 'quote it: name: "42"'),
        ("kind: Route\nmesh: d\nname: x\nspec: {}\n", 1, "virtualRouter: missing"),
        ("kind: GatewayRoute\nmesh: d\nname: x\nspec: {}\n", 1, "virtualGateway: missing"),
        (
            "kind: VirtualNode\nmesh: d\nvirtualRouter: r\nname: x\nspec: {}\n",
            3,
            "virtualRouter: not a member of a VirtualNode document",
        ),
        ("kind: VirtualNode\nmesh: d\nname: x\nspecs: {}\n", 4, "did you mean 'spec'?"),
        ("kind: VirtualNode\nmesh: d\nname: x\n", 1, "spec: missing"),
        ("kind: VirtualNode\nmesh: d\nname: x\nspec: [1]\n", 4, "spec: must be a mapping"),
        ("kind: Mesh\nname: a\nmesh: b\n", 3, "drop `mesh`"),
        ("- kind: Mesh\n", 1, "this one is a list"),
        ("kind: Mesh\nname: a\ntags: {n: 1}\n", 3, "tags.n: tag keys and values must be strings"),
        ("kind: Mesh\nname: a\nname: b\n", 3, "name: appears twice"),
        ("kind: Mesh\nname: [a\n", 3, "not valid YAML"),
    ],
)
def test_bad_documents_say_where_and_what_to_fix(text: str, line: int, says: str) -> None:
    error = refused(text)

    assert error.line == line
    assert says in error.message
    assert str(error).startswith(f"mesh.yaml:{line} (document 1): ")


def test_specs_are_checked_against_the_api_model_at_the_fields_line() -> None:
    text = NODE.replace("port: 8080", "port: 99999").replace("protocol: http", "protocol: htttp")

    error = refused("kind: Mesh\nname: demo\n---\n" + text)

    assert error.source.index == 2
    assert error.line == 9  # the listener's portMapping
    assert "spec.listeners[0].portMapping.port: must be less than or equal to 65535" in (
        error.message
    )
    assert "value 'htttp' must be one of [http, tcp, http2, grpc]" in error.message
    assert "VirtualNodeSpec" in error.message


def test_unknown_spec_members_and_union_mistakes_are_caught_before_sending() -> None:
    assert "spec.listners: unknown member" in refused(NODE.replace("listeners", "listners")).message
    both = NODE.replace("dns: {hostname: worker.local}", "dns: {hostname: w}\n    awsCloudMap: {}")
    assert "spec.serviceDiscovery: set exactly one of" in refused(both).message


def test_resource_name_limits_are_reported_against_the_documents_keys() -> None:
    error = refused(NODE.replace("name: worker-v1", "name: " + "x" * 256))

    assert error.message == "name: must have at most 255 characters"
    assert error.line == 3
    mesh = refused("kind: Mesh\nname: " + "m" * 256 + "\n")
    assert (mesh.message, mesh.line) == ("name: must have at most 255 characters", 2)


def test_two_documents_for_one_resource_are_refused() -> None:
    documents = parse(NODE + "---\n" + NODE, "a.yaml")

    with pytest.raises(MeshFileError) as caught:
        check_unique(documents)

    assert caught.value.source.index == 2
    assert "already defined at a.yaml:1 (document 1)" in caught.value.message
    check_unique(documents[:1])  # one is fine


def test_field_paths_are_found_in_server_messages() -> None:
    message = "spec.httpRoute.action.weightedTargets[1].virtualNode: virtualNode 'x' not found"
    assert field_path(message) == "spec.httpRoute.action.weightedTargets[1].virtualNode"
    assert field_path("2 validation errors detected: spec.listeners[0]: bad") == (
        "spec.listeners[0]"
    )
    assert field_path("route demo/worker/x is still used") is None


# -- ordering -----------------------------------------------------------------------------


def test_apply_order_puts_every_reference_before_its_user() -> None:
    documents = parse(WALKTHROUGH.read_text(), "walkthrough.yaml")
    shuffled = documents[:]
    random.Random(7).shuffle(shuffled)

    ordered = apply_order(shuffled)

    kinds = [d.id.kind for d in ordered]
    assert kinds == sorted(kinds, key=APPLY_ORDER.index)
    position = {d.id.kind: kinds.index(d.id.kind) for d in ordered}
    # what App Mesh validates on write: route → nodes + router; service → provider;
    # gateway route → gateway + target service
    assert position["virtualNode"] < position["route"]
    assert position["virtualRouter"] < position["route"]
    assert position["virtualRouter"] < position["virtualService"]
    assert position["virtualNode"] < position["virtualService"]
    assert position["virtualService"] < position["gatewayRoute"]
    assert position["virtualGateway"] < position["gatewayRoute"]
    assert position["mesh"] == 0


def test_order_within_a_kind_follows_the_file_and_delete_is_the_reverse() -> None:
    documents = parse(WALKTHROUGH.read_text(), "walkthrough.yaml")
    nodes = [d.id.name for d in apply_order(documents) if d.id.kind == "virtualNode"]

    assert nodes == ["frontend", "worker-v1", "worker-v2"]
    assert delete_order(documents) == apply_order(documents)[::-1]
    assert delete_order(documents)[-1].id.kind == "mesh"


# -- planning -----------------------------------------------------------------------------


def test_a_missing_resource_is_created() -> None:
    change = plan(one(NODE), None)

    assert change.action is Action.CREATE
    assert change.live is None
    assert "(does not exist)" in change.diff()
    assert "+    - portMapping:" not in change.diff()  # YAML of the spec, block style
    assert "+  - portMapping:" in change.diff()


def test_an_equal_resource_is_unchanged_and_has_no_diff() -> None:
    document = one(ROUTE)

    change = plan(document, live(document)["spec"])

    assert change.action is Action.UNCHANGED
    assert not change.spec_changed
    assert change.diff() == ""


def test_server_defaults_and_empty_members_do_not_count_as_changes() -> None:
    mesh = one("kind: Mesh\nname: demo\n")
    assert plan(mesh, {"egressFilter": {"type": "DROP_ALL"}}).action is Action.UNCHANGED
    assert plan(mesh, {"egressFilter": {"type": "ALLOW_ALL"}}).action is Action.UPDATE

    node = one(NODE + "  backends: []\n  logging:\n")
    assert plan(node, live(one(NODE))["spec"]).action is Action.UNCHANGED


def test_key_order_does_not_matter_but_list_order_does() -> None:
    document = one(ROUTE)
    spec = live(document)["spec"]
    reordered = {"httpRoute": dict(reversed(list(spec["httpRoute"].items())))}
    assert plan(document, reordered).action is Action.UNCHANGED

    targets = spec["httpRoute"]["action"]["weightedTargets"]
    swapped = copy.deepcopy(spec)
    swapped["httpRoute"]["action"]["weightedTargets"] = targets[::-1]
    assert plan(document, swapped).action is Action.UPDATE


def test_a_changed_weight_is_configured_and_shown_in_the_diff() -> None:
    before = one(ROUTE)
    after = one(ROUTE.replace("weight: 90", "weight: 50").replace("weight: 10", "weight: 50"))

    change = plan(after, live(before)["spec"])

    assert change.action is Action.UPDATE
    assert change.spec_changed
    assert (change.tags_to_set, change.tags_to_remove) == ({}, ())
    text = change.diff()
    assert text.startswith("--- live  Route demo/worker/split\n+++ file  Route demo/worker/split")
    assert "-        weight: 90\n" in text
    assert "+        weight: 50\n" in text
    assert text.count("\n-") == 2  # only the two weights changed (besides the --- header)


def test_tags_are_managed_only_when_the_document_has_them() -> None:
    untagged = one(NODE)
    spec = live(untagged)["spec"]
    assert plan(untagged, spec, {"team": "core"}).action is Action.UNCHANGED

    tagged = one(NODE + "tags: {team: edge, tier: one}\n")
    change = plan(tagged, spec, {"team": "core", "old": "x"})
    assert change.action is Action.UPDATE
    assert not change.spec_changed
    assert change.tags_to_set == {"team": "edge", "tier": "one"}
    assert change.tags_to_remove == ("old",)
    assert "-  team: core" in change.diff()
    assert "+  tier: one" in change.diff()

    same = plan(tagged, spec, {"tier": "one", "team": "edge"})
    assert same.action is Action.UNCHANGED


def test_normalizing_never_changes_the_documents_spec() -> None:
    mesh = one("kind: Mesh\nname: demo\nspec:\n  serviceDiscovery:\n")

    assert normalized_spec("mesh", mesh.spec) == {"egressFilter": {"type": "DROP_ALL"}}
    assert mesh.spec == {"serviceDiscovery": None}


# -- back to files ------------------------------------------------------------------------


def test_server_data_dumps_to_documents_that_parse_back_unchanged() -> None:
    documents = parse(WALKTHROUGH.read_text(), "walkthrough.yaml")
    answers = [live(d) for d in documents]
    tags = [d.tags or {} for d in documents]

    text = dump_documents(
        document_from_data(KINDS[d.id.kind], data, t)
        for d, data, t in zip(documents, answers, tags, strict=True)
    )
    again = parse(text, "get.yaml")

    assert [d.id for d in again] == [d.id for d in documents]
    assert text.startswith("---\nkind: Mesh\nname: demo\nspec:\n")
    assert "kind: Route\nmesh: demo\nvirtualRouter: worker\nname: worker-split\n" in text
    for document, data, current in zip(again, answers, tags, strict=True):
        assert plan(document, data["spec"], current).action is Action.UNCHANGED
    assert again[0].tags == {"team": "core"}
    assert again[1].tags is None  # no tags on the server: the document leaves them alone


def test_tags_convert_between_the_file_and_the_wire() -> None:
    wire = tags_to_wire({"team": "core", "tier": "one"})

    assert wire == [{"key": "team", "value": "core"}, {"key": "tier", "value": "one"}]
    assert tags_from_wire(wire) == {"team": "core", "tier": "one"}
