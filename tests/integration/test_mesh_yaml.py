"""Mesh files end to end: the real ``mapmesh`` CLI, as subprocesses, against a real server.

The story follows an operator with the App Mesh walkthrough in one file
(``examples/walkthrough-mesh.yaml``, its mesh renamed after the test): apply it, apply it
again, change the traffic split, look at it with ``get``, feed ``get -o yaml`` back to
``apply``, and delete it. An unmodified boto3 ``appmesh`` client checks now and then that the
CLI did what it said — and, as importantly, what it did not (no version bumps).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import ServerProcess

WALKTHROUGH = Path(__file__).parents[2] / "examples" / "walkthrough-mesh.yaml"
KIND_ARGS = (
    "mesh",
    "virtual-node",
    "virtual-router",
    "route",
    "virtual-service",
    "virtual-gateway",
    "gateway-route",
)


@dataclass
class Run:
    code: int
    out: str
    err: str

    def lines(self) -> list[str]:
        return self.out.splitlines()


@pytest.fixture(scope="module")
def appmesh(server: ServerProcess) -> Any:
    import boto3
    from botocore.config import Config

    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    return boto3.client(
        "appmesh",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}),
    )


def mapmesh(server: ServerProcess, *args: str, stdin: str | None = None) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAPMESH_")}
    env.update(MAPMESH_ENDPOINT=server.url, COLUMNS="200")
    proc = subprocess.run(
        [sys.executable, "-m", "mapmesh", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    run = Run(proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in run.err, run
    return run


def walkthrough(mesh: str) -> str:
    """The example file with its mesh renamed."""
    return re.sub(r"^(mesh|name): demo$", rf"\1: {mesh}", WALKTHROUGH.read_text(), flags=re.M)


def versions(appmesh: Any, mesh: str) -> dict[str, int]:
    """``{"virtualNode worker-v1": 1, ...}`` for every resource of ``mesh``, via boto3."""
    found = {"mesh": appmesh.describe_mesh(meshName=mesh)["mesh"]["metadata"]["version"]}
    for kind, listing in (
        ("virtualNode", "list_virtual_nodes"),
        ("virtualRouter", "list_virtual_routers"),
        ("virtualService", "list_virtual_services"),
        ("virtualGateway", "list_virtual_gateways"),
    ):
        for ref in getattr(appmesh, listing)(meshName=mesh)[kind + "s"]:
            found[f"{kind} {ref[kind + 'Name']}"] = ref["version"]
    for ref in appmesh.list_routes(meshName=mesh, virtualRouterName="worker")["routes"]:
        found[f"route {ref['routeName']}"] = ref["version"]
    for ref in appmesh.list_gateway_routes(meshName=mesh, virtualGatewayName="ingress")[
        "gatewayRoutes"
    ]:
        found[f"gatewayRoute {ref['gatewayRouteName']}"] = ref["version"]
    return found


def test_the_walkthrough_as_a_file(
    server: ServerProcess, unique: str, appmesh: Any, tmp_path: Path
) -> None:
    mesh = unique
    path = tmp_path / "mesh.yaml"
    path.write_text(walkthrough(mesh))

    # Nothing exists yet: diff shows ten new resources and exits 1, as `kubectl diff` does.
    first_diff = mapmesh(server, "diff", "-f", str(path))
    assert first_diff.code == 1, first_diff
    assert first_diff.out.count("(does not exist)") == 10

    # apply creates everything, dependencies first, one line per resource.
    applied = mapmesh(server, "apply", "-f", str(path))
    assert applied.code == 0, applied
    assert applied.lines() == [
        f"Mesh {mesh} created",
        f"VirtualNode {mesh}/frontend created",
        f"VirtualNode {mesh}/worker-v1 created",
        f"VirtualNode {mesh}/worker-v2 created",
        f"VirtualRouter {mesh}/worker created",
        f"Route {mesh}/worker/worker-split created",
        f"VirtualService {mesh}/worker.corp created",
        f"VirtualService {mesh}/frontend.corp created",
        f"VirtualGateway {mesh}/ingress created",
        f"GatewayRoute {mesh}/ingress/to-frontend created",
    ]
    created = versions(appmesh, mesh)
    assert len(created) == 10 and set(created.values()) == {1}
    route = appmesh.describe_route(
        meshName=mesh, virtualRouterName="worker", routeName="worker-split"
    )["route"]["spec"]["httpRoute"]
    assert route["retryPolicy"]["perRetryTimeout"] == {"unit": "s", "value": 2}
    assert route["timeout"]["perRequest"] == {"unit": "s", "value": 5}
    assert appmesh.describe_mesh(meshName=mesh)["mesh"]["spec"]["egressFilter"] == {
        "type": "DROP_ALL"
    }

    # Applying the same file again changes nothing: no update call, no version bump.
    again = mapmesh(server, "apply", "-f", str(path), "-o", "json")
    assert again.code == 0, again
    assert {r["result"] for r in json.loads(again.out)["results"]} == {"unchanged"}
    assert versions(appmesh, mesh) == created
    same = mapmesh(server, "diff", "-f", str(path))
    assert (same.code, same.out) == (0, "")

    # The operator shifts traffic to 50/50: diff shows just the weights, apply configures
    # the route alone, and only its version moves.
    path.write_text(
        walkthrough(mesh).replace("weight: 90", "weight: 50").replace("weight: 10", "weight: 50")
    )
    shift = mapmesh(server, "diff", "-f", str(path))
    assert shift.code == 1, shift
    assert f"--- live  Route {mesh}/worker/worker-split" in shift.out
    assert "-        weight: 90\n+        weight: 50\n" in shift.out
    assert "-        weight: 10\n+        weight: 50\n" in shift.out
    assert shift.out.count("--- live") == 1
    configured = mapmesh(server, "apply", "-f", str(path))
    assert configured.code == 0, configured
    assert f"Route {mesh}/worker/worker-split configured" in configured.lines()
    assert sum(line.endswith(" unchanged") for line in configured.lines()) == 9
    assert versions(appmesh, mesh) == {**created, "route worker-split": 2}
    targets = appmesh.describe_route(
        meshName=mesh, virtualRouterName="worker", routeName="worker-split"
    )["route"]["spec"]["httpRoute"]["action"]["weightedTargets"]
    assert [t["weight"] for t in targets] == [50, 50]

    # get: a table for people, the API's JSON for scripts...
    table = mapmesh(server, "get", "routes", "--mesh", mesh)
    assert table.code == 0, table
    assert re.search(r"worker-split\s+" + mesh + r"\s+worker\s+2\s", table.out), table.out
    nodes = mapmesh(server, "get", "virtual-nodes", "--mesh", mesh, "-o", "json")
    assert [n["virtualNodeName"] for n in json.loads(nodes.out)["virtualNodes"]] == [
        "frontend",
        "worker-v1",
        "worker-v2",
    ]

    # ...and YAML documents that apply back without a change.
    dumped = ""
    for kind in KIND_ARGS:
        where = () if kind == "mesh" else ("--mesh", mesh)
        name = (mesh,) if kind == "mesh" else ()
        got = mapmesh(server, "get", kind, *name, *where, "-o", "yaml")
        assert got.code == 0, got
        dumped += got.out
    assert dumped.count("---\nkind: ") == 10
    assert f"---\nkind: Mesh\nname: {mesh}\n" in dumped
    assert "tags:\n  team: core\n" in dumped
    round_trip = mapmesh(server, "apply", "-f", "-", stdin=dumped)
    assert round_trip.code == 0, round_trip
    assert all(line.endswith(" unchanged") for line in round_trip.lines()), round_trip.out
    assert len(round_trip.lines()) == 10

    # delete removes everything, users first; a second delete finds nothing and says so.
    deleted = mapmesh(server, "delete", "-f", str(path))
    assert deleted.code == 0, deleted
    assert deleted.lines()[0] == f"GatewayRoute {mesh}/ingress/to-frontend deleted"
    assert deleted.lines()[-1] == f"Mesh {mesh} deleted"
    assert mesh not in [m["meshName"] for m in appmesh.list_meshes()["meshes"]]
    gone = mapmesh(server, "delete", "-f", str(path))
    assert gone.code == 0, gone
    assert all(line.endswith("not found (nothing to delete)") for line in gone.lines())


def test_a_refused_document_stops_apply_and_says_what_stays_applied(
    server: ServerProcess, unique: str, appmesh: Any, tmp_path: Path
) -> None:
    mesh = unique
    path = tmp_path / "broken.yaml"
    path.write_text(
        f"kind: Mesh\nname: {mesh}\n"
        "---\n"
        f"kind: VirtualService\nmesh: {mesh}\nname: api.corp\n"
        "spec:\n  provider:\n    virtualRouter: {virtualRouterName: api}\n"
        "---\n"
        f"kind: VirtualRouter\nmesh: {mesh}\nname: api\n"
        "spec:\n  listeners:\n    - portMapping: {port: 8080, protocol: http}\n"
        "---\n"
        f"kind: Route\nmesh: {mesh}\nvirtualRouter: api\nname: split\n"
        "spec:\n"
        "  httpRoute:\n"
        "    match: {prefix: /}\n"
        "    action:\n"
        "      weightedTargets:\n"
        "        - {virtualNode: api-v3, weight: 100}\n"  # line 27: no such node
    )

    # The route is refused by the server; the error points at the target's line, and the
    # mesh and router (applied before it) stay while the service (after it) is not applied.
    run = mapmesh(server, "apply", "-f", str(path))

    assert run.code == 1, run
    first, note = run.err.splitlines()
    assert first.startswith(f"error: {path}:27 (document 4, Route {mesh}/api/split): ")
    assert "CreateRoute refused: BadRequestException" in first
    assert "weightedTargets[0].virtualNode" in first and "api-v3" in first
    assert note == (
        f"note: 2 resources before it (Mesh {mesh}, VirtualRouter {mesh}/api) were applied "
        "and stay applied; 1 resource after it was not applied."
    )
    assert run.lines() == [f"Mesh {mesh} created", f"VirtualRouter {mesh}/api created"]
    routers = appmesh.list_virtual_routers(meshName=mesh)["virtualRouters"]
    assert [r["virtualRouterName"] for r in routers] == ["api"]
    assert appmesh.list_virtual_services(meshName=mesh)["virtualServices"] == []

    # A document the CLI can tell is wrong is refused before anything is sent.
    typo = mapmesh(
        server, "apply", "-f", "-", stdin=f"kind: Mesh\nname: {mesh}-2\n---\nkind: VirtualNodes\n"
    )
    assert typo.code == 1, typo
    assert typo.err.startswith("error: <stdin>:4 (document 2): kind: unknown kind")
    assert "did you mean 'VirtualNode'?" in typo.err
    assert "nothing was sent" in typo.err
    assert f"{mesh}-2" not in [m["meshName"] for m in appmesh.list_meshes()["meshes"]]

    # Cleaning up: the route never existed, so delete reports it and carries on.
    cleanup = mapmesh(server, "delete", "-f", str(path))
    assert cleanup.code == 0, cleanup
    assert f"Route {mesh}/api/split not found (nothing to delete)" in cleanup.lines()
    assert cleanup.lines()[-1] == f"Mesh {mesh} deleted"
