"""Snapshot resolution: compile, encode and explain what each proxy runs on.

The control plane compiles one :class:`~mapmesh.model.snapshot.Snapshot` per proxy identity
(:func:`compile_snapshot`), encodes it once (:func:`encode`) and streams the bytes
(:mod:`mapmesh.xds.streams`); :func:`affected_proxies` says which identities an input change
may touch; :func:`explain` shows a snapshot with every default marked.
"""

from mapmesh.model.snapshot import Snapshot, decode, encode
from mapmesh.xds.affected import affected_proxies
from mapmesh.xds.compiler import (
    PROXY_KINDS,
    CompileResult,
    UnknownProxy,
    cluster_name,
    compile_snapshot,
)
from mapmesh.xds.diagnostics import CompileWarning, WarningCode
from mapmesh.xds.explain import explain, render_text
from mapmesh.xds.sources import MeshSource, RegistryIndex, RegistrySource
from mapmesh.xds.streams import ProxyId

__all__ = [
    "PROXY_KINDS",
    "CompileResult",
    "CompileWarning",
    "MeshSource",
    "ProxyId",
    "RegistryIndex",
    "RegistrySource",
    "Snapshot",
    "UnknownProxy",
    "WarningCode",
    "affected_proxies",
    "cluster_name",
    "compile_snapshot",
    "decode",
    "encode",
    "explain",
    "render_text",
]
