"""App Mesh API on the wire: all 38 operations through an unmodified boto3 ``appmesh`` client.

The stories run against the real server process (session fixture). Most start from the App
Mesh walkthrough, built in a mesh named after the test: virtual nodes ``frontend``,
``worker-v1`` and ``worker-v2`` discovered through Cloud Map, a virtual router ``worker`` whose
route ``split`` sends 90/10 to the two versions with a retry policy, the virtual service
``worker.corp`` provided by that router, and a virtual gateway ``ingress`` whose gateway route
``to-worker`` targets the service.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

import httpx
import pytest
from botocore.exceptions import ClientError

from mapmesh.api.appmesh import SPEC_NAME, appmesh_handlers
from mapmesh.api.restjson import Router
from mapmesh.api.spec import load_spec
from mapmesh.mesh.service import MeshService
from tests.support import ServerProcess

ACCOUNT = "111122223333"
REGION = "eu-west-1"
OTHER_ACCOUNT = "444455556666"


def appmesh_client(url: str, *, validate: bool = True) -> Any:
    import boto3
    from botocore.config import Config

    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    return boto3.client(
        "appmesh",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": 1}, parameter_validation=validate),
    )


@pytest.fixture(scope="module")
def am(server: ServerProcess) -> Any:
    return appmesh_client(server.url)


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def message_of(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return str(excinfo.value.response["Error"]["Message"])


# -- the walkthrough's specs -----------------------------------------------------------------


def http_listener(port: int = 8080) -> dict[str, Any]:
    return {
        "portMapping": {"port": port, "protocol": "http"},
        "healthCheck": {
            "protocol": "http",
            "path": "/ping",
            "healthyThreshold": 2,
            "unhealthyThreshold": 3,
            "timeoutMillis": 2000,
            "intervalMillis": 5000,
        },
        "connectionPool": {"http": {"maxConnections": 100, "maxPendingRequests": 50}},
        "outlierDetection": {
            "maxServerErrors": 5,
            "interval": {"unit": "s", "value": 10},
            "baseEjectionDuration": {"unit": "s", "value": 30},
            "maxEjectionPercent": 50,
        },
    }


def node_spec(service: str, version: str | None = None, **extra: Any) -> dict[str, Any]:
    cloud_map: dict[str, Any] = {"namespaceName": "corp", "serviceName": service}
    if version is not None:
        cloud_map["attributes"] = [{"key": "version", "value": version}]
    return {
        "listeners": [http_listener()],
        "serviceDiscovery": {"awsCloudMap": cloud_map},
        **extra,
    }


def route_spec(*targets: tuple[str, int]) -> dict[str, Any]:
    return {
        "httpRoute": {
            "match": {"prefix": "/"},
            "action": {
                "weightedTargets": [{"virtualNode": node, "weight": w} for node, w in targets]
            },
            "retryPolicy": {
                "maxRetries": 2,
                "perRetryTimeout": {"unit": "ms", "value": 2000},
                "httpRetryEvents": ["server-error", "gateway-error"],
                "tcpRetryEvents": ["connection-error"],
            },
        }
    }


ROUTER_SPEC = {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]}
SERVICE_SPEC = {"provider": {"virtualRouter": {"virtualRouterName": "worker"}}}
GATEWAY_SPEC = {"listeners": [{"portMapping": {"port": 9080, "protocol": "http"}}]}
GATEWAY_ROUTE_SPEC = {
    "httpRoute": {
        "match": {"prefix": "/worker"},
        "action": {"target": {"virtualService": {"virtualServiceName": "worker.corp"}}},
    }
}


def build_walkthrough(am: Any, mesh: str) -> dict[str, dict[str, Any]]:
    """Create the walkthrough's resources; the create answers, by resource name."""
    made = {
        "mesh": am.create_mesh(
            meshName=mesh,
            spec={"egressFilter": {"type": "ALLOW_ALL"}},
            tags=[{"key": "team", "value": "platform"}],
        )["mesh"]
    }
    made["frontend"] = am.create_virtual_node(
        meshName=mesh,
        virtualNodeName="frontend",
        spec=node_spec(
            "frontend", backends=[{"virtualService": {"virtualServiceName": "worker.corp"}}]
        ),
    )["virtualNode"]
    for version in ("v1", "v2"):
        made[f"worker-{version}"] = am.create_virtual_node(
            meshName=mesh, virtualNodeName=f"worker-{version}", spec=node_spec("worker", version)
        )["virtualNode"]
    made["worker"] = am.create_virtual_router(
        meshName=mesh, virtualRouterName="worker", spec=ROUTER_SPEC
    )["virtualRouter"]
    made["split"] = am.create_route(
        meshName=mesh,
        virtualRouterName="worker",
        routeName="split",
        spec=route_spec(("worker-v1", 90), ("worker-v2", 10)),
    )["route"]
    made["worker.corp"] = am.create_virtual_service(
        meshName=mesh, virtualServiceName="worker.corp", spec=SERVICE_SPEC
    )["virtualService"]
    made["ingress"] = am.create_virtual_gateway(
        meshName=mesh, virtualGatewayName="ingress", spec=GATEWAY_SPEC
    )["virtualGateway"]
    made["to-worker"] = am.create_gateway_route(
        meshName=mesh,
        virtualGatewayName="ingress",
        gatewayRouteName="to-worker",
        spec=GATEWAY_ROUTE_SPEC,
    )["gatewayRoute"]
    return made


