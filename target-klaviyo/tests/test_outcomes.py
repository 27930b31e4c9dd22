"""One outcome per run: recorded in the ledger, printed last, alerted once (decisions.md §2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from target_klaviyo.cli import main as klaviyo_ops
from target_klaviyo.client import KlaviyoAuthError, KlaviyoUnavailable, ThrottleDeadline
from target_klaviyo.outcomes import (
    first_by_precedence,
    outcome_of,
    safe_error,
)
from target_klaviyo.runlog import PastRun, outcome_alert_due
from target_klaviyo.target import TargetKlaviyo
from tests.support.target import (
    EVENTS,
    EXECUTABLE,
    KEY,
    Hook,
    RecordingKlaviyo,
    event,
    exception,
    last_outcome,
    ledger_execute,
    ledger_rows,
    outcomes,
    restock,
    run_cli,
    run_target,
    singer,
    state,
)

VARIANT_JOBS = "catalog-variant-bulk-update-jobs"


def runs_of(ledger_path: Path) -> list[dict[str, Any]]:
    return sorted(ledger_rows(ledger_path, "runs"), key=lambda r: r["started_at"])


def summary_text(config: dict[str, Any], tmp_path: Path) -> str:
    config_file = tmp_path / "ops-config.json"
    config_file.write_text(json.dumps(config))
    result = CliRunner().invoke(klaviyo_ops, ["--config", str(config_file), "summary"])
    assert result.exit_code == 0, result.output
    return result.output


# -- crashes --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_unexpected_exception_is_a_visible_crash_then_the_next_run_recovers(
    klaviyo: RecordingKlaviyo,
    config: dict[str, Any],
    ledger_path: Path,
    tmp_path: Path,
    hook: Hook,
) -> None:
    # Klaviyo answers a catalog update with 202 but no job: the target meets a body it does not
    # expect (KeyError), which no handler anticipates.
    klaviyo.add_variants(["A"], inventory=5)
    klaviyo.faults.add(kind="status", status=202, method="POST", path=VARIANT_JOBS, count=0)
    settings = {**config, "alert_webhook_url": hook.url}
    text = singer([event("e-1", "ana@example.com"), restock("r-1", "A", 2), state({"b": 1})])

    first = run_cli(settings, text, tmp_path)

    assert first.returncode == 1
    assert first.stdout == "", "no STATE after a crash"
    assert last_outcome(first.stderr) == "crashed"
    assert "Traceback" not in first.stderr
    assert "ana@example.com" not in first.stderr
    [run] = runs_of(ledger_path)
    assert run["status"] == "crashed"
    assert run["finished_at"] is not None
    assert run["error"].startswith("KeyError")
    assert len(hook.posts) == 1
    assert "run crashed" in hook.posts[0]["text"]
    assert "KeyError" in hook.posts[0]["text"]
    summary = summary_text(config, tmp_path)
    assert "Nothing set aside: every record reached Klaviyo" not in summary
    assert "crashed" in summary

    # The same crash again: recorded, but the alert is not repeated (within a day).
    second = run_cli(settings, text, tmp_path)
    assert last_outcome(second.stderr) == "crashed"
    assert len(hook.posts) == 1

    # Fixed: the next run delivers the rest and says the pipeline recovered.
    klaviyo.faults.clear()
    third = run_cli(settings, text, tmp_path)
    assert third.returncode == 0, third.stderr[-2000:]
    assert last_outcome(third.stderr) == "succeeded"
    assert json.loads(third.stdout) == {"b": 1}
    assert [r["status"] for r in runs_of(ledger_path)] == ["crashed", "crashed", "succeeded"]
    assert len(hook.posts) == 2
    assert "run succeeded" in hook.posts[1]["text"]
    assert len(klaviyo.events()) == 1


def test_the_crash_message_keeps_no_email_key_or_sql_parameters() -> None:
    error = ValueError(f"profile ana.lopez@example.com refused with key {KEY}\nsecond line")
    text = safe_error(error, [KEY])
    assert text.startswith("ValueError: profile a***@example.com refused")
    assert KEY not in text
    assert "second line" not in text
    engine = sa.create_engine("sqlite://")
    with engine.connect() as conn, pytest.raises(sa.exc.SQLAlchemyError) as caught:
        conn.execute(sa.text("SELECT * FROM missing WHERE email = :e"), {"e": "bob@example.com"})
    text = safe_error(caught.value)
    assert text == "OperationalError: no such table: missing"


def test_outcomes_of_exceptions_and_their_precedence() -> None:
    assert outcome_of(KlaviyoAuthError("401")) == "auth_failed"
    assert outcome_of(ThrottleDeadline("events", 3600, 10, 300)) == "throttle_deadline"
    assert outcome_of(KlaviyoUnavailable("503 after retries")) == "throttle_deadline"
    assert outcome_of(RecursionError()) == "crashed"
    assert outcome_of(KeyboardInterrupt()) == "interrupted"
    assert first_by_precedence(["set_aside_over_threshold", "mapping_errors_held"]) == (
        "mapping_errors_held"
    )
    assert first_by_precedence([]) == "succeeded"


# -- held mappings --------------------------------------------------------------------------------


@pytest.mark.slow
def test_mapping_errors_deliver_everything_else_then_fail_the_run(
    klaviyo: RecordingKlaviyo, config: dict[str, Any], ledger_path: Path, tmp_path: Path
) -> None:
    text = singer(
        [
            event("e-1", "ana@example.com"),
            exception("x-1", "mapping_error"),
            exception("x-2", "invalid_output"),
            exception("x-3", "missing_email"),
            event("e-2", "bob@example.com"),
        ]
    )
    result = run_cli(config, text, tmp_path)

    assert result.returncode == 1
    assert last_outcome(result.stderr) == "mapping_errors_held"
    assert {e["unique_id"] for e in klaviyo.events()} == {"e-1", "e-2"}
    assert outcomes(ledger_path, EVENTS) == {"e-1": "accepted", "e-2": "accepted"}
    [run] = runs_of(ledger_path)
    assert run["status"] == "mapping_errors_held"
    assert "invalid_output 1, mapping_error 1" in run["error"]


@pytest.mark.slow
def test_a_tolerated_or_set_aside_reason_alone_still_succeeds(
    klaviyo: RecordingKlaviyo, config: dict[str, Any], ledger_path: Path
) -> None:
    text = singer([event("e-1"), exception("x-1", "tolerated_mapping_error")])
    run = run_target(config, text)
    assert run.error is None
    assert run.target.outcome == "succeeded"


# -- interrupted runs -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_left_running_is_marked_interrupted_by_the_next_and_alerted_once(
    klaviyo: RecordingKlaviyo, config: dict[str, Any], ledger_path: Path, hook: Hook
) -> None:
    assert run_target(config, singer([event("e-1")])).error is None
    ledger_execute(
        ledger_path,
        "INSERT INTO runs (run_id, started_at, status) VALUES ('killed-run', ?, 'running')",
        datetime.now(timezone.utc).isoformat(),
    )
    run = run_target({**config, "alert_webhook_url": hook.url}, singer([event("e-2")]))

    assert run.error is None
    statuses = {r["run_id"]: r["status"] for r in runs_of(ledger_path)}
    assert statuses["killed-run"] == "interrupted"
    assert statuses[run.target.ledger.run_id] == "succeeded"
    [killed] = [r for r in runs_of(ledger_path) if r["run_id"] == "killed-run"]
    assert "found running" in killed["error"]
    assert len(hook.posts) == 1
    assert "marked `interrupted`" in hook.posts[0]["text"]


@pytest.mark.slow
def test_sigterm_ends_the_run_interrupted_with_its_outcome_recorded(
    klaviyo: RecordingKlaviyo, config: dict[str, Any], ledger_path: Path, tmp_path: Path
) -> None:
    config_file = tmp_path / "target-config.json"
    config_file.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_KLAVIYO_")}
    process = subprocess.Popen(
        [str(EXECUTABLE), "--config", str(config_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdin is not None
        process.stdin.write(singer([event("e-1"), state({"b": 1})]))
        process.stdin.flush()  # input stays open: the run is waiting for more
        _wait_for(lambda: _running(ledger_path))
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 1
    assert stdout == "", "no STATE: the buffered records were not delivered"
    assert last_outcome(stderr) == "interrupted"
    [run] = runs_of(ledger_path)
    assert run["status"] == "interrupted"
    assert run["error"] == "RunInterrupted: stopped by signal 15"


def _running(ledger_path: Path) -> bool:
    if not ledger_path.exists():
        return False
    try:
        return any(r["status"] == "running" for r in ledger_rows(ledger_path, "runs"))
    except Exception:  # noqa: BLE001 - the tables may not exist yet
        return False


def _wait_for(condition: Any, limit: float = 60.0) -> None:
    """Poll until ``condition()`` holds (a readiness wait, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.05)


