#!/usr/bin/env bash
# The static checks CI and the pre-commit hook run: ruff (lint and format) over the repository,
# mypy over the project (pyproject.toml) and over each plugin from its own folder (its code and its
# own tests: each plugin's `tests` package is checked as that plugin's, as when it stands alone).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/.venv/bin
"$bin/ruff" check .
"$bin/ruff" format --check .
"$bin/mypy"
for plugin in tap-swapcommerce transforms target-klaviyo swap-webhooks; do
    (cd "$plugin" && "$bin/mypy" --no-error-summary)
done
