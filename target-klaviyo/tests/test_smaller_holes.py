"""Issue 10's smaller holes: once per run, replay under the lock, dead letters, escaped output."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from target_klaviyo.cli import main as klaviyo_ops
from target_klaviyo.target import TargetKlaviyo
from target_klaviyo.terminal import EscapeControls, escape_controls
from tests.support.target import (
    EVENTS,
    EVENTS_PATH,
    RecordingKlaviyo,
    event,
    exception,
    ledger_rows,
    run_cli,
    run_target,
    singer,
)


def ops(config: dict[str, Any], tmp_path: Path, *args: str) -> Any:
    config_file = tmp_path / "ops-config.json"
    config_file.write_text(json.dumps(config))
    return CliRunner().invoke(klaviyo_ops, ["--config", str(config_file), *args])


# -- one event, once per run ----------------------------------------------------------------------


@pytest.mark.slow
def test_the_same_event_in_two_batches_of_one_run_is_sent_once(
    klaviyo: RecordingKlaviyo, config: dict[str, Any], ledger_path: Path
) -> None:
    # One record per batch; the first request is still in flight when the second batch is read.
    klaviyo.faults.add(kind="slow", delay=0.5, path="event-bulk-create", count=1)
    text = singer([event("e-1"), event("e-2", "bob@example.com"), event("e-1")])
    run = run_target({**config, "batch_size_rows": 1}, text)

    assert run.error is None
    sent = Counter(
        e["attributes"]["unique_id"]
        for post in klaviyo.requests("POST", EVENTS_PATH)
        for group in post.json()["data"]["attributes"]["events-bulk-create"]["data"]
        for e in group["attributes"]["events"]["data"]
    )
    assert sent == {"e-1": 1, "e-2": 1}
    rows = [(r["record_key"], r["outcome"], r["reason"]) for r in ledger_rows(ledger_path)]
    assert Counter(rows) == {
        ("e-1", "accepted", None): 1,
        ("e-2", "accepted", None): 1,
        ("e-1", "deduplicated", "repeated_in_run"): 1,
    }
    assert run.summary["deduplicated"] == {EVENTS: 1}


# -- replay takes the run lock --------------------------------------------------------------------


@pytest.mark.slow
def test_replay_waits_for_the_run_lock_and_gives_up_clearly(
    klaviyo: RecordingKlaviyo, config: dict[str, Any], ledger_path: Path, tmp_path: Path
) -> None:
    klaviyo.faults.add(kind="status", status=400, path="event-bulk-create", count=1)
    assert run_target(config, singer([event("e-1")])).error is None
    assert ledger_rows(ledger_path)[0]["outcome"] == "rejected"
    requests_before = len(klaviyo.requests())

    holder = TargetKlaviyo(config=config)  # a run in progress holds the ledger
    try:
        refused = ops(config, tmp_path, "replay", "--lock-timeout", "0")
    finally:
        holder.finish("succeeded")
    assert refused.exit_code == 1
    assert "a target-klaviyo run holds the ledger" in refused.output
    assert len(klaviyo.requests()) == requests_before, "nothing sent while the run held it"

    replayed = ops(config, tmp_path, "replay", "--lock-timeout", "0")
    assert replayed.exit_code == 0, replayed.output
    assert [e["unique_id"] for e in klaviyo.events()] == ["e-1"]


@pytest.mark.slow
def test_replay_goes_page_by_page_and_never_resends_what_it_set_aside_again(
    klaviyo: RecordingKlaviyo, config: dict[str, Any], ledger_path: Path, tmp_path: Path
) -> None:
    klaviyo.faults.add(kind="status", status=400, path="event-bulk-create", count=0)
    ids = [f"e-{i}" for i in range(5)]
    assert run_target(config, singer([event(i) for i in ids])).error is None
    assert {r["outcome"] for r in ledger_rows(ledger_path)} == {"rejected"}

    # Klaviyo still refuses them: each is set aside anew (a later row), and the replay ends
    # rather than picking its own new rows up again.
    result = ops(config, tmp_path, "replay", "--lock-timeout", "0", "--page-size", "2")
    assert result.exit_code == 0, result.output
    assert "Replayed 5 records:" in result.output
    unreplayed = [r["record_key"] for r in ledger_rows(ledger_path) if r["replayed_at"] is None]
    assert sorted(unreplayed) == ids, "the new rows wait for the next replay"

    klaviyo.faults.clear()
    posts = len(klaviyo.requests("POST", EVENTS_PATH))
    result = ops(config, tmp_path, "replay", "--lock-timeout", "0", "--page-size", "2")
    assert "Replayed 5 records:" in result.output
    assert sorted(e["unique_id"] for e in klaviyo.events()) == ids
    assert len(klaviyo.requests("POST", EVENTS_PATH)) - posts == 3, "pages of 2, 2 and 1"


# -- dead letters ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_dead_letters_exports_every_unreplayed_row_in_pages_into_an_owner_only_file(
    klaviyo: RecordingKlaviyo, config: dict[str, Any], ledger_path: Path, tmp_path: Path
) -> None:
    records = [exception(f"x-{i:03d}", "invalid_email") for i in range(250)]
    assert run_target(config, singer([*records, event("e-ok")])).error is None
    # A record set aside twice is exported once (its latest row); one accepted later not at all.
    assert run_target(config, singer(records[:10])).error is None
    output = tmp_path / "out" / "dead-letters.jsonl"
    output.parent.mkdir()
    output.write_text("stale content\n")
    output.chmod(0o644)

    result = ops(config, tmp_path, "dead-letters", "--output", str(output), "--page-size", "7")

    assert result.exit_code == 0, result.output
    assert oct(os.stat(output).st_mode & 0o777) == "0o600"
    letters = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(d["record_key"] for d in letters) == [f"x-{i:03d}" for i in range(250)]
    assert all(d["reason"] == "invalid_email" and d["record"] for d in letters)
    assert "250 set-aside records written" in result.output
    assert not [p for p in output.parent.iterdir() if p.name != output.name], "no temp file left"


# -- control characters ---------------------------------------------------------------------------


@pytest.mark.slow
def test_control_characters_from_the_data_are_escaped_in_log_lines(
    klaviyo: RecordingKlaviyo, config: dict[str, Any], tmp_path: Path
) -> None:
    metric = "Return\x1b[2J Started\nrun outcome: succeeded"
    result = run_cli(config, singer([event("e-1", metric=metric)]), tmp_path)

    assert result.returncode == 0, result.stderr[-2000:]
    assert "\x1b" not in result.stderr
    assert "Return\\x1b[2J Started\\nrun outcome: succeeded" in result.stderr
    lines = result.stderr.rstrip().splitlines()
    assert sum("run outcome:" in line for line in lines) == 2
    assert lines[-1].endswith("run outcome: succeeded")


def test_the_log_filter_and_the_escape_keep_tabs_and_text() -> None:
    assert escape_controls("a\tb\x07c\x9b\u2028") == "a\tb\\x07c\\x9b\\u2028"
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "key %s", ("x\x1b[0m",), None)
    assert EscapeControls().filter(record)
    assert record.getMessage() == "key x\\x1b[0m"


@pytest.mark.slow
def test_a_failed_replay_records_why_in_the_runs_table(
    klaviyo: RecordingKlaviyo, config: dict[str, Any], ledger_path: Path, tmp_path: Path
) -> None:
    klaviyo.faults.add(kind="status", status=400, path="event-bulk-create", count=1)
    assert run_target(config, singer([event("e-1")])).error is None
    klaviyo.faults.add(kind="status", status=401, path="event-bulk-create", count=1)

    result = ops(config, tmp_path, "replay", "--lock-timeout", "0")

    assert result.exit_code == 1
    assert "Replay stopped: Klaviyo rejected the API key (HTTP 401)" in result.output
    [replay] = [r for r in ledger_rows(ledger_path, "runs") if r["status"] == "failed"]
    assert replay["error"].startswith("KlaviyoAuthError: Klaviyo rejected the API key")
