"""Hostile or broken input never stops target-klaviyo, and never reaches its logs.

Each bad line is set aside in the ledger (``invalid_record`` / ``unreadable_record``, with the
line number and the field, never the value), every good record around it is delivered, STATE is
emitted, and the next run delivers new records. The executable's whole stderr is searched for
the personal data the bad lines carry.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.target import (
    EVENTS,
    EXECUTABLE,
    PROFILES,
    ledger_rows,
    run_target,
    states_of,
)

EMAIL = "zoe.quixote@example.org"
NAME = "Zoë Quixote"
PHONE = "+14155550199"
ADDRESS = "42 Wallaby Way, Sydney"
#: What must never appear in a log: the personal data above, recognisable parts of it, and the
#: email of the good records around the bad lines.
SECRETS = (EMAIL, "quixote", "Quixote", "4155550199", "Wallaby", "ana@example.com")


def message(kind: str, **fields: Any) -> bytes:
    return json.dumps({"type": kind, **fields}).encode()


def schema(stream: str) -> bytes:
    return message("SCHEMA", stream=stream, schema={"type": "object", "properties": {}})


def record(stream: str, body: dict[str, Any]) -> bytes:
    return message("RECORD", stream=stream, record=body)


def good(unique_id: str, email: str = "ana@example.com") -> bytes:
    return record(EVENTS, _event(unique_id, email))


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


def _nested(depth: int) -> bytes:
    """An event whose properties nest ``depth`` lists deep (built as text: json.dumps recurses)."""
    line = record(EVENTS, _event("deep", properties={"customer_name": NAME, "x": "@"}))
    return line.replace(b'"@"', b"[" * depth + b"]" * depth)


#: name -> (bad line, what its ledger detail must say)
CASES: dict[str, tuple[bytes, str]] = {
    "malformed_json": (record(EVENTS, _event("cut"))[:-25], "line: not valid JSON"),
    "nul_byte": (record(EVENTS, _event("nul")).replace(b"Wallaby", b"Wall\x00aby"), "JSON"),
    "not_utf8": (record(EVENTS, _event("bytes")).replace(b"Wallaby", b"Wall\xffaby"), "UTF-8"),
    "not_an_object": (json.dumps([EMAIL, NAME]).encode(), "not a JSON object"),
    "huge_integer": (
        record(EVENTS, _event("huge")).replace(b'"value": 1', b'"value": ' + b"9" * 5000),
        "a number out of range",
    ),
    "huge_exponent": (
        record(EVENTS, _event("exponent")).replace(b'"value": 1', b'"value": 1e' + b"9" * 20),
        "a number out of range",
    ),
    "nested_150_deep": (_nested(150), "properties.x[0][0][0][0]...: nested deeper than 100"),
    "nested_990_deep": (_nested(990), "nested deeper than 100"),
    "nested_1500_deep": (_nested(1500), "nested deeper than 100"),
    "surrogate_in_email": (
        record(EVENTS, _event("s-email", email="zoe.quixote\ud83d@example.org")),
        "profile.email: a lone surrogate",
    ),
    "surrogate_in_id": (record(EVENTS, _event("s-id\udc00")), "unique_id: a lone surrogate"),
    "surrogate_in_key": (
        record(EVENTS, _event("s-key", properties={"Quixote\ud83d": NAME})),
        "properties.<key>: a lone surrogate (half of a broken character) in a key",
    ),
    "record_before_schema": (
        record(PROFILES, {"update_id": "u-early", "email": EMAIL, "as_of": "2026-11-01"}),
        "stream: a RECORD message before its stream's SCHEMA",
    ),
    "activate_version_before_schema": (
        message("ACTIVATE_VERSION", stream=PROFILES, version=1),
        "stream: a ACTIVATE_VERSION message before its stream's SCHEMA",
    ),
    "batch_message": (
        message("BATCH", stream=EVENTS, encoding={"format": "jsonl"}, manifest=[EMAIL]),
        "type: a BATCH message (this target reads RECORD messages only)",
    ),
    "schema_without_properties": (
        message("SCHEMA", stream=EVENTS, schema={"type": "object"}),
        "schema: a SCHEMA message whose schema has no 'properties'",
    ),
    "record_not_an_object": (
        message("RECORD", stream=EVENTS, record=EMAIL),
        "a RECORD message without a usable 'record'",
    ),
    "unknown_message_type": (message("GOSSIP", email=EMAIL), "not a Singer message type"),
    "stream_not_a_string": (
        message("RECORD", stream=[EMAIL], record={"unique_id": "x"}),
        "stream: a RECORD message without a usable 'stream'",
    ),
    "surrogate_in_state": (
        message("STATE", value={"bookmark": "x\ud83d"}, stream=[NAME]),
        "value.bookmark: a lone surrogate",
    ),
    "state_without_value": (message("STATE", bookmark=EMAIL), "without a usable 'value'"),
}


def _input(cases: dict[str, tuple[bytes, str]], tail: list[bytes]) -> bytes:
    """A good event before and after each bad line, then ``tail``."""
    lines = [schema(EVENTS), good("g-0")]
    for index, (line, _) in enumerate(cases.values(), start=1):
        lines += [line, good(f"g-{index}")]
    return b"".join(line + b"\n" for line in [*lines, *tail])


def run_bytes(config: dict[str, Any], data: bytes, tmp_path: Path) -> subprocess.CompletedProcess:
    """The installed executable on raw bytes (invalid UTF-8 cannot travel as text)."""
    config_file = tmp_path / "target-config.json"
    config_file.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_KLAVIYO_")}
    return subprocess.run(
        [str(EXECUTABLE), "--config", str(config_file)],
        input=data,
        capture_output=True,
        timeout=120,
        env=env,
        check=False,
    )


def assert_no_secrets(log: str) -> None:
    for line in log.splitlines():
        for secret in SECRETS:
            assert secret not in line, f"personal data in a log line: {line[:200]!r}"


def unreadable_rows(ledger_at: Path | str) -> list[dict[str, Any]]:
    return ledger_rows(ledger_at, reason="unreadable_record")


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_at(request, config, ledger_path):
    """Where this test's runs keep their ledger: its SQLite file, or a PostgreSQL database URL."""
    if request.param == "sqlite":
        return ledger_path
    config["ledger_url"] = request.getfixturevalue("postgres_db")
    return config["ledger_url"]


