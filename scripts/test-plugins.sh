#!/usr/bin/env bash
# Each plugin alone, as another Meltano project installs it: from a git subdirectory of this
# repository (its committed state: commit first) into a clean virtualenv, once per Python version
# its requires-python allows, then its own tests (<plugin>/tests) from its folder. Beside it only the
# emulators (a development package, also from a git subdirectory: the fixtures `swap` and `klaviyo`)
# are installed: no root package, no other plugin. CI runs it (scripts/test.sh).
# Usage: bash scripts/test-plugins.sh [plugin folder ...]   (PLUGIN_PYTHONS="3.11 3.12")
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A distribution=(
    [tap-swapcommerce]=tap-swapcommerce [transforms]=swap-transforms
    [target-klaviyo]=target-klaviyo [swap-webhooks]=swap-webhooks
)
folders=("$@")
[ ${#folders[@]} -gt 0 ] || folders=(tap-swapcommerce transforms target-klaviyo swap-webhooks)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The shared reference material (Swap's API contract, Klaviyo's specs) for the plugins' tests that
# read it: a copy of a plugin's folder has no ../shared beside it.
export SWAP_KLAVIYO_SHARED=${SWAP_KLAVIYO_SHARED:-$(cd .. && pwd)/shared}

# python3.X on PATH if it runs (a pyenv shim may not), else pyenv's own install of 3.X.
find_python() {
    local candidate
    for candidate in "python$1" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/python"$1"; do
        if "$candidate" -c "" > /dev/null 2>&1; then
            command -v "$candidate"
            return
        fi
    done
}

for version in ${PLUGIN_PYTHONS:-3.11 3.12}; do
    python=$(find_python "$version")
    if [ -z "$python" ]; then
        echo "test-plugins: python$version is missing: the plugins' requires-python includes it" >&2
        exit 1
    fi
    for folder in "${folders[@]}"; do
        name=${distribution[$folder]}
        venv=$work/$folder-$version
        echo "== $name alone on Python $version"
        "$python" -m venv "$venv"
        # The bundled pip (23.x on 3.11) refuses "name[extra] @ git+file://...#subdirectory=".
        "$venv/bin/python" -m pip install --quiet --upgrade "pip>=25.1" \
            2> >(grep -v "is ignored: it is neither" >&2)
        "$venv/bin/python" -m pip install --quiet -c constraints.txt \
            "$name[test] @ git+file://$PWD#subdirectory=$folder" \
            "swap-klaviyo-emulators @ git+file://$PWD#subdirectory=emulators" \
            2> >(grep -v "is ignored: it is neither" >&2)
        # Its tests as committed (what was installed), from a copy of the folder; pytest (not
        # python -m pytest), so that the installed package is tested, not the folder's source;
        # -m "": every test, the slow ones too (a plugin's plain `pytest` is its fast tier).
        rm -rf "$work/src" && mkdir "$work/src"
        git archive HEAD "$folder" | tar -x -C "$work/src"
        # In-process tests import the folder's source (the tests' pythonpath, as from a checkout);
        # the plugin's executables, which the tests also run, are the installed wheel's.
        (cd "$work/src/$folder" && "$venv/bin/pytest" -q -p no:cacheprovider -m "")
    done
done
