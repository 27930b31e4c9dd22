"""Latency from a Swap webhook to Klaviyo's acceptance of the return's event, through the receiver.

Creates returns one by one in the Swap emulator, each followed by its signed ``returnCreated``
webhook to a receiver that runs the real ``meltano run returns-to-klaviyo`` (against the Klaviyo
emulator, with a Meltano system directory of its own). Then, per return::

    latency  = Klaviyo acceptance of "Return Started" (ledger recorded_at) - webhook received_at
             = wait     (received -> its run starts: coalescing and the run before it)
             + start-up (run starts -> the tap's first request to Swap: Meltano, discovery, tap)
             + rest     (first request -> Klaviyo acceptance: extract, map, load)

Goal: p95 < 15 s. Run: ``.venv/bin/python bench/webhook_latency.py [--returns 200] [--interval 1]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import statistics
import tempfile
import threading
import time
from bisect import bisect_left
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from emulators.http import Request
from emulators.klaviyo import KlaviyoEmulator
from emulators.swap import LIST_PATH, SwapEmulator, catalog_skus
from swap_webhooks import webhook_latencies
from swap_webhooks.store import DeliveryStore
from tests.webhooks.support import (
    MELTANO,
    ROOT,
    SECRET,
    ReceiverThread,
    emulator_env,
    isolated_meltano,
    settings,
)

KLAVIYO_KEY = "pk_bench_webhooks"
METRIC = "Return Started"


class TimedSwap(SwapEmulator):
    """The Swap emulator, noting when each list request arrives (the tap's first request)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.list_times: list[float] = []
        self._times_lock = threading.Lock()

    def record(self, request: Request, status: int) -> None:
        if request.path == LIST_PATH:
            with self._times_lock:
                self.list_times.append(time.time())
        super().record(request, status)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def stats(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "p95": quantile(values, 0.95),
        "max": max(values),
    }


def epoch(iso: str) -> float:
    parsed = datetime.fromisoformat(iso)
    if parsed.tzinfo is None:  # the ledger's times are naive UTC
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def accepted(ledger: Path, return_ids: list[str]) -> dict[str, float]:
    """When Klaviyo accepted each return's event (first acceptance), as epoch seconds."""
    if not ledger.exists():
        return {}
    with contextlib.closing(sqlite3.connect(ledger)) as db:
        rows = db.execute(
            "SELECT source_id, MIN(recorded_at) FROM deliveries WHERE metric = ?"
            " AND outcome = 'accepted' GROUP BY source_id",
            (METRIC,),
        ).fetchall()
    wanted = set(return_ids)
    return {rid: epoch(at) for rid, at in rows if rid in wanted}


def run_bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    swap = TimedSwap(returns=args.existing)
    with (
        swap,
        KlaviyoEmulator(api_key=KLAVIYO_KEY) as klaviyo,
        isolated_meltano(work) as meltano_env,
    ):
        klaviyo.add_variants(catalog_skus(), inventory=0)
        env = {**os.environ, **emulator_env(swap, klaviyo.url, KLAVIYO_KEY), **meltano_env}
        config = settings(
            work,
            [str(MELTANO), "run", "returns-to-klaviyo"],
            project_dir=str(ROOT),
            coalesce_seconds=args.coalesce,
            retry_seconds=1.0,
        )
        ledger = work / "ledger.sqlite"
        with ReceiverThread(config, env=env) as receiver:
            # A first run catches up with the data set's history, as a deployment's first run
            # would; the measured returns then come on top of an up-to-date pipeline.
            warm = swap.create_return_and_notify(
                receiver.url, SECRET, customer_email="bench.warmup@example.com"
            )[0]
            _wait_for(lambda: warm["return_id"] in accepted(ledger, [warm["return_id"]]), 300)
            created: list[str] = []
            answers: list[float] = []
            began = time.monotonic()
            for number in range(args.returns):
                due = began + number * args.interval
                time.sleep(max(0.0, due - time.monotonic()))
                ret, result = swap.create_return_and_notify(
                    receiver.url, SECRET, customer_email=f"bench.{number:04d}@example.com"
                )
                if result.status != 200:
                    raise SystemExit(f"webhook {number} answered {result.status}")
                created.append(ret["return_id"])
                answers.append(result.elapsed)
            _wait_for(lambda: len(accepted(ledger, created)) == len(created), args.timeout)
            _wait_for(receiver.idle, 120)
            metrics = receiver.metrics()
        with DeliveryStore(config.state_db) as store:
            deliveries = store.deliveries()
            runs = {r["id"]: r for r in store.runs()}
        received = dict(webhook_latencies(config.state_db))
        done = accepted(ledger, created)
        list_times = sorted(swap.list_times)

    # The run that delivered a return is the one running when Klaviyo accepted it. That is not
    # always the run the receiver started for its webhook: a return created while a run is still
    # starting up is read by that run, and the run its webhook causes finds nothing new.
    spans = sorted(
        (epoch(r["started_at"]), epoch(r["ended_at"])) for r in runs.values() if r["ended_at"]
    )
    latency, wait, startup, rest = [], [], [], []
    delivering_runs = set()
    for rid in created:
        got, at = received[rid].timestamp(), done[rid]
        run_start = max(start for start, _ in spans if start <= at)
        delivering_runs.add(run_start)
        first_request = list_times[bisect_left(list_times, run_start)]
        begun = max(got, run_start)  # a return can come in while its run starts up
        latency.append(at - got)
        wait.append(begun - got)
        startup.append(max(0.0, first_request - begun))
        rest.append(at - max(begun, first_request))
    handled_by = {d["return_id"]: d["run_id"] for d in deliveries}
    runs_started = len({handled_by[rid] for rid in created})
    return {
        "returns": len(created),
        "interval_s": args.interval,
        "coalesce_s": args.coalesce,
        "latency_s": stats(latency),
        "wait_s": stats(wait),
        "startup_s": stats(startup),
        "rest_s": stats(rest),
        "runs": runs_started,
        "delivering_runs": len(delivering_runs),
        "returns_per_run": len(created) / len(delivering_runs),
        "runs_by_outcome": metrics["runs"],
        "webhook_answer_ms": {k: v * 1000 for k, v in stats(answers).items()},
    }


def _wait_for(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout} s")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--returns", type=int, default=200, help="returns created, one by one")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between returns")
    parser.add_argument("--coalesce", type=float, default=0.5, help="coalesce_seconds")
    parser.add_argument("--existing", type=int, default=200, help="returns already in Swap")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait at the end")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="webhook-bench-") as tmp:
        result = run_bench(args, Path(tmp))

    print(
        f"{result['returns']} returns, one every {args.interval} s;"
        f" {result['runs']} runs started for them, {result['delivering_runs']} delivered them"
        f" ({result['returns_per_run']:.1f} returns per run)"
    )
    print(f"{'seconds':<44}{'median':>8}{'p95':>8}{'max':>8}")
    for key, label in [
        ("latency_s", "webhook -> Klaviyo acceptance"),
        ("wait_s", "  wait for its run (coalescing, run before)"),
        ("startup_s", "  meltano start-up (to first tap request)"),
        ("rest_s", "  rest (extract, map, load to Klaviyo)"),
    ]:
        figures = result[key]
        print(f"{label:<44}{figures['median']:>8.2f}{figures['p95']:>8.2f}{figures['max']:>8.2f}")
    answer = result["webhook_answer_ms"]
    print(
        f"webhook answer (ms): median {answer['median']:.1f}, p95 {answer['p95']:.1f},"
        f" max {answer['max']:.1f}; runs: {result['runs_by_outcome']}"
    )
    goal = result["latency_s"]["p95"] < 15
    print(f"goal p95 < 15 s: {'met' if goal else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
