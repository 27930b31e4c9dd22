"""Bounded waits (issue 9 part 4): a Klaviyo that throttles for long ends the run cleanly."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from target_klaviyo.client import ThrottleBudget, _retry_after
from tests.support.target import (
    EVENTS,
    Hook,
    RecordingKlaviyo,
    event,
    inventory_of,
    last_outcome,
    ledger_rows,
    outcomes,
    restock,
    run_cli,
    singer,
    state,
)


@pytest.mark.slow
def test_retry_after_an_hour_ends_the_run_at_once_and_the_next_run_delivers_once(
    klaviyo: RecordingKlaviyo,
    config: dict[str, Any],
    ledger_path: Path,
    tmp_path: Path,
    hook: Hook,
) -> None:
    klaviyo.add_variants(["A"], inventory=5)
    klaviyo.faults.add(
        kind="status", status=429, retry_after=3600, path="event-bulk-create", count=0
    )
    text = singer(
        [
            restock("r-1", "A", 2),
            event("e-1", "ana@example.com"),
            event("e-2", "bob@example.com"),
            state({"bookmark": 3}),
        ]
    )
    # A deadline of a few seconds; the subprocess timeout is the bound that proves "not an hour".
    settings = {**config, "throttle_deadline_seconds": 3, "alert_webhook_url": hook.url}

    first = run_cli(settings, text, tmp_path, timeout=120)

    assert first.returncode == 1
    assert last_outcome(first.stderr) == "throttle_deadline"
    assert first.stdout == "", "no STATE past the events that were not delivered"
    # Delivered work is kept and recorded: the restock went through before the events.
    assert inventory_of(klaviyo, "$custom:::$default:::A") == 7
    assert outcomes(ledger_path, "klaviyo_catalog_variants") == {"r-1": "accepted"}
    assert klaviyo.events() == []
    [run] = ledger_rows(ledger_path, "runs")
    assert run["status"] == "throttle_deadline"
    assert run["error"].startswith("ThrottleDeadline: Klaviyo throttled events")
    assert "asked to wait 3600 s" in run["error"]
    [alert] = hook.posts
    assert "run throttle_deadline" in alert["text"]
    assert "/api/event-bulk-create-jobs" in alert["text"]
    assert "3600 s" in alert["text"]
    assert len(klaviyo.event_posts(status=429)) == 1, "an hour's wait is refused at once"

    # Throttling over: the same input (the bookmark never moved) delivers everything once.
    klaviyo.faults.clear()
    second = run_cli(settings, text, tmp_path, timeout=120)

    assert second.returncode == 0, second.stderr[-3000:]
    assert last_outcome(second.stderr) == "succeeded"
    assert json.loads(second.stdout) == {"bookmark": 3}
    assert Counter(e["unique_id"] for e in klaviyo.events()) == {"e-1": 1, "e-2": 1}
    assert inventory_of(klaviyo, "$custom:::$default:::A") == 7, "the restock is not reapplied"
    assert outcomes(ledger_path, EVENTS) == {"e-1": "accepted", "e-2": "accepted"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_counts_wall_clock_waits_once_and_refuses_past_the_deadline() -> None:
    clock = FakeClock()
    budget = ThrottleBudget(10, clock=clock)

    assert budget.take(4) is None
    assert budget.take(4) is None, "another thread throttled for the same seconds: no cost"
    assert budget.used == 4
    clock.now += 4
    assert budget.take(5) is None
    assert budget.used == 9
    clock.now += 5
    assert budget.take(2) == pytest.approx(1), "2 s asked, 1 s left: refused, nothing waited"
    assert budget.take(3600) == pytest.approx(1)
    assert budget.take(1) is None
    clock.now += 1
    assert budget.take(0.5) == pytest.approx(0), "a 429 once the deadline is spent is refused"


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    def answer(value: str | None) -> httpx.Response:
        headers = {} if value is None else {"Retry-After": value}
        return httpx.Response(429, headers=headers)

    assert _retry_after(answer("3600")) == 3600
    assert _retry_after(answer(None)) == 1
    assert _retry_after(answer("soon")) == 1
    later = format_datetime(datetime.now(timezone.utc) + timedelta(hours=2), usegmt=True)
    assert 7000 < _retry_after(answer(later)) <= 7200
