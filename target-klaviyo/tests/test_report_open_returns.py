"""The open-returns section against the real thing: target-klaviyo run in-process against the
Klaviyo emulator, appending and unappending ``swap_open_returns``, then the report built from the
ledger that run left. The customers listed must be exactly those the emulator's profiles flag.
"""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators.klaviyo import KlaviyoEmulator
from target_klaviyo.masking import mask_email
from target_klaviyo.report import build_report, terminal_summary
from target_klaviyo.target import TargetKlaviyo
from tests.support.html_tables import tables

pytestmark = pytest.mark.slow  # each test takes over half a second (not in the fast tier)

KEY = "pk_test_4f1c9e2b7a6d5c3e8f0a1b2c"
T1 = "2026-02-01T10:00:00+00:00"
T2 = "2026-02-02T10:00:00+00:00"
T3 = "2026-02-03T10:00:00+00:00"
ANA, BOB, CARA, DAN = "ana@example.com", "bob@example.org", "cara@example.net", "dan@example.com"
CUSTOMERS = (ANA, BOB, CARA, DAN)


@pytest.fixture
def klaviyo() -> Iterator[KlaviyoEmulator]:
    with KlaviyoEmulator(api_key=KEY, rate_limits=False, job_delay=0.02) as emulator:
        yield emulator


def update(update_id: str, email: str, as_of: str, **changes: Any) -> dict[str, Any]:
    return {
        "stream": "klaviyo_profile_updates",
        "record": {"update_id": update_id, "email": email, "as_of": as_of, **changes},
    }


def event(unique_id: str, email: str) -> dict[str, Any]:
    return {
        "stream": "klaviyo_events",
        "record": {
            "unique_id": unique_id,
            "metric": "Return Started",
            "profile": {"email": email},
            "time": T1,
            "properties": {"ReturnId": unique_id},
            "source_id": unique_id,
        },
    }


def singer(items: list[dict[str, Any]]) -> str:
    lines, declared = [], set()
    for item in items:
        stream = item["stream"]
        if stream not in declared:
            declared.add(stream)
            schema = {"type": "object", "properties": {}}
            lines.append(json.dumps({"type": "SCHEMA", "stream": stream, "schema": schema}))
        lines.append(json.dumps({"type": "RECORD", **item}))
    return "\n".join(lines) + "\n"


def run_target(config: dict[str, Any], items: list[dict[str, Any]]) -> None:
    """One in-process target run, as ``target-klaviyo`` would do it, closed afterwards."""
    target = TargetKlaviyo(config=config)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            target.listen(io.StringIO(singer(items)))
    finally:
        target.ledger.close()
    assert target.threshold_exceeded is None


def flagged_in_klaviyo(klaviyo: KlaviyoEmulator) -> dict[str, list[str]]:
    found = {}
    for email in CUSTOMERS:
        profile = klaviyo.profile(email)
        values = (profile or {}).get("properties", {}).get("swap_open_returns") or []
        if values:
            found[mask_email(email)] = sorted(values)
    return found


def test_the_flagged_customers_are_those_klaviyo_holds(klaviyo, tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    config = {
        "api_key": KEY,
        "api_url": klaviyo.url,
        "revision": "2026-07-15",
        "ledger_url": f"sqlite:///{ledger}",
        "request_timeout": 5,
        "max_retries": 3,
        "max_set_aside_ratio": 1,
        "job_poll_seconds": 0.02,
    }
    # Run 1: Ana opens two returns (her updates ride on her event), Bob and Cara one each
    # (profile import job).
    run_target(
        config,
        [
            update("swap:A1:profile", ANA, T1, append={"swap_open_returns": ["RMA-A1"]}),
            update("swap:A2:profile", ANA, T1, append={"swap_open_returns": ["RMA-A2"]}),
            event("swap:A1:return_started", ANA),
            update("swap:B1:profile", BOB, T1, append={"swap_open_returns": ["RMA-B1"]}),
            update("swap:C1:profile", CARA, T1, append={"swap_open_returns": ["RMA-C1"]}),
        ],
    )
    # Run 2: Bob's return closes, so does Ana's first; Dan opens one on his event; Cara's newer
    # update is refused by Klaviyo (a profile over its 100 KB; an invalid phone no longer is:
    # the target leaves it out), so her flag may be stale.
    run_target(
        config,
        [
            update("swap:B1:profile", BOB, T2, unappend={"swap_open_returns": ["RMA-B1"]}),
            update("swap:A1:profile", ANA, T2, unappend={"swap_open_returns": ["RMA-A1"]}),
            update("swap:D1:profile", DAN, T2, append={"swap_open_returns": ["RMA-D1"]}),
            event("swap:D1:return_started", DAN),
            update(
                "swap:C1:profile",
                CARA,
                T3,
                properties={"note": "\u00e9" * 60_000},
                unappend={"swap_open_returns": ["RMA-C1"]},
            ),
        ],
    )
    assert flagged_in_klaviyo(klaviyo) == {
        "a***@example.com": ["RMA-A2"],
        "c***@example.net": ["RMA-C1"],
        "d***@example.com": ["RMA-D1"],
    }

    output = tmp_path / "report.html"
    data = build_report(f"sqlite:///{ledger}", output)
    html = output.read_text(encoding="utf-8")

    assert {r.customer: sorted(r.open_returns) for r in data.open_returns} == flagged_in_klaviyo(
        klaviyo
    )
    rows = {row[0]: row for row in tables(html)["open-returns-table"]}
    assert set(rows) == set(flagged_in_klaviyo(klaviyo))
    assert rows["a***@example.com"][3] == "reached Klaviyo"
    assert rows["d***@example.com"][3] == "reached Klaviyo"
    # Klaviyo's refusal of Cara's newer update ("invalid") marks her flag as maybe stale.
    assert rows["c***@example.net"][3] == (
        "reached Klaviyo a newer update was not delivered: invalid"
    )
    # Both ways the target applies updates were used: riding on events, and import jobs.
    with contextlib.closing(sqlite3.connect(ledger)) as conn:
        ways = dict(
            conn.execute(
                "select record_key, coalesce(reason, outcome) from deliveries"
                " where stream = 'klaviyo_profile_updates' and outcome = 'accepted'"
            ).fetchall()
        )
    assert ways["swap:A2:profile"] == "sent_with_event"
    assert ways["swap:D1:profile"] == "sent_with_event"
    assert ways["swap:B1:profile"] == "accepted"
    assert "Customers flagged with open returns: 3 (1 with a newer update not delivered)" in (
        terminal_summary(data)
    )
    for email in CUSTOMERS:
        assert email not in html
        assert email.split("@")[0] + "@" not in html


def test_report_reads_a_target_ledger_without_writing_it(klaviyo, tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    config = {
        "api_key": KEY,
        "api_url": klaviyo.url,
        "revision": "2026-07-15",
        "ledger_url": f"sqlite:///{ledger}",
        "job_poll_seconds": 0.02,
    }
    run_target(config, [update("u-1", ANA, T1, append={"swap_open_returns": ["RMA-1"]})])
    before = ledger.read_bytes()
    data = build_report(f"sqlite:///{ledger}", tmp_path / "report.html")
    assert [(r.customer, r.open_returns) for r in data.open_returns] == [
        ("a***@example.com", ("RMA-1",))
    ]
    assert ledger.read_bytes() == before
    assert Path(tmp_path / "report.html").stat().st_mode & 0o077 == 0
