"""The delivery ledger on SQLite and on PostgreSQL: every outcome, retention, the run summary.

These tests run on both kinds of ledger (PostgreSQL from tests/support/postgres.py), so they are
the project's; the rest of the ledger's tests are the plugin's own
(target-klaviyo/tests/test_ledger.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from target_klaviyo.ledger import head_revision
from tests.support.target import (
    EVENTS,
    EXCEPTIONS,
    PROFILES,
    VARIANTS,
    event,
    exception,
    ledger_execute,
    ledger_rows,
    restock,
    run_target,
    singer,
    update,
)

T1 = "2026-02-01T10:00:00+00:00"


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_at(request, config, ledger_path):
    """Where this test's runs keep their ledger: its SQLite file, or a PostgreSQL database URL."""
    if request.param == "sqlite":
        return ledger_path
    config["ledger_url"] = request.getfixturevalue("postgres_db")
    return config["ledger_url"]


def test_every_outcome_is_recorded_with_its_reason(klaviyo, config, ledger_at):
    klaviyo.add_variants(["A"], inventory=1)
    records = [
        event("ok-1", "ana@example.com", metric="Return Started"),
        event("ok-2", "ana@example.com", metric="Return Completed"),
        event("ok-1", "ana@example.com", metric="Return Started"),  # repeated
        event("bad-email", "not-an-email"),
        # Within the contract's 102,400 characters, over Klaviyo's 100 KB of UTF-8.
        event("too-long", "bob@example.com", properties={"note": "\u00e9" * 60_000}),
        update("u-ok", "cid@example.com", as_of=T1, properties={"x": 1}),
        update("u-bad", "dan@@example", as_of=T1, properties={"x": 1}),
        restock("r-ok", "A", 2),
        restock("r-missing", "NOPE", 2),
        exception("x-1", "missing_email"),
        exception("x-2", "invalid_email"),
        # Records breaking the contract: set aside, and the run goes on.
        (
            EVENTS,
            {
                "unique_id": "no-metric",
                "profile": {"email": "eve@example.com"},
                "time": T1,
                "properties": {},
            },
        ),
        (PROFILES, {"update_id": "no-as-of", "email": "eve@example.com"}),
        (
            VARIANTS,
            {"restock_key": "bad-variant", "variant_id": "A", "inventory_delta": 1, "time": T1},
        ),
        (EXCEPTIONS, {"exception_id": "x-3", "source_stream": "returns", "occurred_at": T1}),
        event("ok-3", "fay@example.com"),
    ]
    run = run_target(config, singer(records))
    assert run.error is None

    rows = ledger_rows(ledger_at)
    got = sorted((r["stream"], r["record_key"], r["outcome"], r["reason"]) for r in rows)
    assert got == sorted(
        [
            (EVENTS, "ok-1", "accepted", None),
            (EVENTS, "ok-2", "accepted", None),
            (EVENTS, "ok-3", "accepted", None),
            (EVENTS, "ok-1", "deduplicated", "repeated_in_batch"),
            (EVENTS, "bad-email", "rejected", "invalid"),
            (EVENTS, "too-long", "rejected", "string_too_long"),
            (EVENTS, "no-metric", "invalid_record", "invalid_record"),
            (PROFILES, "u-ok", "accepted", None),
            (PROFILES, "u-bad", "failed_profile_import", "invalid"),
            (PROFILES, "no-as-of", "invalid_record", "invalid_record"),
            (VARIANTS, "r-ok", "accepted", None),
            (VARIANTS, "r-missing", "rejected", "variant_not_found"),
            (VARIANTS, "bad-variant", "invalid_record", "out_of_bounds"),
            (EXCEPTIONS, "x-1", "mapper_exception", "missing_email"),
            (EXCEPTIONS, "x-2", "mapper_exception", "invalid_email"),
            (EXCEPTIONS, "x-3", "invalid_record", "invalid_record"),
        ]
    )
    by_key = {(r["stream"], r["record_key"], r["outcome"]): r for r in rows}
    details = {
        (EVENTS, "no-metric"): "missing required field ('metric')",
        (PROFILES, "no-as-of"): "missing required field ('as_of')",
        (VARIANTS, "bad-variant"): "variant_id: fails 'pattern'",
        (EXCEPTIONS, "x-3"): "missing required field ('reason')",
    }
    for (stream, key), detail in details.items():
        assert detail in by_key[(stream, key, "invalid_record")]["detail"]
    assert "Invalid email" in by_key[(PROFILES, "u-bad", "failed_profile_import")]["detail"]
    assert by_key[(EXCEPTIONS, "x-1", "mapper_exception")]["metric"] == "return_started"
    # Payloads (personal data) are kept only for records a person may have to replay.
    for row in rows:
        assert (row["payload"] is None) == (row["outcome"] in ("accepted", "deduplicated"))
    # No email in the ledger outside the payloads kept for replay (identities are hashed).
    emails = {"ana@example.com", "cid@example.com", "fay@example.com", "eve@example.com"}
    for row in rows:
        values = " ".join(str(v) for k, v in row.items() if k != "payload")
        assert not any(email in values for email in emails), row
    assert run.summary["accepted_by_metric"] == {"Return Started": 2, "Return Completed": 1}


