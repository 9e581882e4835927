#!/usr/bin/env bash
# Installs what mapmesh needs on a fresh Debian machine: system packages, a venv and the
# compiled data-plane modules.
# Idempotent: a second run only checks. Usage: scripts/bootstrap.sh [debian packages...]
set -euo pipefail
cd "$(dirname "$0")/.."

want=("$@")
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

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
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
