"""The ``mapmesh`` executable: the data-plane commands get a lean app, the rest the full one."""

from __future__ import annotations

import sys

__all__ = ["main"]

DATA_PLANE_COMMANDS = frozenset(("proxy", "gateway"))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in DATA_PLANE_COMMANDS:
        from mapmesh.cli.dataplane import app
    else:
        from mapmesh.cli.main import app
    sys.exit(app())
