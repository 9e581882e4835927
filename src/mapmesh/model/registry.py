"""Typed registry resources: namespaces, services, instances, operations.

Field names are snake_case in Python and Cloud Map's PascalCase on the wire and in the store
(``model_dump(by_alias=True)``), so one model serves the API, the store and the DNS builder.
Models are frozen: a change is a new value (``model_copy(update=...)``), which lets readers
compare old and new records cheaply and share them between threads.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_pascal

from mapmesh.model.health import HealthCheckType

__all__ = [
    "ATTR_CNAME",
    "ATTR_INIT_HEALTH_STATUS",
    "ATTR_IPV4",
    "ATTR_IPV6",
    "ATTR_PORT",
    "DnsConfig",
    "DnsRecord",
    "HealthCheckConfig",
    "HealthCheckCustomConfig",
    "HealthCheckType",
    "HealthStatus",
    "Instance",
    "Namespace",
    "NamespaceType",
    "Operation",
    "OperationStatus",
    "OperationType",
    "RecordType",
    "RoutingPolicy",
    "Service",
    "ServiceType",
    "Tag",
    "WireModel",
]

ATTR_IPV4 = "AWS_INSTANCE_IPV4"
ATTR_IPV6 = "AWS_INSTANCE_IPV6"
ATTR_PORT = "AWS_INSTANCE_PORT"
ATTR_CNAME = "AWS_INSTANCE_CNAME"
ATTR_INIT_HEALTH_STATUS = "AWS_INIT_HEALTH_STATUS"


class WireModel(BaseModel):
    """Base of every registry model: frozen, PascalCase aliases, unknown fields rejected."""

    model_config = ConfigDict(
        frozen=True,
        alias_generator=to_pascal,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=False,
    )

    def wire(self) -> dict[str, Any]:
        """The Cloud Map wire shape: PascalCase keys, absent fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="python")


class NamespaceType(StrEnum):
    HTTP = "HTTP"
    DNS_PRIVATE = "DNS_PRIVATE"
    DNS_PUBLIC = "DNS_PUBLIC"


class ServiceType(StrEnum):
    HTTP = "HTTP"
    DNS_HTTP = "DNS_HTTP"
    DNS = "DNS"


class RoutingPolicy(StrEnum):
    MULTIVALUE = "MULTIVALUE"
    WEIGHTED = "WEIGHTED"


class RecordType(StrEnum):
    A = "A"
    AAAA = "AAAA"
    SRV = "SRV"
    CNAME = "CNAME"


class HealthStatus(StrEnum):
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    UNKNOWN = "UNKNOWN"


class OperationStatus(StrEnum):
    SUBMITTED = "SUBMITTED"
    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    FAIL = "FAIL"


class OperationType(StrEnum):
    CREATE_NAMESPACE = "CREATE_NAMESPACE"
    DELETE_NAMESPACE = "DELETE_NAMESPACE"
    UPDATE_NAMESPACE = "UPDATE_NAMESPACE"
    UPDATE_SERVICE = "UPDATE_SERVICE"
    REGISTER_INSTANCE = "REGISTER_INSTANCE"
    DEREGISTER_INSTANCE = "DEREGISTER_INSTANCE"


class Tag(WireModel):
    key: str
    value: str


class Soa(WireModel):
    ttl: int = Field(alias="TTL")


class DnsProperties(WireModel):
    hosted_zone_id: str | None = None
    soa: Soa | None = Field(default=None, alias="SOA")


class HttpProperties(WireModel):
    http_name: str | None = None


class NamespaceProperties(WireModel):
    dns_properties: DnsProperties | None = None
    http_properties: HttpProperties | None = None


class Namespace(WireModel):
    id: str
    arn: str
    name: str
    type: NamespaceType
    description: str | None = None
    properties: NamespaceProperties
    create_date: datetime
    creator_request_id: str | None = None
    resource_owner: str
    vpc: str | None = None
    tags: tuple[Tag, ...] = ()

    @property
    def http_name(self) -> str:
        """The name DiscoverInstances looks namespaces up by (HttpName, else Name)."""
        http = self.properties.http_properties
        return http.http_name if http is not None and http.http_name else self.name

    @property
    def is_dns(self) -> bool:
        return self.type is not NamespaceType.HTTP

    @property
    def soa_ttl(self) -> int:
        dns = self.properties.dns_properties
        return dns.soa.ttl if dns is not None and dns.soa is not None else 15


class DnsRecord(WireModel):
    type: RecordType
    ttl: int = Field(alias="TTL")


class DnsConfig(WireModel):
    namespace_id: str | None = None
    routing_policy: RoutingPolicy = RoutingPolicy.MULTIVALUE
    dns_records: tuple[DnsRecord, ...]


class HealthCheckConfig(WireModel):
    type: HealthCheckType
    resource_path: str | None = None
    failure_threshold: int | None = None


class HealthCheckCustomConfig(WireModel):
    failure_threshold: int | None = None


class Service(WireModel):
    id: str
    arn: str
    name: str
    namespace_id: str
    type: ServiceType
    description: str | None = None
    dns_config: DnsConfig | None = None
    health_check_config: HealthCheckConfig | None = None
    health_check_custom_config: HealthCheckCustomConfig | None = None
    create_date: datetime
    creator_request_id: str | None = None
    created_by_account: str
    resource_owner: str
    attributes: dict[str, str] = Field(default_factory=dict)
    tags: tuple[Tag, ...] = ()

    @property
    def has_health_check(self) -> bool:
        return self.health_check_config is not None or self.health_check_custom_config is not None


class Instance(WireModel):
    """A registered instance and its current health, stored as one record."""

    id: str
    service_id: str
    attributes: dict[str, str]
    creator_request_id: str | None = None
    created_by_account: str
    health_status: HealthStatus = HealthStatus.UNKNOWN
    health_reason: str | None = None
    health_changed_at: datetime | None = None
    registered_at: datetime

    @property
    def ipv4(self) -> str | None:
        return self.attributes.get(ATTR_IPV4)

    @property
    def ipv6(self) -> str | None:
        return self.attributes.get(ATTR_IPV6)

    @property
    def port(self) -> int | None:
        raw = self.attributes.get(ATTR_PORT)
        return int(raw) if raw is not None and raw.isascii() and raw.isdigit() else None


class Operation(WireModel):
    id: str
    type: OperationType
    status: OperationStatus
    error_code: str | None = None
    error_message: str | None = None
    create_date: datetime
    update_date: datetime
    targets: dict[str, str] = Field(default_factory=dict)
    owner_account: str
    # The request the operation carries out, kept so it can be resumed after a restart.
    request: dict[str, Any] = Field(default_factory=dict)
