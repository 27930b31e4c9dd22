#!/usr/bin/env bash
# The fast tier, for the edit-test loop (goal: under a minute on 2 cores): the project's fast tests
# (plain `pytest`: slow and Meltano-CLI tests deselected, on pytest-xdist workers) and, beside them,
# each plugin's own fast tests from its folder (its plain `pytest`), with the set-up's .venv. The
# README's test command runs everything. Extra arguments go to the project's pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/.venv/bin
plugins_log=$(mktemp)
trap 'rm -f "$plugins_log"' EXIT

plugins() {
    local plugin
    for plugin in tap-swapcommerce transforms target-klaviyo swap-webhooks; do
        echo "== $plugin"
        (cd "$plugin" && "$bin/pytest" -q -p no:cacheprovider) || return 1
    done
}

plugins > "$plugins_log" 2>&1 &
plugins_pid=$!
echo "== the project (tests/)"
project=0
"$bin/pytest" -q -p no:cacheprovider "$@" || project=$?
plugins_status=0
wait "$plugins_pid" || plugins_status=$?
cat "$plugins_log"
[ "$project" = 0 ] && [ "$plugins_status" = 0 ]
