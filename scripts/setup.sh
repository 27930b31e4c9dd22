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
# The emulators are a development package (the demo, the tests, bench/), not the project's.
quiet_pip -c constraints.txt -e '.[dev]' -e ./emulators -e ./tap-swapcommerce -e ./transforms \
    -e './target-klaviyo[report,postgres]' -e ./swap-webhooks -e ./swap-health
PIP_CONSTRAINT="$PWD/constraints.txt" .venv/bin/meltano install
# Byte-compile Meltano's plugin virtualenvs (its installer leaves them as sources) and the
# project's own packages, once, here. Otherwise every run compiles every module it imports
# whenever Python may not write bytecode (PYTHONDONTWRITEBYTECODE, read-only installs: CI, many
# containers): about half of each plugin's start-up. Files already compiled are skipped.
for plugin_python in .meltano/*/*/venv/bin/python; do
    "$plugin_python" -m compileall -q -j 0 "${plugin_python%/bin/python}/lib" > /dev/null ||
        echo "setup: files above in ${plugin_python%/bin/python} do not compile; runs compile them" >&2
done
.venv/bin/python -m compileall -q -j 0 tap-swapcommerce/tap_swapcommerce transforms/swap_transforms \
    target-klaviyo/target_klaviyo swap-webhooks/swap_webhooks swap_meltano > /dev/null