def test_retention_clears_old_payloads_and_keeps_recent_ones(klaviyo, config, ledger_at):
    records = [event("old", "not-an-email"), event("new", "also-not-an-email")]
    assert run_target(config, singer(records)).error is None
    long_ago = datetime.now(timezone.utc) - timedelta(days=40)
    # SQLite keeps times as text in SQLAlchemy's format; PostgreSQL takes the datetime.
    when = long_ago if isinstance(ledger_at, str) else long_ago.strftime("%Y-%m-%d %H:%M:%S")
    sql = "UPDATE deliveries SET recorded_at = ? WHERE record_key = 'old'"
    ledger_execute(ledger_at, sql, when)
    assert run_target({**config, "retention_days": 30}, singer([])).error is None
    payloads = {r["record_key"]: r["payload"] for r in ledger_rows(ledger_at)}
    assert payloads["old"] is None
    assert json.loads(payloads["new"])["unique_id"] == "new"
    if isinstance(ledger_at, Path):
        assert b"not-an-email" not in ledger_at.read_bytes().replace(b"also-not-an-email", b"")


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def logged() -> Iterator[Lines]:
    """What the target logs (its summary is at INFO), whatever the test's log level."""
    handler = Lines()
    logger = logging.getLogger("target-klaviyo")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.slow
def test_run_summary_counts_outcomes_retries_and_429s(klaviyo, config, ledger_at, logged):
    klaviyo.faults.add(kind="status", status=429, path="event-bulk-create", retry_after=1, count=1)
    klaviyo.faults.add(kind="status", status=503, path="catalog-variants", count=1)
    klaviyo.add_variants(["A"], inventory=0)
    first = [event("e-1"), event("e-2", metric="Return Completed"), restock("r-1", "A", 1)]
    assert run_target(config, singer(first)).error is None
    records = [
        *first,
        event("e-3"),
        event("e-3"),
        event("bad", "not-an-email"),
        restock("r-2", "GONE", 1),
        exception("x-1"),
    ]
    run = run_target(config, singer(records))
    assert run.error is None
    runs = sorted(ledger_rows(ledger_at, "runs"), key=lambda r: r["started_at"])
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    first_summary, summary = (json.loads(r["summary"]) for r in runs)
    assert first_summary["throttled_429"] == {"events": 1}
    assert first_summary["retries"] == {"catalog_variants": 1}
    # The same summary is logged at the end of each run, for the person reading the job's log.
    first_requests = sum(first_summary["requests"].values())
    assert f"  requests {first_requests}, retries 1, 429s 1" in logged.lines
    assert "  requests 3, retries 0, 429s 0" in logged.lines
    words = [line.split() for line in logged.lines]
    assert ["accepted", "Return", "Completed", "1"] in words
    assert ["set", "aside", "variant_not_found", "1"] in words
    assert ["deduplicated", EVENTS, "3"] in words
    assert summary == {
        "accepted_by_metric": {"Return Started": 1},
        "accepted_by_stream": {EVENTS: 1},
        "deduplicated": {EVENTS: 3, VARIANTS: 1},
        "set_aside_by_reason": {"invalid": 1, "variant_not_found": 1, "missing_email": 1},
        "requests": {"events": 2, "catalog_variants": 1},
        "retries": {},
        "throttled_429": {},
        "repaired_text": 0,
        "left_out": {},
        "ledger_schema_version": head_revision(),
    }