def arn(mesh: str, path: str = "") -> str:
    return f"arn:aws:appmesh:{REGION}:{ACCOUNT}:mesh/{mesh}{path}"


# -- stories ---------------------------------------------------------------------------------


def test_every_model_operation_has_a_handler_and_a_route() -> None:
    spec = load_spec(SPEC_NAME)
    handlers = appmesh_handlers(cast(MeshService, None))  # building handlers touches no service
    assert set(handlers) == set(spec.operations)
    assert len(handlers) == 38
    assert Router(spec.operations).prefixes == {"/v20190125"}


def test_walkthrough_builds_the_example_mesh(am: Any, unique: str) -> None:
    made = build_walkthrough(am, unique)

    mesh = made["mesh"]
    assert mesh["meshName"] == unique
    assert mesh["spec"] == {"egressFilter": {"type": "ALLOW_ALL"}}
    assert mesh["status"] == {"status": "ACTIVE"}
    metadata = mesh["metadata"]
    assert metadata["arn"] == arn(unique)
    assert metadata["version"] == 1
    assert metadata["meshOwner"] == metadata["resourceOwner"] == ACCOUNT
    assert isinstance(metadata["createdAt"], datetime)  # botocore parsed epoch seconds
    assert metadata["createdAt"] == metadata["lastUpdatedAt"]

    # Every resource answers with its kind's Data shape, names and ARN included.
    assert made["worker-v1"]["metadata"]["arn"] == arn(unique, "/virtualNode/worker-v1")
    assert made["worker-v1"]["spec"]["serviceDiscovery"]["awsCloudMap"] == {
        "namespaceName": "corp",
        "serviceName": "worker",
        "attributes": [{"key": "version", "value": "v1"}],
    }
    assert made["worker-v1"]["spec"]["listeners"][0] == http_listener()
    split = made["split"]
    assert (split["meshName"], split["virtualRouterName"], split["routeName"]) == (
        unique,
        "worker",
        "split",
    )
    assert split["metadata"]["arn"] == arn(unique, "/virtualRouter/worker/route/split")
    assert split["spec"] == route_spec(("worker-v1", 90), ("worker-v2", 10))
    assert made["worker.corp"]["spec"] == SERVICE_SPEC
    assert made["to-worker"]["virtualGatewayName"] == "ingress"
    assert made["to-worker"]["metadata"]["arn"] == arn(
        unique, "/virtualGateway/ingress/gatewayRoute/to-worker"
    )
    assert len({r["metadata"]["uid"] for r in made.values()}) == len(made)

    # Describe returns what create returned, for every kind.
    assert am.describe_mesh(meshName=unique)["mesh"] == mesh
    assert (
        am.describe_virtual_node(meshName=unique, virtualNodeName="frontend")["virtualNode"]
        == (made["frontend"])
    )
    assert (
        am.describe_virtual_router(meshName=unique, virtualRouterName="worker")["virtualRouter"]
        == (made["worker"])
    )
    assert am.describe_route(meshName=unique, virtualRouterName="worker", routeName="split")[
        "route"
    ] == (split)
    assert (
        am.describe_virtual_service(meshName=unique, virtualServiceName="worker.corp")[
            "virtualService"
        ]
        == (made["worker.corp"])
    )
    assert (
        am.describe_virtual_gateway(meshName=unique, virtualGatewayName="ingress")["virtualGateway"]
        == (made["ingress"])
    )
    assert (
        am.describe_gateway_route(
            meshName=unique, virtualGatewayName="ingress", gatewayRouteName="to-worker"
        )["gatewayRoute"]
        == (made["to-worker"])
    )

    # meshOwner: our own account is accepted; another account owns no mesh here.
    assert am.describe_mesh(meshName=unique, meshOwner=ACCOUNT)["mesh"] == mesh
    with pytest.raises(ClientError) as excinfo:
        am.describe_mesh(meshName=unique, meshOwner=OTHER_ACCOUNT)
    assert error_of(excinfo) == ("NotFoundException", 404)
    assert OTHER_ACCOUNT in message_of(excinfo)


