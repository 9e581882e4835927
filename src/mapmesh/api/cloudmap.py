"""Cloud Map's 30 operations, from validated wire parameters to registry calls and back.

This is the one module that turns Cloud Map request dicts into registry arguments. Handlers
return plain dicts in the wire shape; the caller trims them to the operation's output shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from mapmesh.core.context import CallerContext
from mapmesh.model.registry import (
    DnsConfig,
    HealthCheckConfig,
    HealthCheckCustomConfig,
    HealthStatus,
    Instance,
    Namespace,
    NamespaceType,
    Operation,
    Service,
    Tag,
)
from mapmesh.registry.errors import RegistryError, invalid_input
from mapmesh.registry.pagination import paginate
from mapmesh.registry.registry import Registry

__all__ = ["HANDLERS", "Handler"]

Params = dict[str, Any]
Handler = Callable[[Registry, CallerContext, Params], Awaitable[dict[str, Any]]]
HANDLERS: dict[str, Handler] = {}

_DEFAULT_PAGE = 100


def operation(func: Handler) -> Handler:
    """Register a handler under its Cloud Map operation name (the function's name)."""
    name = "".join(part.title() for part in func.__name__.split("_"))
    HANDLERS[name] = func
    return func


def _tags(p: Params) -> list[Tag]:
    return [Tag.model_validate(t) for t in p.get("Tags") or []]


def _soa_ttl(p: Params) -> int | None:
    props = (p.get("Properties") or {}).get("DnsProperties") or {}
    soa = props.get("SOA")
    return int(soa["TTL"]) if soa else None


# -- namespaces --------------------------------------------------------------------------


async def _create_namespace(
    reg: Registry, ctx: CallerContext, p: Params, kind: NamespaceType
) -> dict[str, Any]:
    operation_id = await reg.create_namespace(
        ctx,
        type=kind,
        name=p["Name"],
        description=p.get("Description"),
        creator_request_id=p.get("CreatorRequestId"),
        soa_ttl=_soa_ttl(p),
        vpc=p.get("Vpc"),
        tags=_tags(p),
    )
    return {"OperationId": operation_id}


@operation
async def create_http_namespace(reg: Registry, ctx: CallerContext, p: Params) -> dict[str, Any]:
    return await _create_namespace(reg, ctx, p, NamespaceType.HTTP)


@operation
async def create_private_dns_namespace(
    reg: Registry, ctx: CallerContext, p: Params
) -> dict[str, Any]:
    return await _create_namespace(reg, ctx, p, NamespaceType.DNS_PRIVATE)


@operation
async def create_public_dns_namespace(
    reg: Registry, ctx: CallerContext, p: Params
) -> dict[str, Any]:
    return await _create_namespace(reg, ctx, p, NamespaceType.DNS_PUBLIC)


async def _update_namespace(
    reg: Registry, ctx: CallerContext, p: Params, kind: NamespaceType
) -> dict[str, Any]:
    change = p["Namespace"]
    if not change:
        raise invalid_input("Namespace: specify Description or Properties to change")
    operation_id = await reg.update_namespace(
        ctx,
        p["Id"],
        expected_type=kind,
        description=change.get("Description"),
        soa_ttl=_soa_ttl(change),
        updater_request_id=p.get("UpdaterRequestId"),
    )
    return {"OperationId": operation_id}


@operation
async def update_http_namespace(reg: Registry, ctx: CallerContext, p: Params) -> dict[str, Any]:
    return await _update_namespace(reg, ctx, p, NamespaceType.HTTP)


@operation
async def update_private_dns_namespace(
    reg: Registry, ctx: CallerContext, p: Params
) -> dict[str, Any]:
    return await _update_namespace(reg, ctx, p, NamespaceType.DNS_PRIVATE)


@operation
async def update_public_dns_namespace(
    reg: Registry, ctx: CallerContext, p: Params
) -> dict[str, Any]:
    return await _update_namespace(reg, ctx, p, NamespaceType.DNS_PUBLIC)


@operation
async def delete_namespace(reg: Registry, ctx: CallerContext, p: Params) -> dict[str, Any]:
    return {"OperationId": await reg.delete_namespace(ctx, p["Id"])}


def _namespace_wire(reg: Registry, namespace: Namespace) -> dict[str, Any]:
    return {**namespace.wire(), "ServiceCount": reg.service_count(namespace.id)}


@operation
async def get_namespace(reg: Registry, ctx: CallerContext, p: Params) -> dict[str, Any]:
    return {"Namespace": _namespace_wire(reg, reg.namespace(p["Id"]))}


def _condition(f: Params) -> str:
    return str(f.get("Condition") or "EQ")


def _filter_values(f: Params, allowed: tuple[str, ...]) -> list[str]:
    condition = _condition(f)
    if condition not in allowed:
        raise invalid_input(
            f"Filters: condition {condition} is not supported for {f['Name']}; "
            f"use one of {', '.join(allowed)}"
        )
    values: list[str] = f["Values"]
    if condition == "EQ" and len(values) != 1:
        raise invalid_input(f"Filters: EQ on {f['Name']} takes exactly one value")
    return values


def _namespace_matches(reg: Registry, namespace: Namespace, filters: list[Params]) -> bool:
    for f in filters:
        name = f["Name"]
        if name == "TYPE":
            if namespace.type.value not in _filter_values(f, ("EQ", "IN")):
                return False
        elif name in ("NAME", "HTTP_NAME"):
            target = namespace.name if name == "NAME" else namespace.http_name
            values = _filter_values(f, ("EQ", "BEGINS_WITH"))
            if _condition(f) == "BEGINS_WITH":
                if not any(target.startswith(v) for v in values):
                    return False
            elif target != values[0]:
                return False
        elif name == "RESOURCE_OWNER":
            values = _filter_values(f, ("EQ",))
            if namespace.resource_owner != values[0] and values[0] != "SELF":
                return False
    return True


def _page_size(p: Params) -> int:
    return int(p.get("MaxResults") or _DEFAULT_PAGE)


@operation
async def list_namespaces(reg: Registry, ctx: CallerContext, p: Params) -> dict[str, Any]:
    filters = p.get("Filters") or []
    namespaces = sorted(
        (n for n in reg.view.namespaces.values() if _namespace_matches(reg, n, filters)),
        key=lambda n: n.id,
    )
    page, token = paginate(namespaces, lambda n: n.id, _page_size(p), p.get("NextToken"))
    return {"Namespaces": [_namespace_wire(reg, n) for n in page], "NextToken": token}


# -- services ----------------------------------------------------------------------------


def _service_wire(reg: Registry, service: Service) -> dict[str, Any]:
    wire = service.wire()
    if service.dns_config is not None:
        # Cloud Map still echoes the deprecated DnsConfig.NamespaceId.
        wire["DnsConfig"] = {**wire["DnsConfig"], "NamespaceId": service.namespace_id}
    return {**wire, "InstanceCount": reg.instance_count(service.id)}


@operation
async def create_service(reg: Registry, ctx: CallerContext, p: Params) -> dict[str, Any]:
    dns = p.get("DnsConfig")
    health = p.get("HealthCheckConfig")
    custom = p.get("HealthCheckCustomConfig")
    service = await reg.create_service(
        ctx,
        name=p["Name"],
        namespace_id=p.get("NamespaceId"),
        description=p.get("Description"),
        creator_request_id=p.get("CreatorRequestId"),
        dns_config=DnsConfig.model_validate(dns) if dns else None,
        health_check_config=HealthCheckConfig.model_validate(health) if health else None,
        health_check_custom_config=(
            HealthCheckCustomConfig.model_validate(custom) if custom is not None else None
        ),
        service_type=p.get("Type"),
        tags=_tags(p),
    )
    return {"Service": _service_wire(reg, service)}


@operation
async def get_service(reg: Registry, ctx: CallerContext, p: Params) -> dict[str, Any]:
    return {"Service": _service_wire(reg, reg.service(p["Id"]))}


@operation
async def update_service(reg: Registry, ctx: CallerContext, p: Params) -> dict[str, Any]:
    change = p["Service"]
    health = change.get("HealthCheckConfig")
    dns = change.get("DnsConfig")
    operation_id = await reg.update_service(
        ctx,
        p["Id"],
        description=change.get("Description"),
        dns_records=dns["DnsRecords"] if dns else None,
        health_check_config=HealthCheckConfig.model_validate(health) if health else None,
    )
    return {"OperationId": operation_id}


@operation
async def delete_service(reg: Registry, ctx: CallerContext, p: Params) -> dict[str, Any]:
    await reg.delete_service(p["Id"])
    return {}


@operation
async def list_services(reg: Registry, ctx: CallerContext, p: Params) -> dict[str, Any]:
    services = list(reg.view.services.values())
    for f in p.get("Filters") or []:
        if f["Name"] == "NAMESPACE_ID":
            wanted = set(_filter_values(f, ("EQ", "IN")))
            services = [s for s in services if s.namespace_id in wanted]
        elif f["Name"] == "RESOURCE_OWNER":
            owner = _filter_values(f, ("EQ",))[0]
            services = [s for s in services if owner in ("SELF", s.resource_owner)]
    services.sort(key=lambda s: s.id)
    page, token = paginate(services, lambda s: s.id, _page_size(p), p.get("NextToken"))
    return {"Services": [_service_wire(reg, s) for s in page], "NextToken": token}


@operation
async def get_service_attributes(reg: Registry, ctx: CallerContext, p: Params) -> dict[str, Any]:
    service = reg.service(p["ServiceId"])
    return {
        "ServiceAttributes": {
            "ServiceArn": service.arn,
            "ResourceOwner": service.resource_owner,
            "Attributes": service.attributes,
        }
    }


@operation
async def update_service_attributes(reg: Registry, ctx: CallerContext, p: Params) -> dict[str, Any]:
    await reg.update_service_attributes(p["ServiceId"], p["Attributes"])
    return {}


@operation
async def delete_service_attributes(reg: Registry, ctx: CallerContext, p: Params) -> dict[str, Any]:
    await reg.delete_service_attributes(p["ServiceId"], p["Attributes"])
    return {}


# -- instances ---------------------------------------------------------------------------


@operation
async def register_instance(reg: Registry, ctx: CallerContext, p: Params) -> dict[str, Any]:
    operation_id = await reg.register_instance(
        ctx, p["ServiceId"], p["InstanceId"], p["Attributes"], p.get("CreatorRequestId")
    )
    return {"OperationId": operation_id}


@operation
async def deregister_instance(reg: Registry, ctx: CallerContext, p: Params) -> dict[str, Any]:
    return {"OperationId": await reg.deregister_instance(ctx, p["ServiceId"], p["InstanceId"])}


def _instance_wire(instance: Instance) -> dict[str, Any]:
    return {
        "Id": instance.id,
        "Attributes": instance.attributes,
        "CreatorRequestId": instance.creator_request_id,
        "CreatedByAccount": instance.created_by_account,
    }


@operation
async def get_instance(reg: Registry, ctx: CallerContext, p: Params) -> dict[str, Any]:
    instance = reg.instance(p["ServiceId"], p["InstanceId"])
    service = reg.service(p["ServiceId"])
    return {"Instance": _instance_wire(instance), "ResourceOwner": service.resource_owner}


@operation
async def list_instances(reg: Registry, ctx: CallerContext, p: Params) -> dict[str, Any]:
    service = reg.service(p["ServiceId"])
    instances = sorted(reg.view.instances_of(service.id).values(), key=lambda i: i.id)
    page, token = paginate(instances, lambda i: i.id, _page_size(p), p.get("NextToken"))
    return {
        "Instances": [_instance_wire(i) for i in page],
        "NextToken": token,
        "ResourceOwner": service.resource_owner,
    }


@operation
async def get_instances_health_status(
    reg: Registry, ctx: CallerContext, p: Params
) -> dict[str, Any]:
    service = reg.service(p["ServiceId"])
    known = reg.view.instances_of(service.id)
    wanted: list[str] | None = p.get("Instances")
    if wanted is not None:
        missing = [i for i in wanted if i not in known]
        if missing:
            raise RegistryError("InstanceNotFound", f"instances not found: {', '.join(missing)}")
        ids = sorted(set(wanted))
    else:
        ids = sorted(known)
    page, token = paginate(ids, lambda i: i, _page_size(p), p.get("NextToken"))
    status = {
        i: (known[i].health_status.value if service.has_health_check else "UNKNOWN") for i in page
    }
    return {"Status": status, "NextToken": token}


@operation
async def update_instance_custom_health_status(
    reg: Registry, ctx: CallerContext, p: Params
) -> dict[str, Any]:
    await reg.update_custom_health(p["ServiceId"], p["InstanceId"], HealthStatus(p["Status"]))
    return {}


@operation
async def discover_instances(reg: Registry, ctx: CallerContext, p: Params) -> dict[str, Any]:
    namespace, service, instances, revision = reg.discover(
        p["NamespaceName"],
        p["ServiceName"],
        query=p.get("QueryParameters"),
        optional=p.get("OptionalParameters"),
        health=p.get("HealthStatus") or "ALL",
        max_results=int(p.get("MaxResults") or _DEFAULT_PAGE),
    )
    return {
        "Instances": [
            {
                "InstanceId": i.id,
                "NamespaceName": namespace.http_name,
                "ServiceName": service.name,
                "HealthStatus": i.health_status.value if service.has_health_check else "UNKNOWN",
                "Attributes": i.attributes,
            }
            for i in instances
        ],
        "InstancesRevision": revision,
    }


@operation
async def discover_instances_revision(
    reg: Registry, ctx: CallerContext, p: Params
) -> dict[str, Any]:
    _, service = reg.discoverable(p["NamespaceName"], p["ServiceName"])
    return {"InstancesRevision": reg.view.instances_revision.get(service.id, 0)}


# -- operations --------------------------------------------------------------------------


def _operation_wire(op: Operation) -> dict[str, Any]:
    return op.wire()


@operation
async def get_operation(reg: Registry, ctx: CallerContext, p: Params) -> dict[str, Any]:
    op = await reg.operations.get(p["OperationId"])
    if op is None:
        raise RegistryError("OperationNotFound", f"operation {p['OperationId']} not found")
    return {"Operation": _operation_wire(op)}


def _operation_matches(op: Operation, f: Params) -> bool:
    name = f["Name"]
    if name == "UPDATE_DATE":
        values = _filter_values(f, ("BETWEEN",))
        if len(values) != 2:
            raise invalid_input("Filters: UPDATE_DATE BETWEEN takes two epoch timestamps")
        low, high = (_epoch(v) for v in values)
        return low <= op.update_date.timestamp() <= high
    attribute = {
        "NAMESPACE_ID": op.targets.get("NAMESPACE"),
        "SERVICE_ID": op.targets.get("SERVICE"),
        "STATUS": op.status.value,
        "TYPE": op.type.value,
    }[name]
    allowed = ("EQ",) if name in ("NAMESPACE_ID", "SERVICE_ID") else ("EQ", "IN")
    return attribute in _filter_values(f, allowed)


def _epoch(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            raise invalid_input(f"Filters: {value!r} is not a timestamp") from None


@operation
async def list_operations(reg: Registry, ctx: CallerContext, p: Params) -> dict[str, Any]:
    filters = p.get("Filters") or []
    ops = [
        op for op in await reg.operations.list() if all(_operation_matches(op, f) for f in filters)
    ]
    ops.sort(key=lambda op: (op.create_date.isoformat(), op.id))
    key = lambda op: f"{op.create_date.isoformat()}|{op.id}"  # noqa: E731
    page, token = paginate(ops, key, _page_size(p), p.get("NextToken"))
    return {
        "Operations": [{"Id": op.id, "Status": op.status.value} for op in page],
        "NextToken": token,
    }


# -- tags --------------------------------------------------------------------------------


@operation
async def list_tags_for_resource(reg: Registry, ctx: CallerContext, p: Params) -> dict[str, Any]:
    return {"Tags": [t.wire() for t in reg.tags_of(p["ResourceARN"])]}


@operation
async def tag_resource(reg: Registry, ctx: CallerContext, p: Params) -> dict[str, Any]:
    await reg.tag_resource(p["ResourceARN"], _tags(p))
    return {}


@operation
async def untag_resource(reg: Registry, ctx: CallerContext, p: Params) -> dict[str, Any]:
    await reg.untag_resource(p["ResourceARN"], p["TagKeys"])
    return {}
