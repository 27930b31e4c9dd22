"""Deliveries to runs: a burst is one run, never two at once, one more run for what came during one.

The run command is a fake (``fake_run.py``) that records its start and end, and that the test can
hold at a gate: that makes "during a run" a fact the test arranges, not a timing it hopes for.
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from emulators.swap import WebhookSender
from swap_webhooks.store import DeliveryStore
from tests.support import (
    SECRET,
    STORE,
    ReceiverThread,
    fake_run_command,
    fake_runs,
    settings,
    wait_until,
)

#: Each test runs the fake run command several times (seconds each).
pytestmark = pytest.mark.slow

BURST = 1000


def a_return(number: int) -> dict[str, object]:
    return {"return_id": f"ret_{number:05d}", "order_id": str(700000 + number)}


def test_a_burst_of_1000_during_a_run_makes_exactly_one_more_run(tmp_path: Path) -> None:
    log = tmp_path / "runs.jsonl"
    gate = tmp_path / "gate"
    gate.touch()  # closed: the first run waits until the burst is in
    config = settings(tmp_path, fake_run_command(log, "--gate", str(gate), "--duration", "0.2"))
    with ReceiverThread(config) as receiver:
        sender = WebhookSender(receiver.url, SECRET, STORE)

        assert sender.send(a_return(0), "returnCreated").status == 200
        wait_until(lambda: len(fake_runs(log)) == 1, what="the first run to start")
        current = receiver.health()["current_run"]
        assert (current["id"], current["deliveries"], current["refusals"]) == (1, 1, 0)
        assert current["log_file"].endswith("run-1.log")

        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(
                pool.map(lambda n: sender.send(a_return(n), "returnCreated"), range(1, BURST))
            )
        assert Counter(r.status for r in results) == {200: BURST - 1}
        # All of the burst waits while the first run is held.
        assert receiver.health()["queue"]["pending"] == BURST - 1
        assert len(fake_runs(log)) == 1

        gate.unlink()
        wait_until(receiver.idle, timeout=60, what="the runs to finish")
        metrics = receiver.metrics()
        answers = sorted(r.elapsed for r in results)

    runs = fake_runs(log)
    assert len(runs) == 2
    # Never two at once: the second run started after the first ended.
    (_, end1), (start2, end2) = runs
    assert end1 is not None
    assert end2 is not None
    assert end1 <= start2
    assert metrics["deliveries"]["accepted"] == BURST
    assert metrics["deliveries"]["coalesced"] == BURST - 2
    assert metrics["runs"]["started"] == metrics["runs"]["succeeded"] == 2
    with DeliveryStore(config.state_db) as store:
        by_run = Counter(d["run_id"] for d in store.deliveries())
        assert {d["status"] for d in store.deliveries()} == {"handled"}
    assert by_run == {1: 1, 2: BURST - 1}
    # The real answer times under the burst (16 concurrent senders), for the report.
    print(
        f"\nburst answers: median {statistics.median(answers) * 1000:.1f} ms,"
        f" p95 {answers[int(0.95 * (len(answers) - 1))] * 1000:.1f} ms,"
        f" max {answers[-1] * 1000:.1f} ms; receiver-side p95 {metrics['answer_ms']['p95']} ms"
    )


def test_a_free_running_burst_makes_few_runs_never_overlapping(tmp_path: Path) -> None:
    """Without a gate: however the burst and the runs interleave, each run takes every delivery
    that waited when it started, so deliveries never queue behind more than one run."""
    log = tmp_path / "runs.jsonl"
    config = settings(tmp_path, fake_run_command(log, "--duration", "0.3"), coalesce_seconds=0.2)
    with ReceiverThread(config) as receiver:
        sender = WebhookSender(receiver.url, SECRET, STORE)
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(
                pool.map(lambda n: sender.send(a_return(n), "returnCreated"), range(BURST))
            )
        assert all(r.status == 200 for r in results)
        wait_until(receiver.idle, timeout=60, what="the runs to finish")

    runs = fake_runs(log)
    for (_, end), (start, _) in itertools.pairwise(runs):
        assert end is not None
        assert end <= start
    with DeliveryStore(config.state_db) as store:
        deliveries = store.deliveries()
        recorded = sorted(store.runs(), key=lambda r: r["id"])
    assert all(d["status"] == "handled" for d in deliveries)
    assert len(recorded) == len(runs)
    assert sum(r["deliveries"] for r in recorded) == BURST
    # Each run took everything persisted before it started (ids are given in commit order): no
    # delivery waiting when run k started was left for run k + 1.
    ids = {r["id"]: [d["id"] for d in deliveries if d["run_id"] == r["id"]] for r in recorded}
    for earlier, later in itertools.pairwise(recorded):
        assert max(ids[earlier["id"]]) < min(ids[later["id"]])
    assert len(runs) < BURST // 10, f"{len(runs)} runs for {BURST} deliveries"


def test_a_run_refused_by_meltanos_own_check_is_tried_again_not_dropped(tmp_path: Path) -> None:
    log = tmp_path / "runs.jsonl"
    config = settings(
        tmp_path, fake_run_command(log, "--locked-out", "2"), claim_retry_seconds=0.05
    )
    with ReceiverThread(config) as receiver:
        sender = WebhookSender(receiver.url, SECRET, STORE)
        assert sender.send(a_return(1), "returnCreated").status == 200
        wait_until(lambda: receiver.metrics()["runs"]["succeeded"] == 1, what="a run to succeed")
        metrics = receiver.metrics()

    assert len(fake_runs(log)) == 3
    # One run of the receiver, which took three tries: two refused, then it went.
    assert metrics["runs"]["started"] == 1
    assert metrics["runs"]["already_running"] == 2
    assert metrics["runs"]["crashed"] == 0
    with DeliveryStore(config.state_db) as store:
        [delivery] = store.deliveries()
        [run] = store.runs()
    assert (run["outcome"], run["refusals"]) == ("succeeded", 2)
    assert delivery["status"] == "handled"
    assert delivery["attempts"] == 1


def test_a_failed_run_is_retried_after_a_wait(tmp_path: Path) -> None:
    log = tmp_path / "runs.jsonl"
    config = settings(tmp_path, fake_run_command(log, "--fail", "2"), retry_seconds=0.1)
    with ReceiverThread(config) as receiver:
        sender = WebhookSender(receiver.url, SECRET, STORE)
        assert sender.send(a_return(1), "returnCreated").status == 200
        wait_until(lambda: receiver.metrics()["runs"]["succeeded"] == 1, what="a run to succeed")
        metrics = receiver.metrics()
    # No outcome line and exit 1: the pipeline failed (crashed), and backed off.
    assert metrics["runs"]["crashed"] == 2
    assert metrics["runs"]["already_running"] == 0
    assert len(fake_runs(log)) == 3
