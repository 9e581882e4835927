"""The dashboard's shipped files, checked without a browser.

Every module parses as an ES module (when Node.js is there to say so), every import names a
file in the bundle, and every asset the page names exists, so a typo fails here first even
where the browser test is skipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from mapmesh.dashboard import StaticBundle

BUNDLE = StaticBundle.from_package()
MODULES = sorted(p for p in BUNDLE.assets if p.endswith(".js"))
NODE = shutil.which("node")

_IMPORT = re.compile(r"""(?:^|\n)\s*(?:import|export)\s[^;]*?\bfrom\s+["']([^"']+)["']""")


def _resolve(base: str, relative: str) -> str:
    parts = base.split("/")[:-1]
    for segment in relative.split("/"):
        if segment == "..":
            parts.pop()
        elif segment != ".":
            parts.append(segment)
    return "/".join(parts)


def test_every_module_import_resolves_inside_the_bundle() -> None:
    assert "js/app.js" in MODULES
    for module in MODULES:
        source = BUNDLE.assets[module].body.decode()
        for target in _IMPORT.findall(source):
            assert target.startswith("./") or target.startswith("../"), (module, target)
            assert _resolve(module, target) in BUNDLE.assets, f"{module} imports {target}"


def test_every_asset_the_page_names_exists() -> None:
    page = BUNDLE.index.body.decode()
    prefix = f"/ui/assets/{BUNDLE.version}/"
    named = re.findall(r'(?:src|href)="' + re.escape(prefix) + r'([^"]+)"', page)
    assert len(named) >= 3
    assert all(path in BUNDLE.assets for path in named)


@pytest.mark.skipif(NODE is None, reason="no node binary to check the modules' syntax")
@pytest.mark.parametrize("module", MODULES)
def test_every_module_parses(module: str) -> None:
    assert NODE is not None
    checked = subprocess.run(
        [NODE, "--input-type=module", "--check"],
        input=BUNDLE.assets[module].body,
        capture_output=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr.decode()