def test_lists_page_through_one_at_a_time(am: Any, unique: str) -> None:
    build_walkthrough(am, unique)

    def names(call: Callable[..., dict[str, Any]], member: str, name: str, **kw: Any) -> list[str]:
        found: list[str] = []
        token: str | None = None
        while True:
            page = call(limit=1, **({"nextToken": token} if token else {}), **kw)
            assert len(page[member]) <= 1
            found += [ref[name] for ref in page[member]]
            token = page.get("nextToken")
            if token is None:
                return found

    mesh = {"meshName": unique}
    nodes = names(am.list_virtual_nodes, "virtualNodes", "virtualNodeName", **mesh)
    assert nodes == ["frontend", "worker-v1", "worker-v2"]
    assert names(am.list_virtual_routers, "virtualRouters", "virtualRouterName", **mesh) == [
        "worker"
    ]
    assert names(am.list_routes, "routes", "routeName", virtualRouterName="worker", **mesh) == [
        "split"
    ]
    assert names(am.list_virtual_services, "virtualServices", "virtualServiceName", **mesh) == [
        "worker.corp"
    ]
    assert names(am.list_virtual_gateways, "virtualGateways", "virtualGatewayName", **mesh) == [
        "ingress"
    ]
    assert names(
        am.list_gateway_routes,
        "gatewayRoutes",
        "gatewayRouteName",
        virtualGatewayName="ingress",
        **mesh,
    ) == ["to-worker"]
    assert unique in names(am.list_meshes, "meshes", "meshName")

    # A list entry is the kind's Ref shape: metadata flattened, no uid, no spec.
    ref = am.list_virtual_nodes(meshName=unique, limit=1)["virtualNodes"][0]
    assert set(ref) == {
        "meshName",
        "virtualNodeName",
        "arn",
        "version",
        "createdAt",
        "lastUpdatedAt",
        "meshOwner",
        "resourceOwner",
    }
    # boto3's own paginator works on top of limit/nextToken.
    pages = am.get_paginator("list_virtual_nodes").paginate(
        meshName=unique, PaginationConfig={"PageSize": 2}
    )
    assert [len(p["virtualNodes"]) for p in pages] == [2, 1]

    with pytest.raises(ClientError) as excinfo:
        am.list_virtual_nodes(meshName=unique, nextToken="!!not-a-token!!")
    assert error_of(excinfo) == ("BadRequestException", 400)
    with pytest.raises(ClientError) as excinfo:
        appmesh_client(am.meta.endpoint_url, validate=False).list_virtual_nodes(
            meshName=unique, limit=101
        )
    assert error_of(excinfo) == ("BadRequestException", 400)
    assert "limit: must be less than or equal to 100" in message_of(excinfo)


