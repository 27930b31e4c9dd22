"""The receiver reads each run's ``run outcome:`` line (decisions §2) and keeps what a person needs
to read a failed run: outcome, exit status, duration, the last lines, and the whole output's file.

The run command is ``fake_run.py``, which prints what the pipeline would: the launcher's
``already_running`` refusal, an outcome line, or nothing before exit 1.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from emulators.swap import WebhookSender
from swap_webhooks.app import _nearest_rank
from swap_webhooks.runner import Runner
from swap_webhooks.store import DeliveryStore, RunReport
from swap_webhooks.verify import Delivery
from tests.support import (
    SECRET,
    STORE,
    ReceiverThread,
    fake_run_command,
    fake_runs,
    settings,
    wait_until,
)


def send_one(receiver: ReceiverThread, number: int = 1) -> None:
    sender = WebhookSender(receiver.url, SECRET, STORE)
    payload = {"return_id": f"ret_{number:05d}", "order_id": str(700000 + number)}
    assert sender.send(payload, "returnCreated").status == 200


@pytest.mark.slow  # several runs of the fake run command
def test_already_running_is_tried_again_until_the_run_goes(tmp_path: Path) -> None:
    log = tmp_path / "runs.jsonl"
    command = fake_run_command(log, "--already-running", "3", "--outcome", "succeeded")
    # A back-off would show: the first failure wait is an hour.
    config = settings(tmp_path, command, claim_retry_seconds=0.05, retry_seconds=3600)
    with ReceiverThread(config) as receiver:
        send_one(receiver)
        wait_until(lambda: receiver.metrics()["runs"]["succeeded"] == 1, what="the run")
        metrics = receiver.metrics()
        health = receiver.health()
    assert len(fake_runs(log)) == 4
    assert metrics["runs"]["already_running"] == 3
    assert health["last_run"]["refusals"] == 3
    assert health["last_run"]["outcome"] == "succeeded"


@pytest.mark.slow  # several runs of the fake run command
@pytest.mark.parametrize(
    ("outcome", "code"),
    [("succeeded", 0), ("mapping_errors_held", 1), ("set_aside_over_threshold", 1)],
)
def test_runs_that_read_every_return_handle_their_deliveries_without_back_off(
    tmp_path: Path, outcome: str, code: int
) -> None:
    log = tmp_path / "runs.jsonl"
    command = fake_run_command(log, "--outcome", outcome, "--exit", str(code))
    config = settings(tmp_path, command, retry_seconds=3600)
    with ReceiverThread(config) as receiver:
        send_one(receiver, 1)
        wait_until(lambda: receiver.metrics()["runs"][outcome] == 1, what="the first run")
        wait_until(receiver.idle, what="the first run to end")
        assert receiver.health()["runner"] == "idle"  # not backing off
        send_one(receiver, 2)
        wait_until(lambda: receiver.metrics()["runs"][outcome] == 2, what="the second run")
    with DeliveryStore(config.state_db) as store:
        assert [d["status"] for d in store.deliveries()] == ["handled", "handled"]


@pytest.mark.slow  # a run of the fake run command, then the back-off it starts
def test_a_pipeline_failure_backs_off_and_its_deliveries_wait(tmp_path: Path) -> None:
    log = tmp_path / "runs.jsonl"
    command = fake_run_command(log, "--outcome", "auth_failed", "--exit", "1")
    config = settings(tmp_path, command, retry_seconds=3600)
    with ReceiverThread(config) as receiver:
        send_one(receiver)
        wait_until(lambda: receiver.health()["runner"] == "backing_off", what="the back-off")
        health = receiver.health()
    assert health["last_run"]["outcome"] == "auth_failed"
    assert health["queue"]["pending"] == 1
    assert len(fake_runs(log)) == 1


@pytest.mark.slow  # a run of the fake run command, then the back-off it starts
def test_a_run_without_an_outcome_line_is_a_failure_even_with_exit_status_0(
    tmp_path: Path,
) -> None:
    """Meltano's exit status is not the outcome: a run that never said what it did failed."""
    log = tmp_path / "runs.jsonl"
    command = fake_run_command(log, "--no-outcome", "--exit", "0")
    config = settings(tmp_path, command, retry_seconds=3600)
    with ReceiverThread(config) as receiver:
        send_one(receiver)
        wait_until(lambda: receiver.health()["runner"] == "backing_off", what="the back-off")
        health = receiver.health()
        metrics = receiver.metrics()
    last = health["last_run"]
    assert (last["outcome"], last["exit_code"]) == ("crashed", 0)
    assert last["note"] == "ended without a run outcome line"
    assert metrics["runs"]["succeeded"] == 0
    assert health["queue"]["pending"] == 1


def test_a_failed_run_is_readable_on_health_and_in_its_log_file(tmp_path: Path) -> None:
    log = tmp_path / "runs.jsonl"
    command = fake_run_command(log, "--lines", "100", "--outcome", "crashed", "--exit", "1")
    config = settings(tmp_path, command, retry_seconds=3600)
    with ReceiverThread(config) as receiver:
        send_one(receiver)
        wait_until(lambda: receiver.metrics()["runs"]["crashed"] == 1, what="the run")
        last = receiver.health()["last_run"]
    assert (last["outcome"], last["exit_code"]) == ("crashed", 1)
    assert last["duration_seconds"] > 0
    tail = last["output_tail"].splitlines()
    assert len(tail) == 40
    assert tail[-1] == "Block run completed."
    assert tail[0] == "log line 63"
    output = Path(last["log_file"])
    assert output.parent == tmp_path / "runtime" / "swap-webhooks-runs"
    assert oct(output.stat().st_mode & 0o777) == "0o600"
    text = output.read_text()
    assert "log line 1\n" in text
    assert text.rstrip().endswith("Block run completed.")
    with DeliveryStore(config.state_db) as store:
        [run] = store.runs()
    assert run["output_tail"] == last["output_tail"]


