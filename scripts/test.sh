#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then runs every check: ruff, mypy and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
ruff check .
ruff format --check .
mypy
pytest "$@"
