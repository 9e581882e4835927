"""mapmesh: service discovery and service mesh, wire-compatible with Cloud Map and App Mesh."""

__all__ = ["__version__"]

__version__ = "0.1.0"

from mapmesh.native import guard as _guard_compiled_modules

_guard_compiled_modules()
