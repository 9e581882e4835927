"""The data plane's C speedups (``_speedups.c``), when they are built and fresh.

``C`` is the extension module, or None: not built (no compiler), stale (the guard in
:mod:`mapmesh.native` refuses it), or ``MAPMESH_NATIVE=0``. Each user binds what it needs
once, at import, to the C function or to the Python code that specifies it.
"""

from __future__ import annotations

from types import ModuleType
from typing import Final

__all__ = ["C"]


def _load() -> ModuleType | None:
    try:
        from mapmesh.proxy import _speedups
    except ImportError:
        return None
    return _speedups


C: Final = _load()
