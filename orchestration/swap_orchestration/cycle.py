"""``swap-orchestration-cycle``: materialise one cycle of every brand through Dagster, in process.

What CI and the benchmark use: each brand's partition of ``klaviyo_returns`` is materialised with
Dagster's in-process executor and the asset's real retry policy, on ``$DAGSTER_HOME``'s instance
(brands one after another), else on an ephemeral instance each (brands at once, ``--parallel``);
one JSON line per brand says how it ended.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dagster as dg


def materialise(brand: str, instance: Any) -> dict[str, Any]:
    from swap_orchestration.definitions import klaviyo_returns  # noqa: PLC0415 - reads brands

    result = dg.materialize(
        [klaviyo_returns], partition_key=brand, instance=instance, raise_on_error=False
    )
    found: dict[str, Any] = {"brand": brand, "success": result.success, "run_id": result.run_id}
    for event in result.all_events:
        if event.is_step_materialization:
            metadata = event.step_materialization_data.materialization.metadata
            found["outcome"] = metadata["outcome"].value
        elif event.is_step_failure:
            failure = event.step_failure_data.user_failure_data
            if failure is not None and "outcome" in failure.metadata:
                found["outcome"] = failure.metadata["outcome"].value
        elif event.event_type_value == "STEP_UP_FOR_RETRY":
            found["retries"] = found.get("retries", 0) + 1
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="swap-orchestration-cycle", description=__doc__)
    parser.add_argument("--brand", action="append", help="only these brands (default: all)")
    parser.add_argument("--parallel", type=int, default=1, help="brands materialised at once")
    args = parser.parse_args(argv)
    from swap_orchestration.definitions import BRANDS  # noqa: PLC0415 - reads brands.yml

    names = args.brand or [brand["name"] for brand in BRANDS]
    if os.environ.get("DAGSTER_HOME"):
        # The deployment's instance (its runs show in the UI): one brand after another.
        with dg.DagsterInstance.get() as instance:
            results = [materialise(name, instance) for name in names]
    else:
        # An ephemeral instance per brand: an instance's in-memory storage is not shared
        # between threads, and each brand's run waits on its subprocess, not on Python.
        with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
            results = list(pool.map(_materialise_alone, names))
    for result in results:
        sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0 if all(r["success"] for r in results) else 1


def _materialise_alone(brand: str) -> dict[str, Any]:
    with dg.DagsterInstance.ephemeral() as instance:
        return materialise(brand, instance)


if __name__ == "__main__":
    sys.exit(main())
