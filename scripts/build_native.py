"""Compile the data plane's request-path modules with mypyc, in place beside their sources.

Which modules, and why stale builds never run: src/mapmesh/native.py. Does nothing when
the recorded sources match the current ones (a build takes about a minute on two cores).
Needs mypy (a dev dependency) and a C compiler with the Python headers.

Usage: .venv/bin/python scripts/build_native.py [--force] [--clean]
  --force   rebuild even when nothing changed
  --clean   remove the compiled modules and the record (the sources run), then exit
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import os
import shutil
import sys
import sysconfig
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
BUILD = ROOT / "build" / "native"


def load_native() -> ModuleType:
    """mapmesh/native.py on its own: importing the package would run its stale-build guard."""
    spec = importlib.util.spec_from_file_location("_mapmesh_native", SRC / "mapmesh" / "native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def artifacts(native: ModuleType) -> list[Path]:
    """Every file a build leaves in the source tree."""
    found = [native.STAMP]
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        found += SRC.glob(f"{native.GROUP}__mypyc*{suffix}")
        found += SRC.glob(f"mapmesh/**/*{suffix}")  # also modules no longer in the list
    return sorted({path for path in found if path.exists()})


def clean(native: ModuleType) -> None:
    for path in artifacts(native):
        path.unlink()


def last_build(native: ModuleType) -> dict[str, object]:
    """The record of the last build: the interpreter it was for and its sources' digests."""
    try:
        record = json.loads(native.STAMP.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def up_to_date(native: ModuleType) -> bool:
    record = last_build(native)
    return bool(
        record.get("python") == sys.version  # the interpreter's release and build
        and record.get("sources") == native.source_digests()
    )


def missing_toolchain() -> str | None:
    """What stops a C build here, said with the fix; None when nothing does."""
    if shutil.which(sysconfig.get_config_var("CC").split()[0] or "cc") is None:
        return "no C compiler: apt-get install gcc"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python headers (Python.h): apt-get install python3-dev"
    if importlib.util.find_spec("mypyc") is None:
        return "mypyc is not installed: .venv/bin/pip install -e '.[dev]'"
    return None


def build(native: ModuleType) -> None:
    from mypyc.build import mypycify
    from setuptools import Extension, setup

    digests = native.source_digests()  # before compiling: an edit meanwhile shows as stale
    if last_build(native).get("python") != sys.version:
        # What was compiled against another interpreter's headers is not reused.
        for stale in (BUILD / "temp", BUILD / "lib"):
            shutil.rmtree(stale, ignore_errors=True)
    clean(native)
    paths = [str(native.source_path(name).relative_to(SRC)) for name in native.MODULES]
    os.chdir(SRC)  # mypyc names modules after their paths relative to the working directory
    extensions = mypycify(
        ["--config-file", str(ROOT / "pyproject.toml"), *paths],
        opt_level="3",
        group_name=native.GROUP,
        target_dir=str(BUILD / "c"),
    )
    extensions += [
        Extension(
            name, [str(native.source_path(name).relative_to(SRC))], extra_compile_args=["-O2"]
        )
        for name in native.C_MODULES
    ]
    build_dirs = ["--build-temp", str(BUILD / "temp"), "--build-lib", str(BUILD / "lib")]
    setup(
        name="mapmesh-native",
        ext_modules=extensions,
        script_args=["-q", "build_ext", "--inplace", *build_dirs],
    )
    record = {"python": sys.version, "sources": digests}
    native.STAMP.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("--clean", action="store_true", help="remove the compiled modules")
    args = parser.parse_args()
    native = load_native()
    if args.clean:
        clean(native)
        print("compiled data-plane modules removed: the sources run")
        return 0
    if not args.force and up_to_date(native):
        return 0
    problem = missing_toolchain()
    if problem is not None:
        print(f"build_native: cannot compile the data-plane modules: {problem}", file=sys.stderr)
        return 1
    started = time.monotonic()
    print(f"compiling {len(native.MODULES)} data-plane modules with mypyc…", flush=True)
    build(native)
    print(f"compiled in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
