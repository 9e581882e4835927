"""The registry's in-memory read model, kept current from the store's watch.

Discovery, DNS and health checks all read the registry far more often than it changes, so
they read this view instead of the store. The view loads everything under ``registry/`` once,
then applies watch batches in revision order; after each batch it tells its listeners which
namespaces and services changed, so they rebuild only those (the DNS answer tables, the
health-check schedule).

Readers that must observe a write (read-your-writes for the API) call :meth:`wait_for` with
the revision the write returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mapmesh.model.registry import HealthStatus, Instance, Namespace, Service
from mapmesh.registry import keys
from mapmesh.store import Event, EventType, KeyValue, Store
from mapmesh.store.follower import PrefixFollower

__all__ = ["RegistryView", "ViewChange"]


@dataclass(slots=True)
class ViewChange:
    """What one applied batch touched. ``reset`` means everything may have changed."""

    revision: int
    namespaces: set[str] = field(default_factory=set)
    services: set[str] = field(default_factory=set)
    reset: bool = False


class RegistryView(PrefixFollower[ViewChange]):
    def __init__(self, store: Store) -> None:
        super().__init__(store, keys.REGISTRY)
        self.namespaces: dict[str, Namespace] = {}
        self.services: dict[str, Service] = {}
        self.instances: dict[str, dict[str, Instance]] = {}
        self.instances_revision: dict[str, int] = {}

    # -- queries -------------------------------------------------------------------------

    def namespace_by_http_name(self, name: str) -> Namespace | None:
        lowered = name.lower()
        for namespace in self.namespaces.values():
            if namespace.http_name.lower() == lowered:
                return namespace
        return None

    def service_by_name(self, namespace_id: str, name: str) -> Service | None:
        lowered = name.lower()
        for service in self.services.values():
            if service.namespace_id == namespace_id and service.name.lower() == lowered:
                return service
        return None

    def services_in(self, namespace_id: str) -> list[Service]:
        return [s for s in self.services.values() if s.namespace_id == namespace_id]

    def instances_of(self, service_id: str) -> dict[str, Instance]:
        return self.instances.get(service_id, {})

    def healthy_instances(self, service_id: str) -> list[Instance]:
        return [
            i
            for i in self.instances_of(service_id).values()
            if i.health_status is not HealthStatus.UNHEALTHY
        ]

    # -- applying store data -------------------------------------------------------------

    def _reset(self, entries: list[KeyValue], revision: int) -> ViewChange:
        self.namespaces.clear()
        self.services.clear()
        self.instances.clear()
        self.instances_revision.clear()
        change = ViewChange(revision=revision, reset=True)
        for kv in entries:
            self._apply_put(kv.key, kv.value, kv.mod_revision, change)
        return change

    def _apply(self, batch: list[Event]) -> ViewChange:
        change = ViewChange(revision=batch[-1].revision)
        for event in batch:
            if event.type is EventType.PUT:
                self._apply_put(event.key, event.value, event.revision, change)
            else:
                self._apply_delete(event.key, change)
        return change

    def _apply_put(self, key: str, value: bytes, revision: int, change: ViewChange) -> None:
        if key.startswith(keys.NAMESPACES):
            namespace = Namespace.model_validate_json(value)
            self.namespaces[namespace.id] = namespace
            change.namespaces.add(namespace.id)
        elif key.startswith(keys.SERVICES):
            service = Service.model_validate_json(value)
            self.services[service.id] = service
            change.services.add(service.id)
            change.namespaces.add(service.namespace_id)
        elif key.startswith(keys.INSTANCES):
            instance = Instance.model_validate_json(value)
            self.instances.setdefault(instance.service_id, {})[instance.id] = instance
            change.services.add(instance.service_id)
        elif key.startswith(keys.REVISIONS):
            service_id = key[len(keys.REVISIONS) :]
            self.instances_revision[service_id] = revision
            change.services.add(service_id)

    def _apply_delete(self, key: str, change: ViewChange) -> None:
        if key.startswith(keys.NAMESPACES):
            namespace_id = key[len(keys.NAMESPACES) :]
            self.namespaces.pop(namespace_id, None)
            change.namespaces.add(namespace_id)
        elif key.startswith(keys.SERVICES):
            service_id = key[len(keys.SERVICES) :]
            service = self.services.pop(service_id, None)
            change.services.add(service_id)
            if service is not None:
                change.namespaces.add(service.namespace_id)
        elif key.startswith(keys.INSTANCES):
            service_id, _, instance_id = key[len(keys.INSTANCES) :].partition("/")
            bucket = self.instances.get(service_id)
            if bucket is not None:
                bucket.pop(instance_id, None)
                if not bucket:
                    del self.instances[service_id]
            change.services.add(service_id)
        elif key.startswith(keys.REVISIONS):
            service_id = key[len(keys.REVISIONS) :]
            self.instances_revision.pop(service_id, None)
            change.services.add(service_id)
