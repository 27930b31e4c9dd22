#!/usr/bin/env bash
# Regenerates constraints.txt from a fresh set-up: the newest versions the pyprojects allow,
# installed into a throwaway virtualenv, then frozen. Review the diff and commit it.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade "pip>=25.1" 2> >(grep -v "is ignored: it is neither" >&2)
"$venv/bin/python" -m pip install --quiet -e '.[dev]' -e ./emulators -e ./tap-swapcommerce[test] \
    -e ./transforms[test] -e './target-klaviyo[report,postgres,test]' -e ./swap-webhooks[test] \
    -e ./swap-health \
    2> >(grep -v "is ignored: it is neither" >&2)
{
    sed -n '1,3p' constraints.txt
    "$venv/bin/python" -m pip freeze --exclude-editable
} > constraints.txt.new
mv constraints.txt.new constraints.txt
git diff --stat constraints.txt
