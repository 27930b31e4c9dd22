#!/usr/bin/env bash
# One-off backfill of the metrics added in 2026-12 (Returned Product, Return Shipped, Exchange
# Created, Store Credit Issued) and of the customer block, for returns synced before that release.
#
#   bash scripts/backfill-new-metrics.sh [--since 2020-01-01T00:00:00Z] [meltano options ...]
#   bash scripts/backfill-new-metrics.sh --environment=prod
#
# It is the pipeline itself (swap-meltano run returns-to-klaviyo, under the launcher's claim and
# the ledger's lock), run with:
# - its own bookmark (state id suffix `backfill-2026-12`): it reads every return Swap updated since
#   --since (default 2020-01-01), once, and never moves the pipeline's own bookmark; run again, it
#   reads only what changed since its last run;
# - the mapping var `backfill_new_metrics_only`: only the new metrics' rules and the profile
#   update run, so no existing metric (Return Started, Refunded Order, ...) and no restock is sent
#   again, and every event it sends has `backfill: true` (Klaviyo records it, no flow fires).
# The ledger and Klaviyo keep one event per unique id: running it twice duplicates nothing, and
# a return the schedule syncs meanwhile is sent once. Profile updates are ordered by as_of: an
# old return never overwrites what a newer one set.
set -euo pipefail
cd "$(dirname "$0")/.."

since=2020-01-01T00:00:00Z
environment=()
if [[ ${1:-} == --since ]]; then
    since=$2
    shift 2
fi
if [[ ${1:-} == --environment=* ]]; then
    environment=("$1")
    shift
fi

export TAP_SWAPCOMMERCE_START_DATE=$since
export SWAP_TRANSFORMS_VARS='{"backfill_new_metrics_only": true}'
exec .venv/bin/swap-meltano "${environment[@]}" run --state-id-suffix=backfill-2026-12 "$@" \
    returns-to-klaviyo
