"""Accepted means kept: deliveries survive a stop or a crash of the receiver and are handled after.

The receiver runs as the real ``swap-webhooks serve`` command, configured by ``SWAP_WEBHOOKS_*``
variables, and is stopped with SIGTERM (a deploy) or SIGKILL (a crash).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from emulators.swap import WebhookSender, post_webhook, webhook_payload
from swap_webhooks.store import DeliveryStore
from tests.support import (
    SECRET,
    STORE,
    SWAP_WEBHOOKS,
    ReceiverProcess,
    fake_run_command,
    fake_runs,
    get_json,
    wait_until,
)

#: Each test starts the real receiver command, once or twice (seconds each).
pytestmark = pytest.mark.slow


def receiver_env(tmp_path: Path, run_command: list[str], coalesce: float = 0.05) -> dict[str, str]:
    return {
        "SWAP_WEBHOOKS_WEBHOOK_SECRET": SECRET,
        "SWAP_WEBHOOKS_STORE_ID": STORE,
        "SWAP_WEBHOOKS_PROJECT_DIR": str(tmp_path),
        "SWAP_WEBHOOKS_STATE_DB": "state/webhooks.sqlite",
        "SWAP_WEBHOOKS_RUN_COMMAND": json.dumps(run_command),
        "SWAP_WEBHOOKS_COALESCE_SECONDS": str(coalesce),
        "SWAP_WEBHOOKS_RETRY_SECONDS": "0.1",
    }


def kill_leftovers(log: Path) -> None:
    """A receiver killed with SIGKILL cannot stop its run: the test does."""
    for _, pid in _pids(log):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _pids(log: Path) -> list[tuple[str, int]]:
    if not log.exists():
        return []
    return [(row["event"], row["pid"]) for row in map(json.loads, log.read_text().splitlines())]


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["stop", "crash"])
def test_a_delivery_caught_in_a_run_when_the_receiver_stops_is_handled_after_restart(
    tmp_path: Path, stop_signal: int
) -> None:
    log = tmp_path / "runs.jsonl"
    gate = tmp_path / "gate"
    gate.touch()
    env = receiver_env(tmp_path, fake_run_command(log, "--gate", str(gate)))
    first = ReceiverProcess(env, tmp_path / "receiver.log").start()
    try:
        result = WebhookSender(first.url, SECRET, STORE).send(
            {"return_id": "ret_0001", "order_id": "1"}, "returnCreated"
        )
        assert result.status == 200
        wait_until(lambda: len(fake_runs(log)) == 1, what="the run to start")
    finally:
        code = first.stop(stop_signal)
    # A SIGTERM is a clean stop (exit 0); a SIGKILL kills.
    assert code == (0 if stop_signal == signal.SIGTERM else -stop_signal)
    if stop_signal == signal.SIGTERM:
        assert "Application shutdown complete" in (tmp_path / "receiver.log").read_text()
        # The receiver stopped its run on the way out.
        assert fake_runs(log)[0][1] is not None
    kill_leftovers(log)

    state_db = tmp_path / "state" / "webhooks.sqlite"
    with DeliveryStore(state_db) as store:
        [delivery] = store.deliveries()
    # Stopped: the run was recorded as interrupted and its delivery waits again. Crashed: the
    # store still says a run has it, until the next start recovers it.
    assert delivery["status"] == ("claimed" if stop_signal == signal.SIGKILL else "pending")

    gate.unlink()
    second = ReceiverProcess(env, tmp_path / "receiver.log").start()
    try:
        wait_until(
            lambda: get_json(second.base + "/metrics")["runs"]["succeeded"] == 1,
            what="the delivery to be handled after restart",
        )
        metrics = get_json(second.base + "/metrics")
    finally:
        assert second.stop() == 0
    with DeliveryStore(state_db) as store:
        [delivery] = store.deliveries()
        runs = {r["id"]: r["outcome"] for r in store.runs()}
    assert delivery["status"] == "handled"
    assert runs == {1: "interrupted", 2: "succeeded"}
    assert delivery["run_id"] == 2
    assert metrics["deliveries"]["accepted"] == 1  # counters survive the restart too
    assert metrics["runs"]["interrupted"] == 1


def test_a_delivery_not_yet_claimed_when_the_receiver_stops_is_handled_after_restart(
    tmp_path: Path,
) -> None:
    log = tmp_path / "runs.jsonl"
    # A long coalescing window: the receiver stops before any run starts.
    first = ReceiverProcess(
        receiver_env(tmp_path, fake_run_command(log), coalesce=60), tmp_path / "receiver.log"
    ).start()
    try:
        payload = webhook_payload(
            {"return_id": "ret_0002", "order_id": "2"}, "returnCreated", SECRET, STORE
        )
        assert post_webhook(first.url, payload).status == 200
        assert get_json(first.base + "/health")["queue"]["pending"] == 1
    finally:
        assert first.stop() == 0
    assert fake_runs(log) == []

    second = ReceiverProcess(
        receiver_env(tmp_path, fake_run_command(log)), tmp_path / "receiver.log"
    ).start()
    try:
        wait_until(
            lambda: get_json(second.base + "/metrics")["runs"]["succeeded"] == 1,
            what="the delivery to be handled after restart",
        )
        # A redelivery of it after the restart is still recognised: no new run.
        assert post_webhook(second.url, payload).status == 200
        metrics = get_json(second.base + "/metrics")
        assert get_json(second.base + "/health")["queue"]["pending"] == 0
    finally:
        assert second.stop() == 0
    assert metrics["deliveries"]["redelivered"] == 1
    assert metrics["runs"]["started"] == 1
    assert len(fake_runs(log)) == 1
    assert SECRET not in (tmp_path / "receiver.log").read_text()


def test_bad_settings_stop_the_command_with_a_message_that_hides_the_secret(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        **receiver_env(tmp_path, ["no-such-command-anywhere"]),
        "SWAP_WEBHOOKS_PORT": "not-a-port",
    }
    done = subprocess.run(
        [str(SWAP_WEBHOOKS), "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "port" in done.stderr
    assert SECRET not in done.stderr + done.stdout

    env["SWAP_WEBHOOKS_PORT"] = "0"
    done = subprocess.run(
        [str(SWAP_WEBHOOKS), "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "no-such-command-anywhere" in done.stderr
