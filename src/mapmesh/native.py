"""The data plane's compiled modules: which they are, and never running a stale one.

The request path (codecs, forwarding, pools, balancers, resilience, routing, stats, trace
context, spans and traffic edges) is plain typed Python that ``scripts/build_native.py``
compiles with mypyc into C extensions beside the sources: the same code at about a third
of the CPU per proxied request (docs/benchmarks.md). Everything also runs uncompiled.

An extension module shadows its ``.py`` on import, so a source edited after the build
would silently not run. The build records the SHA-256 of every compiled source in
:data:`STAMP`; :func:`guard` (run when :mod:`mapmesh` is imported) compares them and, when
any differs or the record is missing, sends the import of *every* compiled module to its
source (compiled modules call each other directly, so a mix would still run old code),
saying so once on stderr. ``MAPMESH_NATIVE=0`` in the environment runs the sources too.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__all__ = ["MODULES", "STAMP", "compiled", "guard", "source_digests"]

MODULES: tuple[str, ...] = (
    "mapmesh.proxy.backend_port",
    "mapmesh.proxy.cluster",
    "mapmesh.proxy.config",
    "mapmesh.proxy.deadlines",
    "mapmesh.proxy.downstream",
    "mapmesh.proxy.forwarding",
    "mapmesh.proxy.pool",
    "mapmesh.proxy.route",
    "mapmesh.proxy.router",
    "mapmesh.proxy.stats",
    "mapmesh.proxy.upstream",
    "mapmesh.proxy.lb.base",
    "mapmesh.proxy.lb.least_request",
    "mapmesh.proxy.lb.round_robin",
    "mapmesh.proxy.lb.weights",
    "mapmesh.proxy.protocol.events",
    "mapmesh.proxy.protocol.headers",
    "mapmesh.proxy.protocol.http1",
    "mapmesh.proxy.protocol.http1_client",
    "mapmesh.proxy.protocol.http1_server",
    "mapmesh.proxy.resilience.breaker",
    "mapmesh.proxy.resilience.budget",
    "mapmesh.proxy.resilience.health",
    "mapmesh.proxy.resilience.outlier",
    "mapmesh.proxy.resilience.ratelimit",
    "mapmesh.proxy.resilience.retry",
    "mapmesh.proxy.routing.gateway",
    "mapmesh.proxy.routing.match",
    "mapmesh.proxy.routing.request",
    "mapmesh.proxy.routing.table",
    "mapmesh.proxy.routing.weighted",
    "mapmesh.proxy.telemetry.edges",
    "mapmesh.proxy.telemetry.recorder",
    "mapmesh.proxy.telemetry.spans",
    "mapmesh.proxy.telemetry.tracing",
)
"""Modules compiled by ``scripts/build_native.py`` (none is a package ``__init__``)."""

C_MODULES: tuple[str, ...] = ("mapmesh.proxy._speedups",)
"""Extensions written in C, built beside the others. Each has no source to fall back on:
its importer has a Python path for when it cannot be imported (stale, or not built)."""

GROUP = "mapmesh_native"
"""mypyc's name for the shared library of the compiled group."""

_ROOT = Path(__file__).resolve().parent.parent  # the directory holding the mapmesh package
STAMP = _ROOT / "mapmesh" / "native-build.json"
"""What the last build compiled: ``{"python": sys.version, "sources": {module: sha256}}``."""


def source_path(module: str) -> Path:
    suffix = ".c" if module in C_MODULES else ".py"
    return _ROOT.joinpath(*module.split(".")).with_suffix(suffix)


def source_digests(modules: Sequence[str] = MODULES + C_MODULES) -> dict[str, str]:
    """SHA-256 of each module's source file, as the build records them."""
    return {name: hashlib.sha256(source_path(name).read_bytes()).hexdigest() for name in modules}


def compiled(module: ModuleType) -> bool:
    """Whether ``module`` was loaded from a compiled extension."""
    return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)


def _extensions_present() -> bool:
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    for name in MODULES + C_MODULES:
        base = source_path(name).with_suffix("")
        if any(base.with_name(base.name + suffix).exists() for suffix in suffixes):
            return True
    return False


def _fresh() -> bool:
    try:
        record = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return not _extensions_present()
    if record.get("python") != sys.version:
        # Built by another interpreter: stale only if this one would load what it built
        # (another build of the same version would, against headers it was not built with).
        return not _extensions_present()
    try:
        return bool(record.get("sources") == source_digests())
    except OSError:
        return False


class _SourcesFirst:
    """Meta-path finder that loads the compiled modules from their ``.py`` files."""

    @staticmethod
    def find_spec(
        fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in C_MODULES:
            raise ImportError(f"{fullname} is not loaded: the compiled modules are stale or off")
        if fullname not in MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, source_path(fullname))


def guard() -> None:
    """Run the sources instead of stale compiled modules (see the module docstring), or
    when ``MAPMESH_NATIVE=0`` asks for the sources (to compare, or for full tracebacks)."""
    if os.environ.get("MAPMESH_NATIVE") == "0":
        sys.meta_path.insert(0, _SourcesFirst())
        return
    if _fresh():
        return
    sys.meta_path.insert(0, _SourcesFirst())
    sys.stderr.write(
        "mapmesh: the compiled data-plane modules do not match their sources; running the "
        "sources (slower). Rebuild with: .venv/bin/python scripts/build_native.py\n"
    )