def test_update_bumps_the_version_of_every_kind(am: Any, unique: str) -> None:
    made = build_walkthrough(am, unique)
    mesh = {"meshName": unique}

    updated = {
        "mesh": am.update_mesh(spec={"egressFilter": {"type": "DROP_ALL"}}, **mesh)["mesh"],
        "worker-v2": am.update_virtual_node(
            virtualNodeName="worker-v2", spec=node_spec("worker", "v2-canary"), **mesh
        )["virtualNode"],
        "worker": am.update_virtual_router(virtualRouterName="worker", spec=ROUTER_SPEC, **mesh)[
            "virtualRouter"
        ],
        "split": am.update_route(
            virtualRouterName="worker",
            routeName="split",
            spec=route_spec(("worker-v1", 50), ("worker-v2", 50)),
            **mesh,
        )["route"],
        "worker.corp": am.update_virtual_service(
            virtualServiceName="worker.corp",
            spec={"provider": {"virtualNode": {"virtualNodeName": "worker-v1"}}},
            **mesh,
        )["virtualService"],
        "ingress": am.update_virtual_gateway(
            virtualGatewayName="ingress", spec=GATEWAY_SPEC, **mesh
        )["virtualGateway"],
        "to-worker": am.update_gateway_route(
            virtualGatewayName="ingress",
            gatewayRouteName="to-worker",
            spec=GATEWAY_ROUTE_SPEC,
            **mesh,
        )["gatewayRoute"],
    }
    for name, after in updated.items():
        before = made[name]["metadata"]
        assert after["metadata"]["version"] == 2, name
        assert after["metadata"]["uid"] == before["uid"], name
        assert after["metadata"]["createdAt"] == before["createdAt"], name
        assert after["metadata"]["lastUpdatedAt"] >= before["lastUpdatedAt"], name

    weights = am.describe_route(virtualRouterName="worker", routeName="split", **mesh)["route"][
        "spec"
    ]["httpRoute"]["action"]["weightedTargets"]
    assert [t["weight"] for t in weights] == [50, 50]
    assert am.describe_mesh(**mesh)["mesh"]["spec"]["egressFilter"] == {"type": "DROP_ALL"}

    # Updating what does not exist is NotFound, not an implicit create.
    with pytest.raises(ClientError) as excinfo:
        am.update_virtual_node(virtualNodeName="ghost", spec=node_spec("ghost"), **mesh)
    assert error_of(excinfo) == ("NotFoundException", 404)


def test_client_token_makes_writes_idempotent(am: Any, unique: str) -> None:
    first = am.create_mesh(meshName=unique, clientToken="token-1")["mesh"]
    again = am.create_mesh(meshName=unique, clientToken="token-1")["mesh"]
    assert again["metadata"] == first["metadata"]  # same uid, still version 1

    with pytest.raises(ClientError) as excinfo:
        am.create_mesh(meshName=unique, clientToken="token-2")
    assert error_of(excinfo) == ("ConflictException", 409)
    with pytest.raises(ClientError) as excinfo:
        am.create_mesh(meshName=unique)  # boto3 fills in a fresh token
    assert error_of(excinfo) == ("ConflictException", 409)

    node = {"meshName": unique, "virtualNodeName": "solo"}
    am.create_virtual_node(spec=node_spec("solo"), clientToken="create-solo", **node)
    retried = am.create_virtual_node(spec=node_spec("solo"), clientToken="create-solo", **node)
    assert retried["virtualNode"]["metadata"]["version"] == 1

    update = am.update_virtual_node(spec=node_spec("solo", "b"), clientToken="update-1", **node)
    repeat = am.update_virtual_node(spec=node_spec("solo", "b"), clientToken="update-1", **node)
    assert update["virtualNode"]["metadata"]["version"] == 2
    assert repeat["virtualNode"]["metadata"]["version"] == 2
    assert am.describe_virtual_node(**node)["virtualNode"]["metadata"]["version"] == 2


def test_unknown_mesh_and_router_are_not_found(am: Any, unique: str) -> None:
    missing = f"{unique}-missing"
    for call in (
        lambda: am.describe_mesh(meshName=missing),
        lambda: am.delete_mesh(meshName=missing),
        lambda: am.list_virtual_nodes(meshName=missing),
        lambda: am.create_virtual_router(meshName=missing, virtualRouterName="r", spec=ROUTER_SPEC),
    ):
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error_of(excinfo) == ("NotFoundException", 404)
        assert missing in message_of(excinfo)

    am.create_mesh(meshName=unique)
    for call in (
        lambda: am.list_routes(meshName=unique, virtualRouterName="nope"),
        lambda: am.describe_route(meshName=unique, virtualRouterName="nope", routeName="r"),
        lambda: am.create_route(
            meshName=unique,
            virtualRouterName="nope",
            routeName="r",
            spec=route_spec(("a", 100)),
        ),
    ):
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error_of(excinfo) == ("NotFoundException", 404)
        assert "virtualRouter" in message_of(excinfo) and "nope" in message_of(excinfo)


