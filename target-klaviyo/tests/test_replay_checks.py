"""``klaviyo-ops replay`` checks each record as a run does before resending it (the intake).

A record set aside before a check existed (by release 0.1.0, which sent phones as typed) comes
back from the ledger as it was then: replay must not send Klaviyo what a run today would fix or
set aside. The rows below are written as that release wrote them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from target_klaviyo.cli import main as klaviyo_ops
from target_klaviyo.ledger import Ledger, Outcome
from tests.support.target import EVENTS, PROFILES, RecordingKlaviyo, event, ledger_rows

T1 = "2026-02-01T10:00:00+00:00"
PHONE = "+44 7400 123456"  # phonenumbers.example_number_for_type("GB", MOBILE), as typed
PHONE_E164 = "+447400123456"


def set_aside_by_an_older_release(
    url: str, rows: list[tuple[str, str, str, dict[str, Any]]]
) -> None:
    ledger = Ledger(url)
    try:
        ledger.migrate()
        ledger.record(
            Outcome(
                stream=stream, record_key=key, outcome=outcome, reason="invalid", payload=record
            )
            for stream, key, outcome, record in rows
        )
    finally:
        ledger.close()


def test_replay_normalises_phones_leaves_invalid_ones_out_and_sets_aside_as_a_run_does(
    klaviyo: RecordingKlaviyo, config: dict[str, Any], ledger_path: Path, tmp_path: Path
) -> None:
    _, typed = event("e-typed", "ana@example.com", profile={"phone_number": PHONE})
    _, bad = event("e-bad", "bob@example.com", profile={"phone_number": "+1 555"})
    phone_only = {"update_id": "u-phone-only", "phone_number": "12", "as_of": T1}
    set_aside_by_an_older_release(
        config["ledger_url"],
        [
            (EVENTS, "e-typed", "rejected", typed),
            (EVENTS, "e-bad", "rejected", bad),
            (PROFILES, "u-phone-only", "failed_profile_import", phone_only),
        ],
    )
    config_file = tmp_path / "ops.json"
    config_file.write_text(json.dumps(config))

    result = CliRunner().invoke(klaviyo_ops, ["--config", str(config_file), "replay"])

    assert result.exit_code == 0, result.output
    assert "Replayed 3 records" in result.output
    assert re.search(r"left_out\s+phone_invalid\s+2\b", result.output), result.output
    sent = {
        e["attributes"]["unique_id"]: entry["attributes"]["profile"]["data"]["attributes"]
        for post in klaviyo.event_posts()
        for entry in post.json()["data"]["attributes"]["events-bulk-create"]["data"]
        for e in entry["attributes"]["events"]["data"]
    }
    assert sent == {
        "e-typed": {"email": "ana@example.com", "phone_number": PHONE_E164},
        "e-bad": {"email": "bob@example.com"},
    }
    rows = sorted(ledger_rows(ledger_path), key=lambda r: r["id"])
    latest = {r["record_key"]: (r["outcome"], r["reason"]) for r in rows}
    assert latest == {
        "e-typed": ("accepted", None),
        "e-bad": ("accepted", None),
        "u-phone-only": ("invalid_record", "invalid_phone"),
    }
    assert all(r["replayed_at"] for r in ledger_rows(ledger_path, outcome="rejected"))
