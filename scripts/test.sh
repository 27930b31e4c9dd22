#!/usr/bin/env bash
# Sets everything up (scripts/setup-agency.sh: setup.sh, plus Meltano's PostgreSQL support and
# Dagster in orchestration/.venv), then runs every check: ruff, mypy, the mappings' YAML tests
# and the whole test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/target -x`).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-agency.sh
# The health report is tested in a real headless browser: Debian's Chromium and its driver.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
        apt-get update -qq > /dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver > /dev/null
    else
        echo "note: Chromium not installed and not root; the browser test of the report will skip" >&2
    fi
fi
# The ledger's tests also run on PostgreSQL: Debian's server, started by the tests themselves as
# the non-root `postgres` user on a free loopback port (tests/support/postgres.py).
if ! ls /usr/lib/postgresql/*/bin/initdb > /dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
        apt-get update -qq > /dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql > /dev/null
    else
        echo "note: PostgreSQL not installed and not root; the ledger's PostgreSQL tests will skip" >&2
    fi
fi
export PATH="$PWD/.venv/bin:$PATH"
bash scripts/lint.sh
# The analysts' YAML tests of the mappings (transforms/*.tests.yml), as they run them.
swap-transforms-test
# Every test, one at a time: -m "" lifts the fast tier's default deselection and -n 0 its workers
# (pyproject.toml's addopts; the slow tier's Meltano runs share the project's folders); an -m or -n
# among the arguments wins (e.g. `bash scripts/test.sh -m slow`).
pytest -m "" -n 0 "$@"
# Each plugin alone: installed from a git subdirectory into a clean virtualenv per Python version
# of its requires-python, its own tests run there (not when pytest was given arguments).
if [ $# -eq 0 ]; then
    bash scripts/test-plugins.sh
fi