# -- alerts for repeated outcomes -----------------------------------------------------------------

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)


def past(*runs: tuple[str, float]) -> list[PastRun]:
    """Earlier runs, newest first, as (outcome, hours before NOW)."""
    return [PastRun(outcome, NOW - timedelta(hours=hours)) for outcome, hours in runs]


@pytest.mark.parametrize(
    ("outcome", "previous", "due"),
    [
        ("succeeded", [], False),
        ("crashed", [], True),
        ("crashed", [("succeeded", 1)], True),
        ("crashed", [("crashed", 1)], False),
        ("crashed", [("crashed", 23), ("succeeded", 24)], False),
        ("crashed", [("crashed", 25), ("succeeded", 26)], True),
        # Alerted 30 h ago (streak start), again 5 h ago (a day later): quiet now.
        ("crashed", [("crashed", 5), ("crashed", 20), ("crashed", 30)], False),
        ("auth_failed", [("crashed", 1)], True),
        ("succeeded", [("throttle_deadline", 1)], True),
        ("succeeded", [("succeeded", 1)], False),
        ("already_running", [("crashed", 1)], False),
    ],
)
def test_a_repeated_outcome_alerts_once_then_on_change_or_after_a_day(
    outcome: str, previous: list[tuple[str, float]], due: bool
) -> None:
    assert outcome_alert_due(outcome, past(*previous), NOW) is due


@pytest.mark.slow
def test_a_second_run_while_the_ledger_is_held_ends_already_running(
    klaviyo: RecordingKlaviyo, config: dict[str, Any], ledger_path: Path, tmp_path: Path
) -> None:
    settings = {**config, "lock_timeout_seconds": 0}
    holder = TargetKlaviyo(config=settings)
    try:
        result = run_cli(settings, singer([event("e-1")]), tmp_path)
    finally:
        holder.finish("succeeded")
        holder.ledger.close()
    assert result.returncode == 1
    assert last_outcome(result.stderr) == "already_running"
    assert klaviyo.events() == []
    assert sorted(r["status"] for r in runs_of(ledger_path)) == ["already_running", "succeeded"]
