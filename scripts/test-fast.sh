#!/usr/bin/env bash
# The fast tier, for the edit-test loop (goal: under a minute on 2 cores): the project's fast tests
# (plain `pytest`: slow and Meltano-CLI tests deselected, four workers), then each plugin's own fast
# tests from its folder, with the set-up's .venv. The README's test command runs everything.
# Extra arguments go to the project's pytest (e.g. `bash scripts/test-fast.sh -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/.venv/bin
"$bin/pytest" -q -p no:cacheprovider "$@"
for plugin in tap-swapcommerce transforms target-klaviyo swap-webhooks; do
    echo "== $plugin"
    (cd "$plugin" && "$bin/pytest" -q -p no:cacheprovider -m "not slow")
done