class AlertSink:
    """A Slack-compatible webhook that keeps what it is sent."""

    def __init__(self) -> None:
        self.posts: list[dict[str, str]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.posts.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def alert_sink() -> Iterator[AlertSink]:
    sink = AlertSink()
    sink.thread.start()
    yield sink
    sink.server.shutdown()
    sink.server.server_close()


@pytest.mark.slow  # several runs of the fake run command
def test_the_staleness_alert_is_sent_once_until_a_run_succeeds(
    tmp_path: Path, alert_sink: AlertSink
) -> None:
    log = tmp_path / "runs.jsonl"
    failing = tmp_path / "failing"
    failing.touch()
    config = settings(
        tmp_path,
        fake_run_command(log, "--fail-while", str(failing)),
        retry_seconds=0.05,
        max_retry_seconds=0.05,
        stale_after_minutes=0.005,  # 0.3 s
        alert_webhook_url=alert_sink.url,
    )
    with ReceiverThread(config) as receiver:
        send_one(receiver, 1)
        wait_until(lambda: alert_sink.posts, what="the staleness alert")
        crashed = receiver.metrics()["runs"]["crashed"]
        wait_until(lambda: receiver.metrics()["runs"]["crashed"] >= crashed + 5, what="more runs")
        assert len(alert_sink.posts) == 1  # once, however many runs fail after it
        assert receiver.health()["stale"]["alert_sent_at"] is not None
        failing.unlink()
        wait_until(lambda: receiver.metrics()["runs"]["succeeded"] == 1, what="a success")
        assert receiver.health()["stale"]["alert_sent_at"] is None
        failing.touch()
        send_one(receiver, 2)
        wait_until(lambda: len(alert_sink.posts) == 2, what="the next stale period's alert")
    text = alert_sink.posts[0]["text"]
    assert "no pipeline run has succeeded for 0.005 minutes" in text
    assert "crashed" in text
    assert "swap-webhooks-runs/run-" in text
    assert "ret_" not in text  # ids of what waits are in the state db, not in the alert


def test_nothing_waiting_is_not_stale(tmp_path: Path, alert_sink: AlertSink) -> None:
    """A quiet store, or deliveries a run has handled, are not stale however old; one delivery
    waiting an hour is. The runner's own check is called at chosen moments: through the receiver,
    whether a delivery waits longer than a tiny window before its run depends on the machine."""
    config = settings(
        tmp_path,
        fake_run_command(tmp_path / "runs.jsonl"),
        stale_after_minutes=0.001,
        alert_webhook_url=alert_sink.url,
    )
    an_hour_ago = time.time() - 3600

    async def checks() -> list[str | None]:
        with DeliveryStore(config.state_db) as store:
            runner = Runner(config, store, env={})
            seen = []
            await runner._check_stale()  # nothing ever came
            seen.append(runner.stale_since)
            store.add(a_delivery("nonce-handled"), an_hour_ago)
            claim = store.claim()
            assert claim is not None
            store.finish(claim.run_id, RunReport(outcome="succeeded", exit_code=0))
            await runner._check_stale()  # came an hour ago, handled since
            seen.append(runner.stale_since)
            store.add(a_delivery("nonce-waiting"), an_hour_ago)
            await runner._check_stale()  # waiting for an hour
            seen.append(runner.stale_since)
            return seen

    quiet, handled, waiting = asyncio.run(checks())
    assert quiet is None
    assert handled is None
    assert waiting is not None
    [alert] = alert_sink.posts
    assert "no pipeline run has succeeded for 0.001 minutes" in alert["text"]


def a_delivery(nonce: str) -> Delivery:
    now = time.time()
    return Delivery(
        nonce=nonce,
        event="returnCreated",
        return_id="ret_00001",
        order_id="700001",
        store_id=STORE,
        issued_at=now,
        expires_at=now + 300,
    )


@pytest.mark.parametrize(
    ("values", "median", "p95"),
    [
        ([5.0], 5.0, 5.0),
        ([1.0, 10.0], 1.0, 10.0),
        ([1.0, 2.0, 3.0, 100.0], 2.0, 100.0),
        ([float(v) for v in range(1, 101)], 50.0, 95.0),
        ([float(v) for v in range(1, 21)], 10.0, 19.0),
    ],
)
def test_percentiles_are_by_nearest_rank(values: list[float], median: float, p95: float) -> None:
    assert _nearest_rank(values, 50) == median
    assert _nearest_rank(values, 95) == p95


def test_p95_is_never_below_the_median() -> None:
    for n in range(1, 60):
        values = sorted(float((i * 7919) % 101) for i in range(n))
        assert _nearest_rank(values, 95) >= _nearest_rank(values, 50)  # type: ignore[operator]
