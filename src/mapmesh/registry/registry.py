"""The registry: Cloud Map's namespaces, services and instances over the store.

Writes go to the store with compare-and-swap on the record's mod revision (retrying on a
lost race); reads come from the :class:`RegistryView`. After a write the registry waits until
the view has applied it, so whoever got the acknowledgement reads their own write.

Every change to a service's discoverable instance set (registration, deregistration, a health
transition) rewrites the service's revision marker in the same transaction; its mod revision is
the InstancesRevision that DiscoverInstances reports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from mapmesh.core.context import CallerContext
from mapmesh.model.registry import (
    ATTR_INIT_HEALTH_STATUS,
    DnsConfig,
    DnsProperties,
    HealthCheckConfig,
    HealthCheckCustomConfig,
    HealthStatus,
    HttpProperties,
    Instance,
    Namespace,
    NamespaceProperties,
    NamespaceType,
    Operation,
    OperationType,
    Service,
    ServiceType,
    Soa,
    Tag,
)
from mapmesh.registry import keys
from mapmesh.registry.errors import RegistryError, invalid_input
from mapmesh.registry.ids import (
    namespace_arn,
    new_hosted_zone_id,
    new_namespace_id,
    new_service_id,
    parse_arn,
    service_arn,
)
from mapmesh.registry.operations import OperationRunner
from mapmesh.registry.validation import (
    MAX_SERVICE_ATTRIBUTES,
    MAX_TAGS,
    check_dns_config,
    check_dns_name,
    check_instance_attributes,
)
from mapmesh.registry.view import RegistryView
from mapmesh.store import Compare, Delete, KeyValue, Put, Store

__all__ = ["Registry", "utc_now"]

_CAS_ATTEMPTS = 16
_OPERATION_WAIT = 2.0


def utc_now() -> datetime:
    return datetime.now(UTC)


Build = Callable[[KeyValue | None], list[Put | Delete]]


class Registry:
    def __init__(
        self,
        store: Store,
        view: RegistryView,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self.view = view
        self._clock = clock
        self.operations = OperationRunner(
            store,
            {
                OperationType.CREATE_NAMESPACE: self._apply_create_namespace,
                OperationType.UPDATE_NAMESPACE: self._apply_update_namespace,
                OperationType.DELETE_NAMESPACE: self._apply_delete_namespace,
                OperationType.UPDATE_SERVICE: self._apply_update_service,
                OperationType.REGISTER_INSTANCE: self._apply_register_instance,
                OperationType.DEREGISTER_INSTANCE: self._apply_deregister_instance,
            },
            clock,
        )

    async def start(self) -> None:
        await self.operations.resume()

    async def stop(self) -> None:
        await self.operations.stop()

    # -- shared write machinery ----------------------------------------------------------

    async def _cas(self, key: str, build: Build) -> int:
        """Apply ``build(current)`` atomically against the current value of ``key``.

        ``build`` may raise a RegistryError to refuse, or return no ops to write nothing.
        """
        for _ in range(_CAS_ATTEMPTS):
            current = await self._store.get(key)
            ops = build(current)
            if not ops:
                return self.view.revision
            compare = Compare(key, current.mod_revision if current is not None else 0)
            result = await self._store.txn([compare], ops)
            if result.succeeded:
                await self.view.wait_for(result.revision)
                return result.revision
        raise RegistryError("RequestLimitExceeded", f"too much contention on {key}; retry")

    async def _finish(self, op: Operation) -> None:
        """Wait briefly for an operation so the caller can read its own write."""
        revision = await self.operations.wait(op.id, _OPERATION_WAIT)
        if revision is not None:
            await self.view.wait_for(revision)

    async def _submit(
        self,
        op_type: OperationType,
        targets: dict[str, str],
        request: dict[str, Any],
        ctx: CallerContext,
        target: str | None = None,
    ) -> str:
        op = await self.operations.submit(op_type, targets, request, ctx.account, target=target)
        await self._finish(op)
        return op.id

    # -- lookups -------------------------------------------------------------------------

    @staticmethod
    def _id_from(value: str, resource_type: str) -> str:
        """Accept an id or an ARN of ``resource_type`` (Cloud Map takes both)."""
        arn = parse_arn(value)
        if arn is None:
            return value
        if arn.resource_type != resource_type:
            raise invalid_input(f"{value!r} is not a {resource_type} ARN")
        return arn.resource_id

    def namespace(self, namespace_id: str) -> Namespace:
        namespace = self.view.namespaces.get(self._id_from(namespace_id, "namespace"))
        if namespace is None:
            raise RegistryError("NamespaceNotFound", f"namespace {namespace_id} not found")
        return namespace

    def service(self, service_id: str) -> Service:
        service = self.view.services.get(self._id_from(service_id, "service"))
        if service is None:
            raise RegistryError("ServiceNotFound", f"service {service_id} not found")
        return service

    def instance(self, service_id: str, instance_id: str) -> Instance:
        service = self.service(service_id)
        instance = self.view.instances_of(service.id).get(instance_id)
        if instance is None:
            raise RegistryError(
                "InstanceNotFound", f"instance {instance_id} not found in service {service.id}"
            )
        return instance

    def service_count(self, namespace_id: str) -> int:
        return len(self.view.services_in(namespace_id))

    def instance_count(self, service_id: str) -> int:
        return len(self.view.instances_of(service_id))

    # -- namespaces ----------------------------------------------------------------------

    async def create_namespace(
        self,
        ctx: CallerContext,
        *,
        type: NamespaceType,
        name: str,
        description: str | None = None,
        creator_request_id: str | None = None,
        soa_ttl: int | None = None,
        vpc: str | None = None,
        tags: Iterable[Tag] = (),
    ) -> str:
        tags = tuple(tags)
        _check_tags(tags, name)
        if type is not NamespaceType.HTTP:
            check_dns_name(name)
        name = name[:-1] if type is not NamespaceType.HTTP and name.endswith(".") else name
        for existing in self.view.namespaces.values():
            if existing.name.lower() == name.lower() or existing.http_name.lower() == name.lower():
                raise RegistryError(
                    "NamespaceAlreadyExists",
                    f"a namespace named {name!r} already exists ({existing.id})",
                    CreatorRequestId=existing.creator_request_id or "",
                    NamespaceId=existing.id,
                )
        namespace_id = new_namespace_id()
        if type is NamespaceType.HTTP:
            properties = NamespaceProperties(http_properties=HttpProperties(http_name=name))
        else:
            properties = NamespaceProperties(
                dns_properties=DnsProperties(
                    hosted_zone_id=new_hosted_zone_id(),
                    soa=Soa(ttl=soa_ttl if soa_ttl is not None else 15),
                ),
                http_properties=HttpProperties(http_name=name),
            )
        namespace = Namespace(
            id=namespace_id,
            arn=namespace_arn(ctx.region, ctx.account, namespace_id),
            name=name,
            type=type,
            description=description,
            properties=properties,
            create_date=self._clock(),
            creator_request_id=creator_request_id,
            resource_owner=ctx.account,
            vpc=vpc,
            tags=tags,
        )
        return await self._submit(
            OperationType.CREATE_NAMESPACE,
            {"NAMESPACE": namespace_id},
            {"namespace": namespace.model_dump(mode="json")},
            ctx,
            target="namespace-name:" + name.lower(),
        )

    async def _apply_create_namespace(self, op: Operation, success: Put) -> int:
        namespace = Namespace.model_validate(op.request["namespace"])
        key = keys.namespace_key(namespace.id)

        def build(current: KeyValue | None) -> list[Put | Delete]:
            for other in self.view.namespaces.values():
                if other.id != namespace.id and other.name.lower() == namespace.name.lower():
                    raise RegistryError(
                        "NamespaceAlreadyExists", f"namespace {namespace.name!r} already exists"
                    )
            return [Put(key, namespace.model_dump_json().encode()), success]

        return await self._cas(key, build)

    async def update_namespace(
        self,
        ctx: CallerContext,
        namespace_id: str,
        *,
        expected_type: NamespaceType,
        description: str | None,
        soa_ttl: int | None,
        updater_request_id: str | None = None,
    ) -> str:
        namespace = self.namespace(namespace_id)
        if namespace.type is not expected_type:
            raise invalid_input(f"namespace {namespace.id} is a {namespace.type} namespace")
        return await self._submit(
            OperationType.UPDATE_NAMESPACE,
            {"NAMESPACE": namespace.id},
            {
                "namespace_id": namespace.id,
                "description": description,
                "soa_ttl": soa_ttl,
                "updater_request_id": updater_request_id,
            },
            ctx,
            target="namespace:" + namespace.id,
        )

    async def _apply_update_namespace(self, op: Operation, success: Put) -> int:
        namespace_id: str = op.request["namespace_id"]
        key = keys.namespace_key(namespace_id)

        def build(current: KeyValue | None) -> list[Put | Delete]:
            if current is None:
                raise RegistryError("NamespaceNotFound", f"namespace {namespace_id} not found")
            namespace = Namespace.model_validate_json(current.value)
            update: dict[str, Any] = {}
            if op.request.get("description") is not None:
                update["description"] = op.request["description"]
            soa_ttl = op.request.get("soa_ttl")
            dns = namespace.properties.dns_properties
            if soa_ttl is not None and dns is not None:
                update["properties"] = namespace.properties.model_copy(
                    update={"dns_properties": dns.model_copy(update={"soa": Soa(ttl=soa_ttl)})}
                )
            changed = namespace.model_copy(update=update)
            return [Put(key, changed.model_dump_json().encode()), success]

        return await self._cas(key, build)

    async def delete_namespace(self, ctx: CallerContext, namespace_id: str) -> str:
        namespace = self.namespace(namespace_id)
        if self.view.services_in(namespace.id):
            raise RegistryError(
                "ResourceInUse",
                f"namespace {namespace.id} still has services; delete them first",
            )
        return await self._submit(
            OperationType.DELETE_NAMESPACE,
            {"NAMESPACE": namespace.id},
            {"namespace_id": namespace.id},
            ctx,
            target="namespace:" + namespace.id,
        )

    async def _apply_delete_namespace(self, op: Operation, success: Put) -> int:
        namespace_id: str = op.request["namespace_id"]
        key = keys.namespace_key(namespace_id)

        def build(current: KeyValue | None) -> list[Put | Delete]:
            if self.view.services_in(namespace_id):
                raise RegistryError("ResourceInUse", f"namespace {namespace_id} has services")
            return ([Delete(key)] if current is not None else []) + [success]

        return await self._cas(key, build)

    # -- services ------------------------------------------------------------------------

    async def create_service(
        self,
        ctx: CallerContext,
        *,
        name: str,
        namespace_id: str | None,
        description: str | None = None,
        creator_request_id: str | None = None,
        dns_config: DnsConfig | None = None,
        health_check_config: HealthCheckConfig | None = None,
        health_check_custom_config: HealthCheckCustomConfig | None = None,
        service_type: str | None = None,
        tags: Iterable[Tag] = (),
    ) -> Service:
        tags = tuple(tags)
        _check_tags(tags, name)
        namespace_ref = namespace_id or (dns_config.namespace_id if dns_config else None)
        if namespace_ref is None:
            raise invalid_input("NamespaceId: required (or DnsConfig.NamespaceId)")
        namespace = self.namespace(namespace_ref)
        if health_check_config is not None and health_check_custom_config is not None:
            raise invalid_input(
                "HealthCheckConfig and HealthCheckCustomConfig cannot both be specified"
            )
        if dns_config is not None:
            if namespace.type is NamespaceType.HTTP:
                raise invalid_input("DnsConfig: not allowed in an HTTP namespace")
            if service_type == "HTTP":
                raise invalid_input("DnsConfig: not allowed when Type is HTTP")
            check_dns_config(dns_config)
            dns_config = dns_config.model_copy(update={"namespace_id": None})
            kind = ServiceType.DNS_HTTP
        elif namespace.type is not NamespaceType.HTTP and service_type != "HTTP":
            raise invalid_input(
                "DnsConfig: required in a DNS namespace unless Type is HTTP "
                "(then instances are discoverable only through the API)"
            )
        else:
            kind = ServiceType.HTTP
        if namespace.is_dns and dns_config is not None:
            check_dns_name(f"{name}.{namespace.name}", "Name")
        existing = self.view.service_by_name(namespace.id, name)
        if existing is not None:
            if creator_request_id is not None and existing.creator_request_id == creator_request_id:
                return existing
            raise RegistryError(
                "ServiceAlreadyExists",
                f"service {name!r} already exists in namespace {namespace.id} ({existing.id})",
                CreatorRequestId=existing.creator_request_id or "",
                ServiceId=existing.id,
                ServiceArn=existing.arn,
            )
        service_id = new_service_id()
        service = Service(
            id=service_id,
            arn=service_arn(ctx.region, ctx.account, service_id),
            name=name,
            namespace_id=namespace.id,
            type=kind,
            description=description,
            dns_config=dns_config,
            health_check_config=health_check_config,
            health_check_custom_config=health_check_custom_config,
            create_date=self._clock(),
            creator_request_id=creator_request_id,
            created_by_account=ctx.account,
            resource_owner=namespace.resource_owner,
            tags=tags,
        )
        key = keys.service_key(service_id)

        def build(current: KeyValue | None) -> list[Put | Delete]:
            clash = self.view.service_by_name(namespace.id, name)
            if clash is not None or namespace.id not in self.view.namespaces:
                raise RegistryError("ServiceAlreadyExists", f"service {name!r} already exists")
            return [
                Put(key, service.model_dump_json().encode()),
                Put(keys.revision_key(service_id), b""),
            ]

        await self._cas(key, build)
        return service

    async def _update_service_record(
        self, service_id: str, change: Callable[[Service], Service]
    ) -> Service:
        service = self.service(service_id)
        key = keys.service_key(service.id)
        updated: list[Service] = []

        def build(current: KeyValue | None) -> list[Put | Delete]:
            if current is None:
                raise RegistryError("ServiceNotFound", f"service {service_id} not found")
            new = change(Service.model_validate_json(current.value))
            updated.append(new)
            return [Put(key, new.model_dump_json().encode())]

        await self._cas(key, build)
        return updated[-1]

    async def update_service(
        self,
        ctx: CallerContext,
        service_id: str,
        *,
        description: str | None,
        dns_records: list[dict[str, Any]] | None,
        health_check_config: HealthCheckConfig | None,
    ) -> str:
        service = self.service(service_id)
        if dns_records is not None:
            if service.dns_config is None:
                raise invalid_input("Service.DnsConfig: the service has no DNS configuration")
            old = sorted(r.type for r in service.dns_config.dns_records)
            new = sorted(str(r["Type"]) for r in dns_records)
            if old != new:
                raise invalid_input(
                    "Service.DnsConfig.DnsRecords: record types cannot change; only TTLs can"
                )
        if health_check_config is not None and service.health_check_custom_config is not None:
            raise invalid_input(
                "Service.HealthCheckConfig: the service uses HealthCheckCustomConfig"
            )
        return await self._submit(
            OperationType.UPDATE_SERVICE,
            {"SERVICE": service.id},
            {
                "service_id": service.id,
                "description": description,
                "dns_records": dns_records,
                "health_check_config": (
                    health_check_config.model_dump(mode="json") if health_check_config else None
                ),
            },
            ctx,
            target="service:" + service.id,
        )

    async def _apply_update_service(self, op: Operation, success: Put) -> int:
        request = op.request
        service_id: str = request["service_id"]
        key = keys.service_key(service_id)

        def build(current: KeyValue | None) -> list[Put | Delete]:
            if current is None:
                raise RegistryError("ServiceNotFound", f"service {service_id} not found")
            service = Service.model_validate_json(current.value)
            update: dict[str, Any] = {}
            if request.get("description") is not None:
                update["description"] = request["description"]
            if request.get("dns_records") is not None and service.dns_config is not None:
                records = tuple(
                    r.model_copy(update={"ttl": _ttl_for(request["dns_records"], r.type)})
                    for r in service.dns_config.dns_records
                )
                update["dns_config"] = service.dns_config.model_copy(
                    update={"dns_records": records}
                )
            if request.get("health_check_config") is not None:
                update["health_check_config"] = HealthCheckConfig.model_validate(
                    request["health_check_config"]
                )
            new = service.model_copy(update=update)
            return [Put(key, new.model_dump_json().encode()), success]

        return await self._cas(key, build)

    async def delete_service(self, service_id: str) -> None:
        service = self.service(service_id)
        if self.view.instances_of(service.id):
            raise RegistryError(
                "ResourceInUse",
                f"service {service.id} still has registered instances; deregister them first",
            )
        key = keys.service_key(service.id)

        def build(current: KeyValue | None) -> list[Put | Delete]:
            if self.view.instances_of(service.id):
                raise RegistryError("ResourceInUse", f"service {service.id} has instances")
            return [Delete(key), Delete(keys.revision_key(service.id))]

        await self._cas(key, build)

    async def update_service_attributes(
        self, service_id: str, attributes: Mapping[str, str]
    ) -> None:
        def change(service: Service) -> Service:
            merged = {**service.attributes, **attributes}
            if len(merged) > MAX_SERVICE_ATTRIBUTES:
                raise RegistryError(
                    "ServiceAttributesLimitExceededException",
                    f"a service can have at most {MAX_SERVICE_ATTRIBUTES} attributes",
                )
            return service.model_copy(update={"attributes": merged})

        await self._update_service_record(service_id, change)

    async def delete_service_attributes(self, service_id: str, names: Iterable[str]) -> None:
        drop = set(names)

        def change(service: Service) -> Service:
            kept = {k: v for k, v in service.attributes.items() if k not in drop}
            return service.model_copy(update={"attributes": kept})

        await self._update_service_record(service_id, change)

    # -- tags ----------------------------------------------------------------------------

    def _tagged(self, arn: str) -> Namespace | Service:
        parsed = parse_arn(arn)
        resource: Namespace | Service | None = None
        if parsed is not None and parsed.resource_type == "namespace":
            resource = self.view.namespaces.get(parsed.resource_id)
        elif parsed is not None and parsed.resource_type == "service":
            resource = self.view.services.get(parsed.resource_id)
        if resource is None or resource.arn != arn:
            raise RegistryError("ResourceNotFoundException", f"resource {arn} not found")
        return resource

    def tags_of(self, arn: str) -> tuple[Tag, ...]:
        return self._tagged(arn).tags

    async def tag_resource(self, arn: str, tags: Iterable[Tag]) -> None:
        await self._retag(arn, lambda old: _merge_tags(old, tuple(tags), arn))

    async def untag_resource(self, arn: str, tag_keys: Iterable[str]) -> None:
        drop = set(tag_keys)
        await self._retag(arn, lambda old: tuple(t for t in old if t.key not in drop))

    async def _retag(self, arn: str, change: Callable[[tuple[Tag, ...]], tuple[Tag, ...]]) -> None:
        resource = self._tagged(arn)
        if isinstance(resource, Service):
            await self._update_service_record(
                resource.id, lambda s: s.model_copy(update={"tags": change(s.tags)})
            )
            return
        key = keys.namespace_key(resource.id)

        def build(current: KeyValue | None) -> list[Put | Delete]:
            if current is None:
                raise RegistryError("ResourceNotFoundException", f"resource {arn} not found")
            namespace = Namespace.model_validate_json(current.value)
            new = namespace.model_copy(update={"tags": change(namespace.tags)})
            return [Put(key, new.model_dump_json().encode())]

        await self._cas(key, build)

    # -- instances -----------------------------------------------------------------------

    async def register_instance(
        self,
        ctx: CallerContext,
        service_id: str,
        instance_id: str,
        attributes: Mapping[str, str],
        creator_request_id: str | None = None,
    ) -> str:
        service = self.service(service_id)
        check_instance_attributes(service, attributes)
        return await self._submit(
            OperationType.REGISTER_INSTANCE,
            {"INSTANCE": instance_id, "SERVICE": service.id},
            {
                "service_id": service.id,
                "instance_id": instance_id,
                "attributes": dict(attributes),
                "creator_request_id": creator_request_id,
                "account": ctx.account,
            },
            ctx,
            target=keys.instance_key(service.id, instance_id),
        )

    async def _apply_register_instance(self, op: Operation, success: Put) -> int:
        request = op.request
        service_id: str = request["service_id"]
        instance_id: str = request["instance_id"]
        attributes: dict[str, str] = request["attributes"]
        key = keys.instance_key(service_id, instance_id)

        def build(current: KeyValue | None) -> list[Put | Delete]:
            service = self.view.services.get(service_id)
            if service is None:
                raise RegistryError("ServiceNotFound", f"service {service_id} not found")
            now = self._clock()
            if current is not None:
                old = Instance.model_validate_json(current.value)
                instance = old.model_copy(
                    update={
                        "attributes": attributes,
                        "creator_request_id": request.get("creator_request_id"),
                    }
                )
            else:
                status = _initial_health(service, attributes)
                instance = Instance(
                    id=instance_id,
                    service_id=service_id,
                    attributes=attributes,
                    creator_request_id=request.get("creator_request_id"),
                    created_by_account=request["account"],
                    health_status=status,
                    health_reason="registered",
                    health_changed_at=now,
                    registered_at=now,
                )
            return [
                Put(key, instance.model_dump_json().encode()),
                Put(keys.revision_key(service_id), b""),
                success,
            ]

        return await self._cas(key, build)

    async def deregister_instance(
        self, ctx: CallerContext, service_id: str, instance_id: str
    ) -> str:
        instance = self.instance(service_id, instance_id)
        return await self._submit(
            OperationType.DEREGISTER_INSTANCE,
            {"INSTANCE": instance.id, "SERVICE": instance.service_id},
            {"service_id": instance.service_id, "instance_id": instance.id},
            ctx,
            target=keys.instance_key(instance.service_id, instance.id),
        )

    async def _apply_deregister_instance(self, op: Operation, success: Put) -> int:
        service_id: str = op.request["service_id"]
        instance_id: str = op.request["instance_id"]
        key = keys.instance_key(service_id, instance_id)

        def build(current: KeyValue | None) -> list[Put | Delete]:
            if current is None:
                raise RegistryError("InstanceNotFound", f"instance {instance_id} not found")
            return [Delete(key), Put(keys.revision_key(service_id), b""), success]

        return await self._cas(key, build)

    async def update_custom_health(
        self, service_id: str, instance_id: str, status: HealthStatus
    ) -> None:
        service = self.service(service_id)
        if service.health_check_custom_config is None:
            raise RegistryError(
                "CustomHealthNotFound",
                f"service {service.id} has no HealthCheckCustomConfig; custom health status "
                "can only be set for services created with one",
            )
        self.instance(service.id, instance_id)
        await self.record_health(service.id, instance_id, status, "custom health status")

    async def record_health(
        self, service_id: str, instance_id: str, status: HealthStatus, reason: str
    ) -> None:
        """Store a health transition; a status equal to the current one writes nothing."""
        key = keys.instance_key(service_id, instance_id)

        def build(current: KeyValue | None) -> list[Put | Delete]:
            if current is None:
                return []
            instance = Instance.model_validate_json(current.value)
            if instance.health_status is status:
                return []
            changed = instance.model_copy(
                update={
                    "health_status": status,
                    "health_reason": reason,
                    "health_changed_at": self._clock(),
                }
            )
            return [
                Put(key, changed.model_dump_json().encode()),
                Put(keys.revision_key(service_id), b""),
            ]

        await self._cas(key, build)

    # -- discovery -----------------------------------------------------------------------

    def discover(
        self,
        namespace_name: str,
        service_name: str,
        *,
        query: Mapping[str, str] | None = None,
        optional: Mapping[str, str] | None = None,
        health: str = "ALL",
        max_results: int | None = None,
    ) -> tuple[Namespace, Service, list[Instance], int]:
        namespace, service = self.discoverable(namespace_name, service_name)
        instances = sorted(self.view.instances_of(service.id).values(), key=lambda i: i.id)
        if query:
            instances = [i for i in instances if _matches(i, query)]
        if optional:
            narrowed = [i for i in instances if _matches(i, optional)]
            instances = narrowed or instances
        instances = _filter_health(instances, health)
        if max_results is not None:
            instances = instances[:max_results]
        return namespace, service, instances, self.view.instances_revision.get(service.id, 0)

    def discoverable(self, namespace_name: str, service_name: str) -> tuple[Namespace, Service]:
        namespace = self.view.namespace_by_http_name(namespace_name)
        if namespace is None:
            raise RegistryError("NamespaceNotFound", f"namespace {namespace_name!r} not found")
        service = self.view.service_by_name(namespace.id, service_name)
        if service is None:
            raise RegistryError(
                "ServiceNotFound", f"service {service_name!r} not found in {namespace_name!r}"
            )
        return namespace, service


def _matches(instance: Instance, wanted: Mapping[str, str]) -> bool:
    attributes = instance.attributes
    return all(attributes.get(k) == v for k, v in wanted.items())


def _filter_health(instances: list[Instance], health: str) -> list[Instance]:
    if health == "ALL":
        return instances
    healthy = [i for i in instances if i.health_status is not HealthStatus.UNHEALTHY]
    if health == "HEALTHY":
        return healthy
    if health == "UNHEALTHY":
        return [i for i in instances if i.health_status is HealthStatus.UNHEALTHY]
    return healthy or instances  # HEALTHY_OR_ELSE_ALL


def _initial_health(service: Service, attributes: Mapping[str, str]) -> HealthStatus:
    if service.health_check_custom_config is not None:
        return HealthStatus(attributes.get(ATTR_INIT_HEALTH_STATUS, "HEALTHY"))
    if service.health_check_config is not None:
        return HealthStatus.HEALTHY
    return HealthStatus.UNKNOWN


def _ttl_for(records: list[dict[str, Any]], record_type: str) -> int:
    for record in records:
        if record["Type"] == record_type:
            return int(record["TTL"])
    raise invalid_input(f"Service.DnsConfig.DnsRecords: no {record_type} record")


def _check_tags(tags: tuple[Tag, ...], resource: str) -> None:
    if len(tags) > MAX_TAGS:
        raise RegistryError(
            "TooManyTagsException", f"at most {MAX_TAGS} tags per resource", ResourceName=resource
        )


def _merge_tags(old: tuple[Tag, ...], new: tuple[Tag, ...], arn: str) -> tuple[Tag, ...]:
    merged = {t.key: t for t in old}
    merged.update({t.key: t for t in new})
    result = tuple(merged.values())
    _check_tags(result, arn)
    return result
