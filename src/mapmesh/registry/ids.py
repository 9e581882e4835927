"""Identifiers and ARNs in Cloud Map's formats.

Namespace ids look like ``ns-e4anhexample0004``, service ids like ``srv-e4anhexample0004``
(a prefix and 16 lowercase alphanumerics), operation ids like
``gv4g5meo7ndmeh4fqskygvk23d2fijwa-k9302yzd`` and hosted zone ids like ``Z0123456789ABCDEFGHIJ``.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

__all__ = [
    "Arn",
    "namespace_arn",
    "new_hosted_zone_id",
    "new_namespace_id",
    "new_operation_id",
    "new_service_id",
    "parse_arn",
    "service_arn",
]

_LOWER = string.ascii_lowercase + string.digits
_UPPER = string.ascii_uppercase + string.digits


def _random(alphabet: str, size: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(size))


def new_namespace_id() -> str:
    return "ns-" + _random(_LOWER, 16)


def new_service_id() -> str:
    return "srv-" + _random(_LOWER, 16)


def new_operation_id() -> str:
    return _random(_LOWER, 32) + "-" + _random(_LOWER, 8)


def new_hosted_zone_id() -> str:
    return "Z" + _random(_UPPER, 20)


def namespace_arn(region: str, account: str, namespace_id: str) -> str:
    return f"arn:aws:servicediscovery:{region}:{account}:namespace/{namespace_id}"


def service_arn(region: str, account: str, service_id: str) -> str:
    return f"arn:aws:servicediscovery:{region}:{account}:service/{service_id}"


@dataclass(frozen=True, slots=True)
class Arn:
    region: str
    account: str
    resource_type: str
    resource_id: str


def parse_arn(value: str) -> Arn | None:
    """Parse a Cloud Map ARN; ``None`` when ``value`` is not one."""
    parts = value.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "servicediscovery":
        return None
    resource_type, _, resource_id = parts[5].partition("/")
    if not resource_id:
        return None
    return Arn(parts[3], parts[4], resource_type, resource_id)
