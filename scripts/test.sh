#!/usr/bin/env bash
# Runs everything CI runs: lint, strict typing and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh openssl chromium fonts-dejavu-core
.venv/bin/ruff check src tests bench
.venv/bin/mypy src
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
