"""Registry rules the wire model cannot express, with messages that name the field."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from mapmesh.model.registry import (
    ATTR_CNAME,
    ATTR_INIT_HEALTH_STATUS,
    ATTR_IPV4,
    ATTR_IPV6,
    ATTR_PORT,
    DnsConfig,
    RecordType,
    RoutingPolicy,
    Service,
)
from mapmesh.registry.errors import invalid_input

__all__ = [
    "MAX_INSTANCE_ATTRIBUTES",
    "MAX_SERVICE_ATTRIBUTES",
    "MAX_TAGS",
    "check_dns_config",
    "check_dns_name",
    "check_instance_attributes",
]

MAX_TAGS = 50
MAX_SERVICE_ATTRIBUTES = 30
MAX_INSTANCE_ATTRIBUTES = 30
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def check_dns_name(name: str, field: str = "Name") -> None:
    """A DNS namespace's name must be a domain name we can serve as a zone."""
    stripped = name[:-1] if name.endswith(".") else name
    if not stripped or len(stripped) > 253:
        raise invalid_input(f"{field}: a DNS namespace name must be 1 to 253 characters")
    for label in stripped.split("."):
        if not _LABEL.match(label):
            raise invalid_input(
                f"{field}: {name!r} is not a valid domain name (label {label!r}: letters, "
                "digits, '-' and '_', 1 to 63 characters, not starting or ending with '-')"
            )


def check_dns_config(config: DnsConfig, field: str = "DnsConfig") -> None:
    types = [record.type for record in config.dns_records]
    if not types:
        raise invalid_input(f"{field}.DnsRecords: at least one record is required")
    if len(set(types)) != len(types):
        raise invalid_input(f"{field}.DnsRecords: each record type may appear only once")
    if RecordType.CNAME in types:
        if len(types) != 1:
            raise invalid_input(f"{field}.DnsRecords: a CNAME record cannot be combined")
        if config.routing_policy is not RoutingPolicy.WEIGHTED:
            raise invalid_input(f"{field}.RoutingPolicy: CNAME records require WEIGHTED")


def _check_ip(value: str, version: int, key: str) -> None:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise invalid_input(f"Attributes.{key}: {value!r} is not an IPv{version} address") from None
    if address.version != version:
        raise invalid_input(f"Attributes.{key}: {value!r} is not an IPv{version} address")


def check_instance_attributes(service: Service, attributes: Mapping[str, str]) -> None:
    """Attributes must carry what the service's DNS records need (as Cloud Map requires)."""
    if len(attributes) > MAX_INSTANCE_ATTRIBUTES:
        raise invalid_input(f"Attributes: at most {MAX_INSTANCE_ATTRIBUTES} attributes")
    for key, value in attributes.items():
        if not key or len(key) > 255:
            raise invalid_input("Attributes: keys must be 1 to 255 characters")
        if len(value) > 1024:
            raise invalid_input(f"Attributes.{key}: values must be at most 1024 characters")
    if ATTR_IPV4 in attributes:
        _check_ip(attributes[ATTR_IPV4], 4, ATTR_IPV4)
    if ATTR_IPV6 in attributes:
        _check_ip(attributes[ATTR_IPV6], 6, ATTR_IPV6)
    if ATTR_PORT in attributes:
        port = attributes[ATTR_PORT]
        if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise invalid_input(f"Attributes.{ATTR_PORT}: {port!r} is not a port (1-65535)")
    init = attributes.get(ATTR_INIT_HEALTH_STATUS)
    if init is not None:
        if init not in ("HEALTHY", "UNHEALTHY"):
            raise invalid_input(f"Attributes.{ATTR_INIT_HEALTH_STATUS}: HEALTHY or UNHEALTHY")
        if service.health_check_custom_config is None:
            raise invalid_input(
                f"Attributes.{ATTR_INIT_HEALTH_STATUS}: only for services with "
                "HealthCheckCustomConfig"
            )
    if service.dns_config is None:
        return
    types = {record.type for record in service.dns_config.dns_records}
    needs = {
        RecordType.A: (ATTR_IPV4,),
        RecordType.AAAA: (ATTR_IPV6,),
        RecordType.CNAME: (ATTR_CNAME,),
    }
    for record_type, required in needs.items():
        if record_type in types and not any(key in attributes for key in required):
            raise invalid_input(
                f"Attributes: the service has a {record_type} record, so {required[0]} is required"
            )
    if RecordType.SRV in types:
        if ATTR_PORT not in attributes:
            raise invalid_input(
                f"Attributes: the service has an SRV record, so {ATTR_PORT} is required"
            )
        if not ({RecordType.A, RecordType.AAAA} & types) and not (
            ATTR_IPV4 in attributes or ATTR_IPV6 in attributes
        ):
            raise invalid_input(
                f"Attributes: an SRV record needs {ATTR_IPV4} or {ATTR_IPV6} for its target"
            )
    if service.health_check_config is not None and not (
        ATTR_IPV4 in attributes or ATTR_IPV6 in attributes
    ):
        raise invalid_input(
            f"Attributes: the service has a HealthCheckConfig, so {ATTR_IPV4} or {ATTR_IPV6} "
            "is required for the checker to reach the instance"
        )