@pytest.mark.slow
def test_every_bad_line_is_set_aside_and_the_run_goes_on(klaviyo, config, ledger_at, tmp_path):
    data = _input(CASES, [message("STATE", value={"bookmark": 1})])
    first = run_bytes(config, data, tmp_path)
    log = first.stderr.decode("utf-8", "replace")
    assert first.returncode == 0, log[-2000:]
    assert states_of(first.stdout.decode()) == [{"bookmark": 1}]
    delivered = sorted(e["unique_id"] for e in klaviyo.events())
    assert delivered == sorted(f"g-{i}" for i in range(len(CASES) + 1))

    rows = unreadable_rows(ledger_at)
    assert len(rows) == len(CASES)
    assert {r["outcome"] for r in rows} == {"invalid_record"}
    ordered = sorted(rows, key=lambda r: r["id"])
    for row, (name, (_, detail)) in zip(ordered, CASES.items(), strict=True):
        assert detail in row["detail"], (name, row["detail"])
        assert "(input line " in row["detail"]
        assert row["payload"], f"{name}: the line is kept for a person to inspect"
        assert not any(secret in row["detail"] for secret in SECRETS), row["detail"]
    assert_no_secrets(log)

    # The next run reads new records (and, at least once, the same bad lines: no crash either).
    second = run_bytes(
        config,
        _input(CASES, [good("next"), message("STATE", value={"bookmark": 2})]),
        tmp_path,
    )
    assert second.returncode == 0, second.stderr.decode()[-2000:]
    assert states_of(second.stdout.decode()) == [{"bookmark": 2}]
    assert "next" in {e["unique_id"] for e in klaviyo.events()}
    assert_no_secrets(second.stderr.decode("utf-8", "replace"))


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in CASES if n != "not_utf8"])
def test_each_bad_line_alone_in_process(klaviyo, config, ledger_path, caplog, name):
    _, detail = CASES[name]
    text = _input({name: CASES[name]}, [message("STATE", value={"n": 1})]).decode()
    run = run_target(config, text)
    assert run.error is None, repr(run.error)
    assert run.states == [{"n": 1}]
    assert sorted(e["unique_id"] for e in klaviyo.events()) == ["g-0", "g-1"]
    [row] = unreadable_rows(ledger_path)
    assert detail in row["detail"]
    assert row["detail"].endswith("(input line 3)")
    assert_no_secrets(caplog.text)
