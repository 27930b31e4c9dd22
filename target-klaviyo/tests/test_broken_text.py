"""Broken text in a record: lone surrogates repaired or set aside, kept for dead letters.

A lone surrogate (half of a broken character) in free text is repaired to U+FFFD and counted;
in a key or an e-mail it sets the record aside as ``unreadable_record``, keyed by its id when
readable, and the dead-letter export shows the line as it came.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from target_klaviyo.cli import main as klaviyo_ops
from tests.support.target import (
    EVENTS,
    PROFILES,
    ledger_rows,
    run_target,
)

pytestmark = pytest.mark.slow  # each test takes over half a second (not in the fast tier)

#: A customer the broken records belong to.
EMAIL = "zoe.quixote@example.org"
NAME = "Zoë Quixote"
PHONE = "+14155550199"
ADDRESS = "42 Wallaby Way, Sydney"


def message(kind: str, **fields: Any) -> bytes:
    return json.dumps({"type": kind, **fields}).encode()


def schema(stream: str) -> bytes:
    return message("SCHEMA", stream=stream, schema={"type": "object", "properties": {}})


def record(stream: str, body: dict[str, Any]) -> bytes:
    return message("RECORD", stream=stream, record=body)


def _event(unique_id: str, email: str = EMAIL, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "unique_id": unique_id,
        "metric": "Return Started",
        "profile": {"email": email, "phone_number": PHONE},
        "time": "2026-11-01T10:00:00+00:00",
        "value": 1,
        "properties": {"customer_name": NAME, "address": ADDRESS},
        "source_id": f"ret-{unique_id}",
    }
    body.update(extra)
    return body


def unreadable_rows(ledger_at: Path) -> list[dict[str, Any]]:
    return ledger_rows(ledger_at, reason="unreadable_record")


def test_a_lone_surrogate_in_free_text_is_repaired_and_counted(
    klaviyo, config, ledger_path, caplog
):
    body = _event("free", email="bob@example.com", properties={"reason": "Zo\u00eb \ud83d"})
    text = (schema(EVENTS) + b"\n" + record(EVENTS, body) + b"\n").decode()
    with caplog.at_level(logging.INFO):
        run = run_target(config, text)
    assert run.error is None, repr(run.error)
    [sent] = klaviyo.events()
    assert sent["properties"]["reason"] == "Zo\u00eb \ufffd"
    assert run.summary["repaired_text"] == 1
    assert unreadable_rows(ledger_path) == []
    # The end-of-run summary says it too (a count, never the text).
    assert re.search(r"repaired +free text \(U\+FFFD\) +1$", caplog.text, re.MULTILINE)


def test_the_record_key_names_a_readable_record_and_a_hash_otherwise(config, ledger_path):
    keyed = record(EVENTS, _event("keyed", email="zo\ud83d@example.org"))
    text = b"\n".join([schema(EVENTS), keyed, b"{oops", b""]).decode()
    assert run_target(config, text).error is None
    first, second = sorted(unreadable_rows(ledger_path), key=lambda r: r["id"])
    assert (first["record_key"], first["stream"]) == ("keyed", EVENTS)
    assert second["record_key"].startswith("unreadable:")
    assert second["stream"] == "(input)"
    assert json.loads(second["payload"]) == {"input_line": "{oops"}


def test_dead_letters_show_the_line_and_replay_says_to_fix_the_source(config, tmp_path):
    line = record(EVENTS, _event("s-email", email="zoe.quixote\ud83d@example.org"))
    text = (schema(EVENTS) + b"\n" + line + b"\n").decode()
    assert run_target(config, text).error is None
    config_file = tmp_path / "ops-config.json"
    config_file.write_text(json.dumps(config))
    out = tmp_path / "dead.jsonl"
    args = ["--config", str(config_file), "dead-letters", "--output", str(out)]
    assert CliRunner().invoke(klaviyo_ops, args).exit_code == 0
    [letter] = [json.loads(row) for row in out.read_text().splitlines()]
    assert letter["reason"] == "unreadable_record"
    assert "\\ud83d" in letter["record"]["input_line"], "the line as it came, escaped"
    replay = CliRunner().invoke(klaviyo_ops, ["--config", str(config_file), "replay"])
    assert replay.exit_code == 0, replay.output
    assert "unreadable_record" in replay.output
    assert "fix the source record or the mapping, then re-sync it" in replay.output


def test_a_lone_surrogate_in_a_profile_property_is_repaired(klaviyo, config):
    body = {
        "update_id": "u-free",
        "email": "bob@example.com",
        "as_of": "2026-11-01T10:00:00+00:00",
        "properties": {"last_comment": "fits \udc00 well"},
    }
    text = (schema(PROFILES) + b"\n" + record(PROFILES, body) + b"\n").decode()
    run = run_target(config, text)
    assert run.error is None, repr(run.error)
    assert klaviyo.profile("bob@example.com")["properties"] == {"last_comment": "fits \ufffd well"}
    assert run.summary["repaired_text"] == 1
