"""The control plane's own events, from the registry: instances registered, deregistered,
and their health flipping.

:class:`RegistryEvents` listens to the registry view (every applied batch names the services
it touched), diffs each touched service's instances against the copy it kept from the previous
batch, and records ``registration`` / ``deregistration`` / ``health`` events. Health flips
cover the control plane's active checks and custom health updates alike: both end as a stored
status change, with the reason the registry stored beside it.

An event belongs to every mesh with a virtual node discovering from the instance's namespace
(one event per mesh, ``detail.nodes`` naming the nodes whose attributes the instance matches);
changes no mesh discovers are recorded without a mesh. The discovery index is rebuilt lazily
after a mesh change. A view reset (initial load, reload after compaction) re-reads the
registry without recording anything: nothing is known to have changed.

Cost: O(instances of the touched services) per batch, plus O(virtual nodes) after a mesh change.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from mapmesh.model import appmesh as am
from mapmesh.model.registry import HealthStatus, Instance
from mapmesh.telemetry.store import TelemetryStore
from mapmesh.xds.sources import MeshSource, RegistryIndex

__all__ = ["RegistryEvents", "WatchedRegistry"]

log = logging.getLogger(__name__)


class WatchedRegistry(RegistryIndex, Protocol):
    """The registry view as the watcher reads it: records by id and instances per service."""

    @property
    def instances(self) -> Mapping[str, Mapping[str, Instance]]: ...


class _Change(Protocol):
    """What :class:`~mapmesh.registry.view.ViewChange` carries that the watcher needs."""

    @property
    def services(self) -> set[str]: ...

    @property
    def reset(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class _Known:
    namespace: str
    service: str
    instances: Mapping[str, Instance]


@dataclass(frozen=True, slots=True)
class _Discoverer:
    mesh: str
    node: str
    service: str  # lower case
    attributes: tuple[tuple[str, str], ...]


class RegistryEvents:
    def __init__(
        self, registry: WatchedRegistry, meshes: MeshSource, store: TelemetryStore
    ) -> None:
        self._registry = registry
        self._meshes = meshes
        self._store = store
        self._known: dict[str, _Known] = {}
        self._index: dict[str, list[_Discoverer]] | None = None
        self._resync()

    # -- listeners (subscribe these to the views) --------------------------------------------

    def on_registry_change(self, change: _Change) -> None:
        if change.reset:
            self._resync()
            return
        for service_id in sorted(change.services):
            self._diff(service_id)

    def on_mesh_change(self, _change: object) -> None:
        self._index = None

    # -- diffing ----------------------------------------------------------------------------

    def _snapshot(self, service_id: str) -> _Known | None:
        service = self._registry.services.get(service_id)
        namespace = self._registry.namespaces.get(service.namespace_id) if service else None
        if service is None or namespace is None:
            return None
        instances = dict(self._registry.instances.get(service_id, {}))
        return _Known(namespace.http_name, service.name, instances)

    def _resync(self) -> None:
        self._known = {}
        for service_id in self._registry.services:
            known = self._snapshot(service_id)
            if known is not None:
                self._known[service_id] = known

    def _diff(self, service_id: str) -> None:
        before = self._known.get(service_id)
        after = self._snapshot(service_id)
        if after is None:
            self._known.pop(service_id, None)
        else:
            self._known[service_id] = after
        where = after or before
        if where is None:
            return
        old = before.instances if before is not None else {}
        new = after.instances if after is not None else {}
        for instance_id, instance in new.items():
            previous = old.get(instance_id)
            if previous is None:
                self._record("registration", where, instance, {})
            elif previous.health_status is not instance.health_status:
                self._record(
                    "health",
                    where,
                    instance,
                    {
                        "from": previous.health_status.value,
                        "to": instance.health_status.value,
                        "healthy": instance.health_status is not HealthStatus.UNHEALTHY,
                        "reason": instance.health_reason,
                    },
                )
        for instance_id, instance in old.items():
            if instance_id not in new:
                self._record("deregistration", where, instance, {})

    def _record(
        self, kind: str, where: _Known, instance: Instance, extra: Mapping[str, Any]
    ) -> None:
        detail: dict[str, Any] = {
            "namespace": where.namespace,
            "service": where.service,
            "instanceId": instance.id,
            "address": instance.ipv4 or instance.ipv6,
            "port": instance.port,
            **extra,
        }
        by_mesh = self._discoverers(where.namespace)
        if not by_mesh:
            self._store.record_event(kind, None, detail)
            return
        for mesh, discoverers in sorted(by_mesh.items()):
            nodes = sorted(
                d.node
                for d in discoverers
                if d.service == where.service.lower()
                and all(instance.attributes.get(k) == v for k, v in d.attributes)
            )
            self._store.record_event(kind, mesh, {**detail, "nodes": nodes})

    # -- which meshes discover a namespace ----------------------------------------------------

    def _discoverers(self, namespace: str) -> dict[str, list[_Discoverer]]:
        if self._index is None:
            self._index = _build_index(self._meshes)
        by_mesh: dict[str, list[_Discoverer]] = {}
        for discoverer in self._index.get(namespace.lower(), ()):
            by_mesh.setdefault(discoverer.mesh, []).append(discoverer)
        return by_mesh


def _build_index(meshes: MeshSource) -> dict[str, list[_Discoverer]]:
    index: dict[str, list[_Discoverer]] = {}
    for mesh in meshes.meshes():
        for node in meshes.in_mesh(mesh.name, "virtualNode"):
            for namespace, discoverer in _cloud_map(mesh.name, node.name, node.spec):
                index.setdefault(namespace, []).append(discoverer)
    return index


def _cloud_map(mesh: str, node: str, spec: Mapping[str, Any]) -> Iterable[tuple[str, _Discoverer]]:
    try:
        parsed = am.VirtualNodeSpec.model_validate(spec)
    except ValidationError:
        return ()
    discovery = parsed.service_discovery
    cloud_map = discovery.aws_cloud_map if discovery is not None else None
    if cloud_map is None:
        return ()
    attributes = tuple(sorted((a.key, a.value) for a in cloud_map.attributes or ()))
    discoverer = _Discoverer(mesh, node, cloud_map.service_name.lower(), attributes)
    return ((cloud_map.namespace_name.lower(), discoverer),)
