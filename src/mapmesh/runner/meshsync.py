"""Put what an app file derives into a control plane, through its public APIs (blocking I/O).

Everything goes through the same clients and apply logic as ``mapmesh apply -f`` and the
registry commands: the derived resources become mesh-file documents that are planned and
carried out by :mod:`mapmesh.cli.mesh_commands` (so applying twice changes nothing), and the
Cloud Map namespace and services are created with the registry commands' request builders.

The supervisor calls these from a worker thread; each raises
:class:`~mapmesh.cli.client.ClientError` when the control plane refuses or is unreachable.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from mapmesh.cli.appmesh_client import AppMeshClient
from mapmesh.cli.client import ApiError, CloudMapClient, wait_for_operation
from mapmesh.runner.derive import OWNER_TAG, Derived, to_documents

__all__ = ["MeshSync"]

log = logging.getLogger("mapmesh.runner")

_DNS_TTL = 5  # seconds: replicas come and go often on a developer's machine
_VPC = "vpc-mapmesh"


class MeshSync:
    def __init__(self, endpoint: str) -> None:
        self.appmesh = AppMeshClient(endpoint)
        self.cloud_map = CloudMapClient(endpoint)

    # -- Cloud Map -----------------------------------------------------------------------

    def ensure_cloud_map(self, derived: Derived) -> dict[str, Any]:
        """Create the namespace and the services that are missing; the namespace summary."""
        from mapmesh.cli.registry_commands import (
            NamespaceKind,
            health_request,
            namespace_create_request,
            service_dns_request,
        )
        from mapmesh.cli.resolve import find_namespace, services_in

        try:
            namespace = find_namespace(self.cloud_map, derived.namespace)
        except ApiError as exc:
            if exc.code != "NamespaceNotFound":
                raise
            operation, params = namespace_create_request(
                derived.namespace, NamespaceKind.dns_private, f"mapmesh app {derived.mesh}",
                None, _VPC,
            )  # fmt: skip
            answer = self.cloud_map.call(operation, **params)
            wait_for_operation(self.cloud_map, str(answer["OperationId"]))
            namespace = find_namespace(self.cloud_map, derived.namespace)
        existing = {str(s["Name"]).lower() for s in services_in(self.cloud_map, namespace["Id"])}
        for name in derived.cloud_map_services:
            if name.lower() in existing:
                continue
            self.cloud_map.call(
                "CreateService",
                Name=name,
                NamespaceId=namespace["Id"],
                **service_dns_request(["A", "SRV"], _DNS_TTL, None, namespace),
                **health_request(None, None, None, custom=True),
                Tags=[{"Key": OWNER_TAG, "Value": derived.mesh}],
            )
        return namespace

    def deregister_leftovers(self, derived: Derived) -> int:
        """Deregister instances a previous runner left behind (those carrying ``replica``);
        called before this runner starts any replica. How many were removed."""
        from mapmesh.cli.resolve import find_namespace, services_in

        namespace = find_namespace(self.cloud_map, derived.namespace)
        removed = 0
        for service in services_in(self.cloud_map, namespace["Id"]):
            if service["Name"] not in derived.cloud_map_services:
                continue
            instances = self.cloud_map.paginate(
                "ListInstances", "Instances", ServiceId=service["Id"]
            )
            for instance in instances:
                if "replica" in (instance.get("Attributes") or {}):
                    self.cloud_map.call(
                        "DeregisterInstance", ServiceId=service["Id"], InstanceId=instance["Id"]
                    )
                    removed += 1
        return removed

    # -- App Mesh ------------------------------------------------------------------------

    def apply(self, derived: Derived, source: str) -> Counter[str]:
        """Create or update every derived resource, dependencies first; counts by result."""
        from mapmesh.cli.mesh_commands import carry_out, live_change
        from mapmesh.cli.meshfile import Action, apply_order

        results: Counter[str] = Counter()
        for document in apply_order(to_documents(derived, source)):
            change, data = live_change(self.appmesh, document)
            if change.action is not Action.UNCHANGED:
                carry_out(self.appmesh, change, data)
                log.info("%s %s", document.label, change.action.value)
            results[change.action.value] += 1
        return results

    def prune(self, derived: Derived) -> list[str]:
        """Delete the runner's resources in the mesh that ``derived`` no longer has (users
        before what they use); resources without the runner's tag are left alone."""
        from mapmesh.cli.meshfile import APPLY_ORDER
        from mapmesh.mesh.kinds import KINDS, ResourceId

        wanted = derived.names()
        stale: list[ResourceId] = []
        for kind_name in APPLY_ORDER[1:]:
            kind = KINDS[kind_name]
            if kind.parent is not None:
                parents = [
                    str(p[KINDS[kind.parent].name_field])
                    for p in self.appmesh.list_refs(kind.parent, derived.mesh)
                ]
            else:
                parents = [None]  # type: ignore[list-item]
            for parent in parents:
                for ref in self.appmesh.list_refs(kind_name, derived.mesh, parent):
                    name = str(ref[kind.name_field])
                    if (kind.title, parent, name) in wanted:
                        continue
                    if self._owned(str(ref["arn"]), derived.mesh):
                        stale.append(ResourceId(kind_name, derived.mesh, parent, name))
        removed: list[str] = []
        for rid in reversed(stale):  # found in apply order; delete in reverse
            try:
                self.appmesh.delete(rid)
            except ApiError as exc:
                if exc.code != "NotFoundException":
                    raise
            removed.append(f"{KINDS[rid.kind].title} {rid.mesh}/{rid.name}")
        return removed

    def _owned(self, arn: str, mesh: str) -> bool:
        tags = {t.get("key"): t.get("value") for t in self.appmesh.tags(arn)}
        return tags.get(OWNER_TAG) == mesh
