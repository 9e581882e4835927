#!/usr/bin/env bash
# Installs what mapmesh needs on a fresh Debian machine: system packages, a venv and the
# compiled data-plane modules.
# Idempotent: a second run only checks. Usage: scripts/bootstrap.sh [debian packages...]
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's python3.11 is built with profile-guided and link-time optimisation and its libpython
# linked into the executable; a plain ./configure build (pyenv's default) is neither, and the
# proxy's request path costs about 16% more CPU on it (docs/benchmarks.md, "The sixth round").
# The venv is made from Debian's, whatever python3 comes first on PATH.
interpreter=/usr/bin/python3.11
want=(python3.11 python3.11-venv python3.11-dev "$@")
missing=()
for pkg in "${want[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || true
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A venv made from another interpreter (an older checkout's) is made again.
if [ -x .venv/bin/python ] && ! grep -qx "home = ${interpreter%/*}" .venv/pyvenv.cfg; then
  echo "recreating .venv with $interpreter"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  "$interpreter" -m venv .venv
fi
stamp=.venv/.mapmesh-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -U pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi

# The data plane's request path compiled with mypyc (see src/mapmesh/native.py); a no-op when
# the sources have not changed since the last build.
.venv/bin/python scripts/build_native.py
