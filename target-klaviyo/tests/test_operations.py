"""What operators rely on: the profile integrity check, alerts, segments, dead letters, replay."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from target_klaviyo.cli import main as klaviyo_ops
from tests.support.target import (
    Hook,
    RecordingKlaviyo,
    event,
    exception,
    ledger_rows,
    restock,
    run_cli,
    run_target,
    singer,
    state,
)

#: Three segments of a mapping, as a project keeps them (the Swap project: transforms/).
SEGMENTS = Path(__file__).resolve().parent / "fixtures" / "segments.yml"


# -- profile integrity ----------------------------------------------------------------------------


@pytest.mark.slow
def test_profile_check_records_new_and_suppressed_profiles(
    klaviyo: RecordingKlaviyo, config: dict[str, Any], ledger_path: Path
) -> None:
    klaviyo.add_profile(email="known@example.com")
    klaviyo.add_profile(email="gone@example.com", suppressed=True)
    text = singer(
        [
            event("e-known", "known@example.com"),
            event("e-new", "typo@exmaple.com"),
            event("e-gone", "gone@example.com"),
            state({"done": 1}),
        ]
    )
    run = run_target({**config, "profile_check": "record"}, text)
    assert run.error is None
    rows = {r["record_key"]: r for r in ledger_rows(ledger_path, stream="klaviyo_events")}
    assert rows["e-known"]["outcome"] == "accepted"
    assert rows["e-known"]["reason"] is None
    assert (rows["e-new"]["outcome"], rows["e-new"]["reason"]) == ("accepted", "new_profile")
    assert (rows["e-gone"]["outcome"], rows["e-gone"]["reason"]) == (
        "accepted",
        "suppressed_profile",
    )
    # Sent anyway in `record` mode: Klaviyo holds all three.
    assert {e["unique_id"] for e in klaviyo.events()} == {"e-known", "e-new", "e-gone"}
    # One lookup through Klaviyo's profiles endpoint for the batch's three emails.
    assert len(klaviyo.requests("GET", "/api/profiles")) == 1


@pytest.mark.slow
def test_profile_check_hold_keeps_mismatched_events_for_a_person(
    klaviyo: RecordingKlaviyo, config: dict[str, Any], ledger_path: Path, tmp_path: Path
) -> None:
    klaviyo.add_profile(email="known@example.com")
    text = singer([event("e-known", "known@example.com"), event("e-new", "new@example.com")])
    run = run_target({**config, "profile_check": "hold"}, text)
    assert run.error is None
    assert {e["unique_id"] for e in klaviyo.events()} == {"e-known"}
    held = [r for r in ledger_rows(ledger_path) if r["outcome"] == "held"]
    assert [(r["record_key"], r["reason"]) for r in held] == [("e-new", "new_profile")]
    assert held[0]["payload"], "a held event keeps its record for the replay"

    # A person decides: replaying sends it (the hold was the question, replay the answer).
    config_file = tmp_path / "ops.json"
    config_file.write_text(json.dumps({**config, "profile_check": "hold"}))
    result = CliRunner().invoke(klaviyo_ops, ["--config", str(config_file), "replay"])
    assert result.exit_code == 0, result.output
    assert "Replayed 1 records" in result.output
    assert {e["unique_id"] for e in klaviyo.events()} == {"e-known", "e-new"}
    result = CliRunner().invoke(
        klaviyo_ops,
        ["--config", str(config_file), "dead-letters", "--output", str(tmp_path / "dl.jsonl")],
    )
    assert result.exit_code == 0
    assert "0 set-aside records" in result.output


# -- dead letters ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_dead_letters_list_each_set_aside_record_once_with_its_reason(
    klaviyo: RecordingKlaviyo, config: dict[str, Any], tmp_path: Path
) -> None:
    text = singer(
        [exception("x-1", "missing_email"), restock("r-1", "NO-SUCH-SKU", 2), state({"a": 1})]
    )
    for _ in range(2):  # a rerun meets the same records again
        assert run_target(config, text).error is None
    config_file = tmp_path / "ops.json"
    config_file.write_text(json.dumps(config))
    output = tmp_path / "dead-letters.jsonl"
    result = CliRunner().invoke(
        klaviyo_ops, ["--config", str(config_file), "dead-letters", "--output", str(output)]
    )
    assert result.exit_code == 0, result.output
    letters = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted((d["record_key"], d["reason"]) for d in letters) == [
        ("r-1", "variant_not_found"),
        ("x-1", "missing_email"),
    ]
    assert all(d["record"] for d in letters)
    assert oct(os.stat(output).st_mode & 0o777) == "0o600"


# -- alerts ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_that_sets_records_aside_posts_one_alert_without_personal_data(
    klaviyo: RecordingKlaviyo, config: dict[str, Any], hook: Hook
) -> None:
    text = singer([event("e-ok", "ana@example.com"), exception("x-1", "invalid_email")])
    run = run_target({**config, "alert_webhook_url": hook.url}, text)
    assert run.error is None
    assert len(hook.posts) == 1
    message = hook.posts[0]["text"]
    assert "invalid_email: 1" in message
    assert "ana@example.com" not in message
    assert config["api_key"] not in json.dumps(hook.posts)

    # The same record set aside again on a rerun does not alert twice.
    assert run_target({**config, "alert_webhook_url": hook.url}, text).error is None
    assert len(hook.posts) == 1


@pytest.mark.slow
def test_a_clean_run_posts_nothing(
    klaviyo: RecordingKlaviyo, config: dict[str, Any], hook: Hook
) -> None:
    run = run_target({**config, "alert_webhook_url": hook.url}, singer([event("e-1")]))
    assert run.error is None
    assert hook.posts == []


@pytest.mark.slow  # waits on Retry-After, timeouts or back-off: seconds each
def test_a_failed_run_alerts_with_its_error(
    klaviyo: RecordingKlaviyo, config: dict[str, Any], hook: Hook, tmp_path: Path
) -> None:
    klaviyo.faults.add(kind="status", status=503, path="event-bulk", count=0)
    result = run_cli({**config, "alert_webhook_url": hook.url}, singer([event("e-1")]), tmp_path)
    assert result.returncode == 1
    assert len(hook.posts) == 1
    assert "run throttle_deadline" in hook.posts[0]["text"]
    assert "HTTP 503" in hook.posts[0]["text"]


# -- segments -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_segments_are_created_once_and_reported_after(
    klaviyo: RecordingKlaviyo, config: dict[str, Any], tmp_path: Path
) -> None:
    config_file = tmp_path / "ops.json"
    config_file.write_text(json.dumps({**config, "rate_limits": None}))
    args = ["--config", str(config_file), "segments", "--definitions", str(SEGMENTS)]
    first = CliRunner().invoke(klaviyo_ops, args)
    assert first.exit_code == 0, first.output
    assert first.output.count("created") == 3
    names = {s["name"] for s in klaviyo.segments()}
    assert "Swap: open return (suppress promotions)" in names
    second = CliRunner().invoke(klaviyo_ops, args)
    assert second.exit_code == 0, second.output
    assert second.output.count("exists") == 3
    assert len(klaviyo.segments()) == 3
    # Creation is paced to Klaviyo's 1/s: never refused with a 429.
    assert klaviyo.stats()["throttled"] == 0


def test_a_segment_klaviyo_refuses_is_reported_and_fails_the_command(
    klaviyo: RecordingKlaviyo, config: dict[str, Any], tmp_path: Path
) -> None:
    definitions = tmp_path / "segments.yml"
    definitions.write_text(
        "segments:\n- name: broken\n  definition:\n    condition_groups:\n"
        "    - conditions:\n      - {type: no-such-condition}\n"
    )
    config_file = tmp_path / "ops.json"
    config_file.write_text(json.dumps({**config, "rate_limits": None}))
    result = CliRunner().invoke(
        klaviyo_ops, ["--config", str(config_file), "segments", "--definitions", str(definitions)]
    )
    assert result.exit_code == 1
    assert "failed   broken" in result.output
