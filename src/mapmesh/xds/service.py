"""Snapshots for the control plane: compile from the live views, push on every change.

Glue between the read models and the :class:`SnapshotHub`: compiling an identity reads the
current mesh and registry views; each view change asks :func:`affected_proxies` which
identities to recompile, and the hub recompiles only those that have a stream connected.
"""

from __future__ import annotations

import logging
from typing import Any

from mapmesh.mesh.view import MeshChange, MeshView
from mapmesh.model.snapshot import encode
from mapmesh.registry.view import RegistryView, ViewChange
from mapmesh.xds.affected import affected_proxies
from mapmesh.xds.compiler import UnknownProxy, compile_snapshot
from mapmesh.xds.explain import explain
from mapmesh.xds.streams import ProxyId, SnapshotHub

__all__ = ["SnapshotService"]

log = logging.getLogger(__name__)


class SnapshotService:
    def __init__(self, meshes: MeshView, registry: RegistryView) -> None:
        self._meshes = meshes
        self._registry = registry
        self.hub = SnapshotHub(self._compile, self._revision)
        meshes.subscribe(self._on_mesh_change)
        registry.subscribe(self._on_registry_change)

    def _revision(self) -> int:
        return max(self._meshes.revision, self._registry.revision)

    def _compile(self, proxy: ProxyId) -> bytes | None:
        try:
            result = compile_snapshot(
                self._meshes, self._registry, proxy.mesh, proxy.kind, proxy.name
            )
        except UnknownProxy:
            return None
        for warning in result.warnings:
            log.debug("snapshot warning", extra={"proxy": str(proxy), "warning": str(warning)})
        return encode(result.snapshot)

    def explain(self, proxy: ProxyId) -> dict[str, Any]:
        """The effective configuration of ``proxy``; raises UnknownProxy when it is absent."""
        result = compile_snapshot(self._meshes, self._registry, proxy.mesh, proxy.kind, proxy.name)
        return explain(result.snapshot, result.warnings)

    def _on_mesh_change(self, change: MeshChange) -> None:
        if change.reset:
            self.hub.invalidate()
            return
        self.hub.invalidate(
            affected_proxies(self._meshes, self._registry, changed_meshes=change.meshes)
        )

    def _on_registry_change(self, change: ViewChange) -> None:
        if change.reset:
            self.hub.invalidate()
            return
        self.hub.invalidate(
            affected_proxies(
                self._meshes,
                self._registry,
                changed_services=change.services,
                changed_namespaces=change.namespaces,
            )
        )
