#!/usr/bin/env bash
# Sets everything up on a fresh machine: a virtualenv (.venv) with the project's packages and dev
# tools, then Meltano's plugins (each in its own virtualenv under .meltano/). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
# pip's notices about this machine's unused local package folders are noise: keep real output only.
quiet_pip() { .venv/bin/python -m pip install --quiet "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
quiet_pip --upgrade "pip>=25.1"
# The versions in constraints.txt (bash scripts/lock.sh regenerates it), here and in the plugins'
# own virtualenvs, so that two machines install the same versions.
quiet_pip -c constraints.txt -e '.[dev]' -e ./tap-swapcommerce -e ./transforms \
    -e './target-klaviyo[report,postgres]' -e ./swap-webhooks
PIP_CONSTRAINT="$PWD/constraints.txt" .venv/bin/meltano install
