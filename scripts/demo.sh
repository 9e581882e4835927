#!/usr/bin/env bash
# Starts the control plane with a small sample registry and shows what to try. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh bind9-dnsutils
exec .venv/bin/python examples/registry_demo.py "$@"
