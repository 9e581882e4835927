"""The compiled data-plane modules: they are what runs, and a stale build never runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mapmesh
from mapmesh import native
from mapmesh.proxy import downstream, forwarding
from mapmesh.proxy.protocol import headers, http1_server

SRC = Path(mapmesh.__file__).resolve().parent.parent
PROBE = (
    "import mapmesh.native as n, mapmesh.proxy.forwarding as f, mapmesh.proxy.stats as s; "
    "print(n.compiled(f), n.compiled(s))"
)


def test_the_request_path_runs_compiled() -> None:
    """scripts/bootstrap.sh (both README commands) builds them; this suite runs after it."""
    for module in (downstream, forwarding, http1_server):
        assert native.compiled(module), (
            f"{module.__name__} runs from source: .venv/bin/python scripts/build_native.py"
        )
    assert headers._C is not None, "the C head scanner is not built"


def copy_of_the_package(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    shutil.copytree(SRC / "mapmesh", root / "mapmesh", ignore=shutil.ignore_patterns("__pycache__"))
    for library in SRC.glob(f"{native.GROUP}__mypyc*"):
        shutil.copy2(library, root)
    return root


def probe(root: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1", **extra}
    return subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )


def test_an_edited_source_runs_instead_of_its_stale_build(tmp_path: Path) -> None:
    root = copy_of_the_package(tmp_path)
    fresh = probe(root)
    assert (fresh.stdout.split(), fresh.stderr) == (["True", "True"], "")

    stats = root / "mapmesh" / "proxy" / "stats.py"
    stats.write_text(stats.read_text() + "\n# edited after the build\n")
    stale = probe(root)
    # every compiled module goes back to its source, not only the edited one
    assert stale.stdout.split() == ["False", "False"]
    assert "scripts/build_native.py" in stale.stderr


def test_an_edited_c_source_is_not_loaded_and_python_searches_instead(tmp_path: Path) -> None:
    root = copy_of_the_package(tmp_path)
    check = (
        "import mapmesh.proxy.protocol.headers as h; "
        "head = b'GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n'; "
        "print(h._C is not None, h.scan_head(head, 14).host, h.find_head_end(head, 0))"
    )

    def run() -> list[str]:
        env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run(
            [sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=60
        )
        return done.stdout.split()

    assert run() == ["True", "b'a'", "23"]
    scanner = root / "mapmesh" / "proxy" / "_speedups.c"
    scanner.write_text(scanner.read_text() + "\n/* edited after the build */\n")
    assert run() == ["False", "b'a'", "23"]


def test_without_a_build_record_the_sources_run(tmp_path: Path) -> None:
    root = copy_of_the_package(tmp_path)
    (root / "mapmesh" / native.STAMP.name).unlink()  # an interrupted build: extensions, no record
    result = probe(root)
    assert result.stdout.split() == ["False", "False"]
    assert "do not match their sources" in result.stderr


def test_the_sources_run_when_asked(tmp_path: Path) -> None:
    root = copy_of_the_package(tmp_path)
    result = probe(root, MAPMESH_NATIVE="0")
    assert (result.stdout.split(), result.stderr) == (["False", "False"], "")


def test_a_build_for_another_interpreter_does_not_run(tmp_path: Path) -> None:
    """Another build of the same Python version would load the extensions, compiled against
    headers and flags that are not its own."""
    root = copy_of_the_package(tmp_path)
    stamp = root / "mapmesh" / native.STAMP.name
    record = json.loads(stamp.read_text())
    stamp.write_text(json.dumps({**record, "python": "3.11.0 (another build)"}))
    result = probe(root)
    assert result.stdout.split() == ["False", "False"]
    assert "scripts/build_native.py" in result.stderr
