"""Cloud Map API on the wire: every operation through an unmodified boto3 client.

Each test tells a short story against the real server process (session fixture), using
namespace names unique to the test.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.support import ServerProcess, servicediscovery_client

ACCOUNT = "111122223333"


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def wait_operation(sd: Any, operation_id: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        op: dict[str, Any] = sd.get_operation(OperationId=operation_id)["Operation"]
        if op["Status"] in ("SUCCESS", "FAIL") or time.monotonic() > deadline:
            return op
        time.sleep(0.05)


def http_namespace(sd: Any, name: str) -> str:
    op = sd.create_http_namespace(Name=name)["OperationId"]
    result = wait_operation(sd, op)
    assert result["Status"] == "SUCCESS", result
    return str(result["Targets"]["NAMESPACE"])


def dns_namespace(sd: Any, name: str, ttl: int = 60) -> str:
    op = sd.create_private_dns_namespace(
        Name=name, Vpc="vpc-local", Properties={"DnsProperties": {"SOA": {"TTL": ttl}}}
    )["OperationId"]
    result = wait_operation(sd, op)
    assert result["Status"] == "SUCCESS", result
    return str(result["Targets"]["NAMESPACE"])


def test_http_namespace_lifecycle(sd: Any, unique: str) -> None:
    op_id = sd.create_http_namespace(
        Name=unique, Description="first", Tags=[{"Key": "team", "Value": "core"}]
    )["OperationId"]
    assert re.fullmatch(r"[a-z0-9]{32}-[a-z0-9]{8}", op_id)
    op = wait_operation(sd, op_id)
    assert op["Status"] == "SUCCESS"
    assert op["Type"] == "CREATE_NAMESPACE"
    assert op["CreateDate"] <= op["UpdateDate"]
    ns_id = op["Targets"]["NAMESPACE"]
    assert re.fullmatch(r"ns-[a-z0-9]{16}", ns_id)

    ns = sd.get_namespace(Id=ns_id)["Namespace"]
    assert ns["Name"] == unique
    assert ns["Type"] == "HTTP"
    assert ns["Arn"] == f"arn:aws:servicediscovery:us-east-1:{ACCOUNT}:namespace/{ns_id}"
    assert ns["Properties"]["HttpProperties"]["HttpName"] == unique
    assert ns["ServiceCount"] == 0
    assert sd.get_namespace(Id=ns["Arn"])["Namespace"]["Id"] == ns_id  # ARNs work as ids

    with pytest.raises(ClientError) as excinfo:
        sd.create_http_namespace(Name=unique)
    assert error_of(excinfo) == ("NamespaceAlreadyExists", 400)
    assert excinfo.value.response["NamespaceId"] == ns_id

    update = sd.update_http_namespace(Id=ns_id, Namespace={"Description": "second"})
    assert wait_operation(sd, update["OperationId"])["Status"] == "SUCCESS"
    assert sd.get_namespace(Id=ns_id)["Namespace"]["Description"] == "second"

    service = sd.create_service(Name="api", NamespaceId=ns_id)["Service"]
    with pytest.raises(ClientError) as excinfo:
        sd.delete_namespace(Id=ns_id)
    assert error_of(excinfo) == ("ResourceInUse", 409)
    sd.delete_service(Id=service["Id"])

    delete = sd.delete_namespace(Id=ns_id)["OperationId"]
    assert wait_operation(sd, delete)["Status"] == "SUCCESS"
    with pytest.raises(ClientError) as excinfo:
        sd.get_namespace(Id=ns_id)
    assert error_of(excinfo) == ("NamespaceNotFound", 404)


def test_dns_namespaces_and_updates(sd: Any, unique: str) -> None:
    private_id = dns_namespace(sd, f"{unique}.internal", ttl=30)
    ns = sd.get_namespace(Id=private_id)["Namespace"]
    assert ns["Type"] == "DNS_PRIVATE"
    assert ns["Properties"]["DnsProperties"]["SOA"]["TTL"] == 30
    assert re.fullmatch(r"Z[A-Z0-9]{20}", ns["Properties"]["DnsProperties"]["HostedZoneId"])

    update = sd.update_private_dns_namespace(
        Id=private_id,
        Namespace={"Properties": {"DnsProperties": {"SOA": {"TTL": 90}}}},
    )
    assert wait_operation(sd, update["OperationId"])["Status"] == "SUCCESS"
    ns = sd.get_namespace(Id=private_id)["Namespace"]
    assert ns["Properties"]["DnsProperties"]["SOA"]["TTL"] == 90

    public = sd.create_public_dns_namespace(Name=f"{unique}.example.com")["OperationId"]
    public_id = wait_operation(sd, public)["Targets"]["NAMESPACE"]
    assert sd.get_namespace(Id=public_id)["Namespace"]["Type"] == "DNS_PUBLIC"
    with pytest.raises(ClientError) as excinfo:
        sd.update_http_namespace(Id=public_id, Namespace={"Description": "x"})
    assert error_of(excinfo)[0] == "InvalidInput"

    with pytest.raises(ClientError) as excinfo:
        sd.create_private_dns_namespace(Name="bad..name", Vpc="vpc-1")
    assert error_of(excinfo) == ("InvalidInput", 400)


def test_list_namespaces_filters_and_pagination(sd: Any, unique: str) -> None:
    ids = {http_namespace(sd, f"{unique}-{i}") for i in range(5)}
    seen: set[str] = set()
    kwargs: dict[str, Any] = {
        "MaxResults": 2,
        "Filters": [{"Name": "NAME", "Values": [unique], "Condition": "BEGINS_WITH"}],
    }
    pages = 0
    while True:
        page = sd.list_namespaces(**kwargs)
        pages += 1
        assert len(page["Namespaces"]) <= 2
        seen.update(n["Id"] for n in page["Namespaces"])
        if "NextToken" not in page:
            break
        kwargs["NextToken"] = page["NextToken"]
    assert seen == ids
    assert pages == 3

    paginator = sd.get_paginator("list_namespaces")
    listed = [
        n["Id"]
        for p in paginator.paginate(
            Filters=[{"Name": "TYPE", "Values": ["HTTP"], "Condition": "EQ"}],
            PaginationConfig={"PageSize": 3},
        )
        for n in p["Namespaces"]
    ]
    assert ids <= set(listed)


def test_services_attributes_and_tags(sd: Any, unique: str) -> None:
    ns_id = dns_namespace(sd, f"{unique}.local")
    service = sd.create_service(
        Name="worker",
        NamespaceId=ns_id,
        CreatorRequestId=f"{unique}-req",
        DnsConfig={
            "RoutingPolicy": "MULTIVALUE",
            "DnsRecords": [{"Type": "A", "TTL": 10}, {"Type": "SRV", "TTL": 10}],
        },
        HealthCheckCustomConfig={},
        Tags=[{"Key": "env", "Value": "prod"}],
    )["Service"]
    assert re.fullmatch(r"srv-[a-z0-9]{16}", service["Id"])
    assert service["Type"] == "DNS_HTTP"
    assert service["Arn"].endswith(f":service/{service['Id']}")
    assert service["DnsConfig"]["DnsRecords"] == [
        {"Type": "A", "TTL": 10},
        {"Type": "SRV", "TTL": 10},
    ]

    # The same CreatorRequestId is an idempotent retry; another one is a conflict.
    again = sd.create_service(
        Name="worker",
        NamespaceId=ns_id,
        CreatorRequestId=f"{unique}-req",
        DnsConfig={"DnsRecords": [{"Type": "A", "TTL": 10}]},
    )["Service"]
    assert again["Id"] == service["Id"]
    with pytest.raises(ClientError) as excinfo:
        sd.create_service(
            Name="worker", NamespaceId=ns_id, DnsConfig={"DnsRecords": [{"Type": "A", "TTL": 10}]}
        )
    assert error_of(excinfo) == ("ServiceAlreadyExists", 400)
    assert excinfo.value.response["ServiceId"] == service["Id"]

    got = sd.get_service(Id=service["Id"])["Service"]
    assert got["Name"] == "worker"
    assert got["NamespaceId"] == ns_id
    listed = sd.list_services(Filters=[{"Name": "NAMESPACE_ID", "Values": [ns_id]}])["Services"]
    assert [s["Id"] for s in listed] == [service["Id"]]

    update = sd.update_service(
        Id=service["Id"],
        Service={
            "Description": "workers",
            "DnsConfig": {"DnsRecords": [{"Type": "A", "TTL": 30}, {"Type": "SRV", "TTL": 20}]},
        },
    )
    assert wait_operation(sd, update["OperationId"])["Status"] == "SUCCESS"
    got = sd.get_service(Id=service["Id"])["Service"]
    assert got["Description"] == "workers"
    assert {r["Type"]: r["TTL"] for r in got["DnsConfig"]["DnsRecords"]} == {"A": 30, "SRV": 20}
    with pytest.raises(ClientError) as excinfo:
        sd.update_service(
            Id=service["Id"], Service={"DnsConfig": {"DnsRecords": [{"Type": "AAAA", "TTL": 5}]}}
        )
    assert error_of(excinfo)[0] == "InvalidInput"

    sd.update_service_attributes(ServiceId=service["Id"], Attributes={"tier": "gold", "x": "1"})
    sd.delete_service_attributes(ServiceId=service["Id"], Attributes=["x"])
    attrs = sd.get_service_attributes(ServiceId=service["Id"])["ServiceAttributes"]
    assert attrs["Attributes"] == {"tier": "gold"}
    assert attrs["ServiceArn"] == service["Arn"]
    with pytest.raises(ClientError) as excinfo:
        sd.update_service_attributes(
            ServiceId=service["Id"], Attributes={f"k{i}": "v" for i in range(30)}
        )
    assert error_of(excinfo)[0] == "ServiceAttributesLimitExceededException"

    arn = service["Arn"]
    sd.tag_resource(ResourceARN=arn, Tags=[{"Key": "owner", "Value": "ops"}])
    sd.untag_resource(ResourceARN=arn, TagKeys=["env"])
    assert sd.list_tags_for_resource(ResourceARN=arn)["Tags"] == [{"Key": "owner", "Value": "ops"}]
    with pytest.raises(ClientError) as excinfo:
        sd.list_tags_for_resource(ResourceARN=arn.replace(service["Id"], "srv-doesnotexist0000"))
    assert error_of(excinfo) == ("ResourceNotFoundException", 404)


def test_register_discover_and_revisions(sd: Any, unique: str) -> None:
    ns_id = http_namespace(sd, unique)
    service = sd.create_service(Name="worker", NamespaceId=ns_id)["Service"]
    sid = service["Id"]
    for i, env in enumerate(["prod", "prod", "staging"]):
        op = sd.register_instance(
            ServiceId=sid,
            InstanceId=f"task-{i}",
            Attributes={
                "AWS_INSTANCE_IPV4": f"10.0.0.{i + 1}",
                "AWS_INSTANCE_PORT": "8080",
                "env": env,
            },
        )
        assert wait_operation(sd, op["OperationId"])["Status"] == "SUCCESS"

    found = sd.discover_instances(
        NamespaceName=unique, ServiceName="worker", QueryParameters={"env": "prod"}
    )
    assert sorted(i["InstanceId"] for i in found["Instances"]) == ["task-0", "task-1"]
    assert all(i["HealthStatus"] == "UNKNOWN" for i in found["Instances"])
    assert found["Instances"][0]["NamespaceName"] == unique
    revision = found["InstancesRevision"]
    assert (
        sd.discover_instances_revision(NamespaceName=unique, ServiceName="worker")[
            "InstancesRevision"
        ]
        == revision
    )

    optional = sd.discover_instances(
        NamespaceName=unique, ServiceName="worker", OptionalParameters={"env": "qa"}
    )
    assert len(optional["Instances"]) == 3  # optional filter matching nothing is dropped
    limited = sd.discover_instances(NamespaceName=unique, ServiceName="worker", MaxResults=1)
    assert len(limited["Instances"]) == 1

    # A read does not move the revision; a change to the set does.
    assert (
        sd.discover_instances(NamespaceName=unique, ServiceName="worker")["InstancesRevision"]
        == revision
    )
    dereg = sd.deregister_instance(ServiceId=sid, InstanceId="task-2")
    assert wait_operation(sd, dereg["OperationId"])["Status"] == "SUCCESS"
    after = sd.discover_instances(NamespaceName=unique, ServiceName="worker")
    assert after["InstancesRevision"] > revision
    assert len(after["Instances"]) == 2

    got = sd.get_instance(ServiceId=sid, InstanceId="task-0")["Instance"]
    assert got["Attributes"]["env"] == "prod"
    listed = sd.list_instances(ServiceId=sid, MaxResults=1)
    assert len(listed["Instances"]) == 1 and "NextToken" in listed
    rest = sd.list_instances(ServiceId=sid, NextToken=listed["NextToken"])
    assert {i["Id"] for i in listed["Instances"] + rest["Instances"]} == {"task-0", "task-1"}

    with pytest.raises(ClientError) as excinfo:
        sd.get_instance(ServiceId=sid, InstanceId="nope")
    assert error_of(excinfo) == ("InstanceNotFound", 404)
    with pytest.raises(ClientError) as excinfo:
        sd.deregister_instance(ServiceId=sid, InstanceId="nope")
    assert error_of(excinfo) == ("InstanceNotFound", 404)
    with pytest.raises(ClientError) as excinfo:
        sd.discover_instances(NamespaceName=unique, ServiceName="absent")
    assert error_of(excinfo) == ("ServiceNotFound", 404)
    with pytest.raises(ClientError) as excinfo:
        sd.discover_instances(NamespaceName=f"{unique}-absent", ServiceName="worker")
    assert error_of(excinfo) == ("NamespaceNotFound", 404)
    with pytest.raises(ClientError) as excinfo:
        sd.register_instance(
            ServiceId="srv-doesnotexist0000", InstanceId="x", Attributes={"a": "b"}
        )
    assert error_of(excinfo) == ("ServiceNotFound", 404)


def test_custom_health(sd: Any, unique: str) -> None:
    ns_id = http_namespace(sd, unique)
    custom = sd.create_service(Name="api", NamespaceId=ns_id, HealthCheckCustomConfig={})[
        "Service"
    ]["Id"]
    plain = sd.create_service(Name="plain", NamespaceId=ns_id)["Service"]["Id"]
    for i in range(2):
        sd.register_instance(ServiceId=custom, InstanceId=f"i{i}", Attributes={"n": str(i)})
    sd.register_instance(
        ServiceId=custom, InstanceId="late", Attributes={"AWS_INIT_HEALTH_STATUS": "UNHEALTHY"}
    )
    sd.register_instance(ServiceId=plain, InstanceId="p0", Attributes={"n": "0"})

    status = sd.get_instances_health_status(ServiceId=custom)["Status"]
    assert status == {"i0": "HEALTHY", "i1": "HEALTHY", "late": "UNHEALTHY"}
    before = sd.discover_instances_revision(NamespaceName=unique, ServiceName="api")[
        "InstancesRevision"
    ]

    sd.update_instance_custom_health_status(ServiceId=custom, InstanceId="i1", Status="UNHEALTHY")
    healthy = sd.discover_instances(NamespaceName=unique, ServiceName="api", HealthStatus="HEALTHY")
    assert [i["InstanceId"] for i in healthy["Instances"]] == ["i0"]
    assert healthy["InstancesRevision"] > before
    unhealthy = sd.discover_instances(
        NamespaceName=unique, ServiceName="api", HealthStatus="UNHEALTHY"
    )
    assert sorted(i["InstanceId"] for i in unhealthy["Instances"]) == ["i1", "late"]

    # Setting the same status again changes nothing, not even the revision.
    current = healthy["InstancesRevision"]
    sd.update_instance_custom_health_status(ServiceId=custom, InstanceId="i1", Status="UNHEALTHY")
    assert (
        sd.discover_instances_revision(NamespaceName=unique, ServiceName="api")["InstancesRevision"]
        == current
    )

    sd.update_instance_custom_health_status(ServiceId=custom, InstanceId="i0", Status="UNHEALTHY")
    fallback = sd.discover_instances(
        NamespaceName=unique, ServiceName="api", HealthStatus="HEALTHY_OR_ELSE_ALL"
    )
    assert len(fallback["Instances"]) == 3
    assert (
        sd.discover_instances(NamespaceName=unique, ServiceName="api", HealthStatus="HEALTHY")[
            "Instances"
        ]
        == []
    )

    page = sd.get_instances_health_status(ServiceId=custom, Instances=["i0"], MaxResults=1)
    assert page["Status"] == {"i0": "UNHEALTHY"}

    with pytest.raises(ClientError) as excinfo:
        sd.update_instance_custom_health_status(ServiceId=plain, InstanceId="p0", Status="HEALTHY")
    assert error_of(excinfo) == ("CustomHealthNotFound", 404)
    with pytest.raises(ClientError) as excinfo:
        sd.update_instance_custom_health_status(ServiceId=custom, InstanceId="x", Status="HEALTHY")
    assert error_of(excinfo) == ("InstanceNotFound", 404)


def test_operations_listing(sd: Any, unique: str) -> None:
    ns_id = http_namespace(sd, unique)
    sid = sd.create_service(Name="svc", NamespaceId=ns_id)["Service"]["Id"]
    op = sd.register_instance(ServiceId=sid, InstanceId="a", Attributes={"k": "v"})["OperationId"]
    wait_operation(sd, op)
    listed = sd.list_operations(
        Filters=[
            {"Name": "SERVICE_ID", "Values": [sid], "Condition": "EQ"},
            {"Name": "STATUS", "Values": ["SUCCESS", "FAIL"], "Condition": "IN"},
        ]
    )["Operations"]
    assert listed == [{"Id": op, "Status": "SUCCESS"}]
    got = sd.get_operation(OperationId=op)["Operation"]
    assert got["Type"] == "REGISTER_INSTANCE"
    assert got["Targets"] == {"INSTANCE": "a", "SERVICE": sid}
    with pytest.raises(ClientError) as excinfo:
        sd.get_operation(OperationId="doesnotexist")
    assert error_of(excinfo) == ("OperationNotFound", 404)


def test_validation_errors_name_the_field(sd: Any, unique: str) -> None:
    ns_id = http_namespace(sd, unique)
    with pytest.raises(ClientError) as excinfo:
        sd.create_service(Name="bad name!", NamespaceId=ns_id)
    code, status = error_of(excinfo)
    assert (code, status) == ("InvalidInput", 400)
    assert "Name" in excinfo.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as excinfo:
        sd.create_service(
            Name="dns-in-http",
            NamespaceId=ns_id,
            DnsConfig={"DnsRecords": [{"Type": "A", "TTL": 5}]},
        )
    assert "HTTP namespace" in excinfo.value.response["Error"]["Message"]


def test_json11_protocol_and_error_shape(server: ServerProcess, unique: str) -> None:
    """The aws CLI and older SDKs speak JSON 1.1; errors carry __type and Message."""
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "Route53AutoNaming_v20170314.GetInstance",
        "Host": "data-servicediscovery.us-east-1.amazonaws.com",
    }
    body = {"ServiceId": "srv-doesnotexist0000", "InstanceId": "i-1"}
    response = httpx.post(server.url + "/", headers=headers, content=json.dumps(body))
    assert response.status_code == 404
    payload = response.json()
    assert payload["__type"] == "ServiceNotFound"
    assert "srv-doesnotexist0000" in payload["Message"]

    headers["X-Amz-Target"] = "Route53AutoNaming_v20170314.CreateHttpNamespace"
    response = httpx.post(server.url + "/", headers=headers, content=json.dumps({"Name": unique}))
    assert response.status_code == 200
    assert "OperationId" in response.json()

    headers["X-Amz-Target"] = "Route53AutoNaming_v20170314.ListNamespaces"
    response = httpx.post(server.url + "/", headers=headers, content=b"{not json")
    assert response.status_code == 400
    assert response.json()["__type"] == "SerializationException"

    headers["X-Amz-Target"] = "Route53AutoNaming_v20170314.NoSuchOperation"
    response = httpx.post(server.url + "/", headers=headers, content=b"{}")
    assert response.status_code == 400
    assert response.json()["__type"] == "UnknownOperationException"


def test_region_comes_from_the_signature(server: ServerProcess, unique: str) -> None:
    sd = servicediscovery_client(server.url, region="eu-west-1")
    op = sd.create_http_namespace(Name=unique)["OperationId"]
    ns_id = wait_operation(sd, op)["Targets"]["NAMESPACE"]
    arn = sd.get_namespace(Id=ns_id)["Namespace"]["Arn"]
    assert arn == f"arn:aws:servicediscovery:eu-west-1:{ACCOUNT}:namespace/{ns_id}"


def test_host_prefix_is_not_routed_on(server: ServerProcess, unique: str) -> None:
    """boto3's default data- host prefix only changes the Host header; we never route on it."""
    import boto3

    sd = servicediscovery_client(server.url)
    http_namespace(sd, unique)
    default = boto3.client(
        "servicediscovery",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="a",
        aws_secret_access_key="b",
    )
    # The prefixed host (data-127.0.0.1) does not resolve, which is why users disable the
    # prefix; here we send to the real address with the Host header boto3 would use.
    assert default.meta.service_model.operation_model("DiscoverInstances").endpoint == {
        "hostPrefix": "data-"
    }
    response = httpx.post(
        server.url + "/",
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "Route53AutoNaming_v20170314.DiscoverInstancesRevision",
            "Host": "data-localhost",
        },
        content=json.dumps({"NamespaceName": unique, "ServiceName": "absent"}),
    )
    assert response.status_code == 404
    assert response.json()["__type"] == "ServiceNotFound"
