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

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mapmesh.model.registry import HealthStatus, Instance, Namespace, Service
from mapmesh.registry import keys
from mapmesh.store import Compacted, Event, EventType, Store, StoreClosed

__all__ = ["RegistryView", "ViewChange"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ViewChange:
    """What one applied batch touched. ``reset`` means everything may have changed."""

    revision: int
    namespaces: set[str] = field(default_factory=set)
    services: set[str] = field(default_factory=set)
    reset: bool = False


Listener = Callable[[ViewChange], None]


class RegistryView:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.namespaces: dict[str, Namespace] = {}
        self.services: dict[str, Service] = {}
        self.instances: dict[str, dict[str, Instance]] = {}
        self.instances_revision: dict[str, int] = {}
        self.revision = 0
        self._listeners: list[Listener] = []
        self._advanced = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self._load()
        self._task = asyncio.create_task(self._follow(), name="registry-view")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` after every applied batch (on the event loop, synchronously)."""
        self._listeners.append(listener)

    async def wait_for(self, revision: int, timeout: float = 5.0) -> None:
        """Return once the view has applied ``revision`` (or ``timeout`` passed)."""
        if self.revision >= revision:
            return
        async with self._advanced:
            await asyncio.wait_for(
                self._advanced.wait_for(lambda: self.revision >= revision), timeout
            )

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

    async def _load(self) -> None:
        entries, revision = await self._store.range(keys.REGISTRY)
        self.namespaces.clear()
        self.services.clear()
        self.instances.clear()
        self.instances_revision.clear()
        change = ViewChange(revision=revision, reset=True)
        for kv in entries:
            self._apply_put(kv.key, kv.value, kv.mod_revision, change)
        self.revision = revision
        self._notify(change)

    async def _follow(self) -> None:
        while True:
            try:
                async for batch in self._store.watch(keys.REGISTRY, self.revision):
                    self._apply_batch(batch)
                    async with self._advanced:
                        self._advanced.notify_all()
            except Compacted:
                log.warning("registry view fell behind the store's history; reloading")
                await self._load()
            except StoreClosed:
                return

    def _apply_batch(self, batch: Iterable[Event]) -> None:
        change = ViewChange(revision=self.revision)
        for event in batch:
            if event.type is EventType.PUT:
                self._apply_put(event.key, event.value, event.revision, change)
            else:
                self._apply_delete(event.key, change)
            change.revision = max(change.revision, event.revision)
        self.revision = change.revision
        self._notify(change)

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

    def _notify(self, change: ViewChange) -> None:
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:
                log.exception("registry view listener failed")
