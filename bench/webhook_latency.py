"""Latency from a Swap webhook's POST to Klaviyo's acceptance of the return's event.

On the README's set-up: a receiver (the real app, in a thread) whose run command is the project's
``swap-meltano run returns-to-klaviyo`` with meltano.yml's defaults (``coalesce_seconds`` 0.5,
``claim_retry_seconds`` 1), against the Swap and Klaviyo emulators, with a Meltano system
directory and ledger of its own. A first run catches up with the data set's history; then returns
are created in the Swap emulator, each followed by its signed ``returnCreated`` webhook:
``--returns`` of them at spaced moments (seeded random gaps between ``--min-gap`` and
``--max-gap`` seconds, so some arrive while the receiver is idle and some during a run), then a
burst of ``--burst`` at once.
Per return::

    latency  = Klaviyo acceptance of "Return Started" (ledger recorded_at) - the webhook's POST
             = wait     (POST -> the run that delivers it starts: a run before it, coalescing)
             + start-up (run starts -> the tap's first request to Swap: launcher, Meltano, tap)
             + rest     (first request -> Klaviyo acceptance: extract, map, load)

and, per delivering run, ``after`` = the run's end - its last acceptance (what a run spends once
Klaviyo has the event, which a delivery arriving during it waits for too).

``--load N`` runs N busy-looping processes for the whole measurement (bounded by
``--load-seconds``, and stopped when it ends): ``--load 2`` is the load-average-2 background the
goals name. ``os.getloadavg()`` is reported before and after the measured returns.

Goals: p50 <= 3.5 s, p95 <= 5 s quiet; p95 <= 8 s with ``--load 2``.
Run: ``.venv/bin/python -m bench.webhook_latency [--returns 20] [--burst 5] [--load 2]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_left
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from emulators.http import Request
from emulators.klaviyo import KlaviyoEmulator
from emulators.swap import LIST_PATH, SwapEmulator, catalog_skus
from emulators.swap.webhooks import WebhookSender
from harness.webhooks import (
    ROOT,
    SECRET,
    ReceiverThread,
    emulator_env,
    isolated_meltano,
    settings,
)
from swap_webhooks.store import DeliveryStore

KLAVIYO_KEY = "pk_bench_webhooks"
METRIC = "Return Started"
#: The README's run command (meltano.yml's run_command default), from the project's virtualenv.
RUN_COMMAND = [str(ROOT / ".venv" / "bin" / "swap-meltano"), "run", "returns-to-klaviyo"]
BUSY_LOOP = (
    "import sys, time\n"
    "end = time.monotonic() + float(sys.argv[1])\n"
    "while time.monotonic() < end:\n"
    "    pass\n"
)


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
        "p50": quantile(values, 0.5),
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
        try:
            rows = db.execute(
                "SELECT source_id, MIN(recorded_at) FROM deliveries WHERE metric = ?"
                " AND outcome = 'accepted' GROUP BY source_id",
                (METRIC,),
            ).fetchall()
        except sqlite3.OperationalError:  # the first run is still creating the ledger
            return {}
    wanted = set(return_ids)
    return {rid: epoch(at) for rid, at in rows if rid in wanted}


@contextlib.contextmanager
def busy_load(processes: int, seconds: float) -> Iterator[None]:
    """``processes`` busy loops (a load average of ``processes``), each ending after ``seconds``."""
    loops = [
        subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(seconds)]) for _ in range(processes)
    ]
    try:
        yield
    finally:
        for loop in loops:
            loop.terminate()
        for loop in loops:
            loop.wait(timeout=30)


def gaps(args: argparse.Namespace) -> list[float]:
    """Seconds before each spaced return (seeded), then 0 for each return of the burst."""
    rng = random.Random(args.seed)
    spaced = [rng.uniform(args.min_gap, args.max_gap) for _ in range(args.returns)]
    return spaced + [args.max_gap] + [0.0] * (args.burst - 1) if args.burst else spaced


def send_all(
    swap: SwapEmulator, url: str, waits: list[float]
) -> tuple[dict[str, float], list[float]]:
    """Create each return and POST its webhook after its wait; returns POST times and answers."""
    sender = WebhookSender(url, SECRET, swap.store_id)
    posted: dict[str, float] = {}
    answers: list[float] = []

    def one(number: int) -> None:
        ret = swap.create_return(customer_email=f"bench.{number:04d}@example.com")
        posted[ret["return_id"]] = time.time()
        result = sender.send(ret, "returnCreated")
        if result.status != 200:
            raise SystemExit(f"webhook {number} answered {result.status}")
        answers.append(result.elapsed)

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = []
        for number, wait in enumerate(waits):
            time.sleep(wait)
            futures.append(pool.submit(one, number))
        for future in futures:
            future.result()
    return posted, answers


def run_bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    swap = TimedSwap(returns=args.existing)
    with (
        swap,
        KlaviyoEmulator(api_key=KLAVIYO_KEY) as klaviyo,
        isolated_meltano(work) as meltano_env,
        busy_load(args.load, args.load_seconds),
    ):
        klaviyo.add_variants(catalog_skus(), inventory=0)
        env = {**os.environ, **emulator_env(swap, klaviyo.url, KLAVIYO_KEY), **meltano_env}
        # meltano.yml's receiver settings, as the README runs it (coalesce 0.5 s, claim retry 1 s).
        config = settings(
            work,
            RUN_COMMAND,
            project_dir=str(ROOT),
            coalesce_seconds=args.coalesce,
            retry_seconds=5.0,
            claim_retry_seconds=1.0,
        )
        ledger = work / "ledger.sqlite"
        with ReceiverThread(config, env=env) as receiver:
            # A first run catches up with the data set's history, as a deployment's first run
            # would; the measured returns then come on top of an up-to-date pipeline.
            warm = swap.create_return_and_notify(
                receiver.url, SECRET, customer_email="bench.warmup@example.com"
            )[0]
            _wait_for(lambda: warm["return_id"] in accepted(ledger, [warm["return_id"]]), 300)
            _wait_for(receiver.idle, 120)
            load_before = os.getloadavg()[0]
            posted, answers = send_all(swap, receiver.url, gaps(args))
            created = list(posted)
            _wait_for(lambda: len(accepted(ledger, created)) == len(created), args.timeout)
            load_after = os.getloadavg()[0]
            _wait_for(receiver.idle, 120)
            metrics = receiver.metrics()
        with DeliveryStore(config.state_db) as store:
            runs = {r["id"]: r for r in store.runs()}
        done = accepted(ledger, created)
        list_times = sorted(swap.list_times)

    # The run that delivered a return is the one running when Klaviyo accepted it. That is not
    # always the run the receiver started for its webhook: a return created while a run is still
    # starting up is read by that run, and the run its webhook causes finds nothing new.
    spans = sorted(
        (epoch(r["started_at"]), epoch(r["ended_at"])) for r in runs.values() if r["ended_at"]
    )
    latency, wait, startup, rest = [], [], [], []
    last_acceptance: dict[tuple[float, float], float] = {}
    for rid in created:
        got, at = posted[rid], done[rid]
        span = max(span for span in spans if span[0] <= at)
        last_acceptance[span] = max(last_acceptance.get(span, 0.0), at)
        first_request = list_times[bisect_left(list_times, span[0])]
        begun = max(got, span[0])  # a return can come in while its run starts up
        latency.append(at - got)
        wait.append(begun - got)
        startup.append(max(0.0, first_request - begun))
        rest.append(at - max(begun, first_request))
    after = [end - last_acceptance[(start, end)] for start, end in last_acceptance]
    return {
        "returns": len(created),
        "burst": args.burst,
        "load_processes": args.load,
        "loadavg_1min": [round(load_before, 2), round(load_after, 2)],
        "coalesce_s": args.coalesce,
        "latency_s": stats(latency),
        "wait_s": stats(wait),
        "startup_s": stats(startup),
        "rest_s": stats(rest),
        "after_s": stats(after),
        "delivering_runs": len(last_acceptance),
        "returns_per_run": len(created) / len(last_acceptance),
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
    parser.add_argument("--returns", type=int, default=20, help="returns at spaced moments")
    parser.add_argument("--burst", type=int, default=5, help="then this many at once")
    parser.add_argument("--min-gap", type=float, default=1.0, help="shortest gap (seconds)")
    parser.add_argument("--max-gap", type=float, default=12.0, help="longest gap (seconds)")
    parser.add_argument("--seed", type=int, default=13, help="seed of the gaps")
    parser.add_argument("--coalesce", type=float, default=0.5, help="coalesce_seconds")
    parser.add_argument("--existing", type=int, default=200, help="returns already in Swap")
    parser.add_argument("--load", type=int, default=0, help="busy-looping processes meanwhile")
    parser.add_argument("--load-seconds", type=float, default=900, help="bound on each loop")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait at the end")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    print(f"uptime before: {uptime.strip()}")
    with tempfile.TemporaryDirectory(prefix="webhook-bench-") as tmp:
        result = run_bench(args, Path(tmp))

    print(
        f"{args.returns} returns at spaced moments and a burst of {args.burst}, busy loops:"
        f" {args.load} (1-min load average {result['loadavg_1min'][0]} before,"
        f" {result['loadavg_1min'][1]} after); {result['delivering_runs']} runs delivered them"
        f" ({result['returns_per_run']:.1f} returns per run)"
    )
    print(f"{'seconds':<52}{'p50':>8}{'p95':>8}{'max':>8}")
    for key, label in [
        ("latency_s", "webhook POST -> Klaviyo acceptance"),
        ("wait_s", "  wait for its run (a run before it, coalescing)"),
        ("startup_s", "  run start-up (to the tap's first request)"),
        ("rest_s", "  rest (extract, map, load to Klaviyo)"),
        ("after_s", "per run: its end - its last acceptance"),
    ]:
        figures = result[key]
        print(f"{label:<52}{figures['p50']:>8.2f}{figures['p95']:>8.2f}{figures['max']:>8.2f}")
    answer = result["webhook_answer_ms"]
    print(
        f"webhook answer (ms): median {answer['median']:.1f}, p95 {answer['p95']:.1f},"
        f" max {answer['max']:.1f}; runs: {result['runs_by_outcome']}"
    )
    latency = result["latency_s"]
    goal = (latency["p95"] <= 8) if args.load else (latency["p50"] <= 3.5 and latency["p95"] <= 5)
    name = "p95 <= 8 s under load" if args.load else "p50 <= 3.5 s, p95 <= 5 s"
    print(f"goal {name}: {'met' if goal else 'NOT met'}")
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    print(f"uptime after: {uptime.strip()}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
