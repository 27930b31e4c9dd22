#!/usr/bin/env bash
# The agency set-up (README, "Many brands"): everything scripts/setup.sh installs, plus
# - PostgreSQL support for Meltano's system database and state (meltano[postgres], psycopg) in the
#   project's .venv, and for the ledgers (target-klaviyo's `postgres` extra: meltano.yml's pip_url);
# - Dagster in a virtualenv of its own, orchestration/.venv (never beside Meltano's), with the
#   code location (orchestration/) installed in it, and a Dagster home with dagster.yaml.
# With MELTANO_DATABASE_URI set (postgresql+psycopg://...), Meltano's system database is migrated
# once here, so brands started together never race to create its tables. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
quiet_pip() { "$1" -m pip install --quiet "${@:2}" 2> >(grep -v "is ignored: it is neither" >&2); }
quiet_pip .venv/bin/python 'meltano[postgres]~=4.4.0'

python=${PYTHON:-python3}
if [ ! -x orchestration/.venv/bin/python ]; then
    "$python" -m venv orchestration/.venv
fi
quiet_pip orchestration/.venv/bin/python --upgrade "pip>=25.1"
quiet_pip orchestration/.venv/bin/python -e ./orchestration

dagster_home=${DAGSTER_HOME:-$PWD/runtime/dagster}
mkdir -p "$dagster_home"
if [ ! -f "$dagster_home/dagster.yaml" ]; then
    cp orchestration/dagster.yaml "$dagster_home/dagster.yaml"
fi
if [ -n "${MELTANO_DATABASE_URI:-}" ]; then
    .venv/bin/meltano upgrade database
fi
echo "agency set-up done: DAGSTER_HOME=$dagster_home; brands in ${SWAP_BRANDS_FILE:-brands.yml}"
