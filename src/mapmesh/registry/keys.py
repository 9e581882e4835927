"""Where registry records live in the store.

Everything the read model (view) follows sits under ``registry/``; operations, which only the
API reads, sit apart so the view's watch does not carry them.
"""

from __future__ import annotations

__all__ = [
    "INSTANCES",
    "NAMESPACES",
    "OPERATIONS",
    "REGISTRY",
    "REVISIONS",
    "SERVICES",
    "instance_key",
    "instances_prefix",
    "namespace_key",
    "operation_key",
    "revision_key",
    "service_key",
]

REGISTRY = "registry/"
NAMESPACES = REGISTRY + "namespaces/"
SERVICES = REGISTRY + "services/"
INSTANCES = REGISTRY + "instances/"
REVISIONS = REGISTRY + "revisions/"
OPERATIONS = "operations/"


def namespace_key(namespace_id: str) -> str:
    return NAMESPACES + namespace_id


def service_key(service_id: str) -> str:
    return SERVICES + service_id


def instances_prefix(service_id: str) -> str:
    return f"{INSTANCES}{service_id}/"


def instance_key(service_id: str, instance_id: str) -> str:
    return f"{INSTANCES}{service_id}/{instance_id}"


def revision_key(service_id: str) -> str:
    """A marker rewritten whenever the service's discoverable instance set changes.

    Its mod revision is the service's InstancesRevision, which therefore only moves forward,
    even across deletions and restarts.
    """
    return REVISIONS + service_id


def operation_key(operation_id: str) -> str:
    return OPERATIONS + operation_id