def test_bad_requests_name_the_field(am: Any, unique: str) -> None:
    build_walkthrough(am, unique)
    route = {"meshName": unique, "virtualRouterName": "worker"}

    with pytest.raises(ClientError) as excinfo:
        am.create_route(
            routeName="r1", spec=route_spec(("worker-v1", 50), ("worker-v3", 50)), **route
        )
    assert error_of(excinfo) == ("BadRequestException", 400)
    assert "spec.httpRoute.action.weightedTargets[1].virtualNode" in message_of(excinfo)
    assert "worker-v3" in message_of(excinfo)

    for weights in ((0, 0), (60, 50)):
        targets = list(zip(("worker-v1", "worker-v2"), weights, strict=True))
        with pytest.raises(ClientError) as excinfo:
            am.create_route(routeName="r2", spec=route_spec(*targets), **route)
        assert error_of(excinfo) == ("BadRequestException", 400)
        assert "spec.httpRoute.action.weightedTargets" in message_of(excinfo)
        assert f"total {sum(weights)}" in message_of(excinfo)

    # The model's own constraints are checked on the server too, naming the member path.
    raw = appmesh_client(am.meta.endpoint_url, validate=False)
    listener = {**http_listener(), "portMapping": {"port": 0, "protocol": "http"}}
    with pytest.raises(ClientError) as excinfo:
        raw.create_virtual_node(
            meshName=unique,
            virtualNodeName="bad",
            spec={**node_spec("bad"), "listeners": [listener]},
        )
    assert error_of(excinfo) == ("BadRequestException", 400)
    assert "spec.listeners[0].portMapping.port: must be greater than or equal to 1" in (
        message_of(excinfo)
    )
    with pytest.raises(ClientError) as excinfo:
        raw.create_virtual_service(
            meshName=unique,
            virtualServiceName="both.corp",
            spec={
                "provider": {
                    "virtualNode": {"virtualNodeName": "worker-v1"},
                    "virtualRouter": {"virtualRouterName": "worker"},
                }
            },
        )
    assert error_of(excinfo) == ("BadRequestException", 400)
    assert "spec.provider: set exactly one of" in message_of(excinfo)

    # Nothing of the refused requests was stored.
    routes = am.list_routes(**route)["routes"]
    assert [r["routeName"] for r in routes] == ["split"]


def test_referenced_resources_are_in_use_until_released(am: Any, unique: str) -> None:
    build_walkthrough(am, unique)
    mesh = {"meshName": unique}

    def refused(call: Callable[[], Any], *names: str) -> None:
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error_of(excinfo) == ("ResourceInUseException", 409)
        for name in names:
            assert name in message_of(excinfo)

    refused(lambda: am.delete_virtual_node(virtualNodeName="worker-v1", **mesh), "split")
    refused(lambda: am.delete_virtual_router(virtualRouterName="worker", **mesh), "split")
    refused(
        lambda: am.delete_virtual_service(virtualServiceName="worker.corp", **mesh), "to-worker"
    )
    refused(lambda: am.delete_virtual_gateway(virtualGatewayName="ingress", **mesh), "to-worker")
    refused(lambda: am.delete_mesh(**mesh))

    # Taken apart leaves first, every delete answers the resource with status DELETED.
    deleted = [
        am.delete_gateway_route(virtualGatewayName="ingress", gatewayRouteName="to-worker", **mesh)[
            "gatewayRoute"
        ],
        am.delete_virtual_gateway(virtualGatewayName="ingress", **mesh)["virtualGateway"],
        am.delete_virtual_service(virtualServiceName="worker.corp", **mesh)["virtualService"],
        am.delete_route(virtualRouterName="worker", routeName="split", **mesh)["route"],
        am.delete_virtual_router(virtualRouterName="worker", **mesh)["virtualRouter"],
        *(
            am.delete_virtual_node(virtualNodeName=name, **mesh)["virtualNode"]
            for name in ("frontend", "worker-v1", "worker-v2")
        ),
        am.delete_mesh(**mesh)["mesh"],
    ]
    assert [d["status"]["status"] for d in deleted] == ["DELETED"] * 9
    assert deleted[-1]["metadata"]["arn"] == arn(unique)

    with pytest.raises(ClientError) as excinfo:
        am.describe_mesh(**mesh)
    assert error_of(excinfo) == ("NotFoundException", 404)


