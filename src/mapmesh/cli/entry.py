"""The ``mapmesh`` executable: the data-plane commands go straight to their lean argparse
parser (:mod:`mapmesh.cli.proxy_commands`), the rest to the full typer app."""

from __future__ import annotations

import sys

__all__ = ["main"]

DATA_PLANE_COMMANDS = frozenset(("proxy", "gateway"))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in DATA_PLANE_COMMANDS:
        from mapmesh.cli.proxy_commands import main as data_plane

        sys.exit(data_plane(sys.argv[1:]))
    from mapmesh.cli.main import app

    sys.exit(app())