def test_tags_round_trip(am: Any, unique: str) -> None:
    mesh_arn = am.create_mesh(meshName=unique, tags=[{"key": "team", "value": "platform"}])["mesh"][
        "metadata"
    ]["arn"]
    node_arn = am.create_virtual_node(
        meshName=unique,
        virtualNodeName="tagged",
        spec=node_spec("tagged"),
        tags=[{"key": "tier", "value": "web"}],
    )["virtualNode"]["metadata"]["arn"]

    assert am.list_tags_for_resource(resourceArn=mesh_arn)["tags"] == [
        {"key": "team", "value": "platform"}
    ]
    am.tag_resource(
        resourceArn=node_arn,
        tags=[{"key": "tier", "value": "backend"}, {"key": "cost", "value": "42"}],
    )
    assert am.list_tags_for_resource(resourceArn=node_arn)["tags"] == [
        {"key": "cost", "value": "42"},
        {"key": "tier", "value": "backend"},
    ]
    first = am.list_tags_for_resource(resourceArn=node_arn, limit=1)
    assert first["tags"] == [{"key": "cost", "value": "42"}]
    second = am.list_tags_for_resource(resourceArn=node_arn, limit=1, nextToken=first["nextToken"])
    assert second["tags"] == [{"key": "tier", "value": "backend"}]
    assert "nextToken" not in second

    am.untag_resource(resourceArn=node_arn, tagKeys=["cost", "absent"])
    assert am.list_tags_for_resource(resourceArn=node_arn)["tags"] == [
        {"key": "tier", "value": "backend"}
    ]

    many = [{"key": f"k{i}", "value": "v"} for i in range(50)]
    with pytest.raises(ClientError) as excinfo:
        am.tag_resource(resourceArn=node_arn, tags=many)  # 50 new + "tier" = 51
    assert error_of(excinfo) == ("TooManyTagsException", 400)

    unknown = arn(unique, "/virtualNode/ghost")
    with pytest.raises(ClientError) as excinfo:
        am.list_tags_for_resource(resourceArn=unknown)
    assert error_of(excinfo) == ("NotFoundException", 404)


def test_raw_wire_format(server: ServerProcess, am: Any, unique: str) -> None:
    am.create_mesh(meshName=unique)
    with httpx.Client(base_url=server.url) as http:
        # The output payload is the body itself, with timestamps as epoch seconds.
        response = http.get(f"/v20190125/meshes/{unique}")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert body["meshName"] == unique
        assert isinstance(body["metadata"]["createdAt"], int | float)

        response = http.get("/v20190125/nowhere")
        assert response.status_code == 404
        assert response.headers["x-amzn-errortype"] == "UnknownOperationException"
        assert response.json() == {
            "message": "no AWS App Mesh operation for GET /v20190125/nowhere"
        }

        response = http.post("/v20190125/meshes")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, PUT"

        response = http.put(
            f"/v20190125/meshes/{unique}/virtualNodes",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 400
        assert response.headers["x-amzn-errortype"] == "BadRequestException"
        assert "not valid JSON" in response.json()["message"]

        response = http.put(
            f"/v20190125/meshes/{unique}/virtualNodes",
            json={"virtualNodeName": "n", "spec": {}, "meshName": "elsewhere"},
        )
        assert response.status_code == 400
        assert "meshName: belongs in the uri" in response.json()["message"]

        response = http.get(f"/v20190125/meshes/{unique}/virtualNodes", params={"limit": "x"})
        assert response.status_code == 400
        assert "limit: must be an integer" in response.json()["message"]


def test_names_travel_percent_encoded_and_slashes_are_refused(am: Any, unique: str) -> None:
    am.create_mesh(meshName=unique)
    name = "odd name+100%"
    am.create_virtual_service(meshName=unique, virtualServiceName=name, spec={})
    described = am.describe_virtual_service(meshName=unique, virtualServiceName=name)
    assert described["virtualService"]["virtualServiceName"] == name
    assert described["virtualService"]["metadata"]["arn"] == arn(unique, f"/virtualService/{name}")

    with pytest.raises(ClientError) as excinfo:
        am.create_virtual_node(meshName=unique, virtualNodeName="a/b", spec=node_spec("ab"))
    assert error_of(excinfo) == ("BadRequestException", 400)
    assert "virtualNodeName: 'a/b' must not contain '/'" in message_of(excinfo)
