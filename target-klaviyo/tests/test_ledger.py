"""The delivery ledger: every outcome, private file, retention, run summary, failing thresholds."""

from __future__ import annotations

import json
import logging
import stat
from collections import Counter
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
    RecordingKlaviyo,
    event,
    exception,
    ledger_execute,
    ledger_rows,
    restock,
    run_cli,
    run_target,
    singer,
    state,
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


@pytest.mark.parametrize(
    ("stream", "record", "field"),
    [
        (
            EVENTS,
            {
                "unique_id": "e",
                "metric": "M",
                "profile": "ana@example.com",
                "time": T1,
                "properties": {},
            },
            "profile",
        ),
        (
            EVENTS,
            {
                "unique_id": "e",
                "metric": "M",
                "profile": {"email": 42},
                "time": T1,
                "properties": {},
            },
            "profile",
        ),
        (
            EVENTS,
            {
                "unique_id": "e",
                "metric": "M",
                "profile": {"email": "a@example.com"},
                "time": 1767225600,
                "properties": {},
            },
            "time",
        ),
        (
            EVENTS,
            {
                "unique_id": "e",
                "metric": "M",
                "profile": {"email": "a@example.com"},
                "time": "yesterday",
                "properties": {},
            },
            "time",
        ),
        (PROFILES, {"update_id": "u", "email": 42, "as_of": T1}, "email"),
        (PROFILES, {"update_id": "u", "email": "a@example.com", "as_of": 5}, "as_of"),
        (
            VARIANTS,
            {
                "restock_key": "r",
                "variant_id": "$custom:::$default:::A",
                "inventory_delta": 1,
                "time": 5,
            },
            "time",
        ),
        (
            EXCEPTIONS,
            {"exception_id": "x", "source_stream": "s", "reason": "r", "occurred_at": ["2026"]},
            "occurred_at",
        ),
    ],
    ids=[
        "profile-string",
        "email-number",
        "time-number",
        "time-text",
        "update-email-number",
        "as-of-number",
        "restock-time-number",
        "occurred-at-list",
    ],
)
def test_a_record_of_the_wrong_types_is_set_aside_and_the_run_goes_on(
    klaviyo, config, ledger_path, stream, record, field
):
    text = singer([(stream, record), event("after", "bob@example.com"), state({"bookmark": 1})])
    run = run_target(config, text)
    assert run.error is None, repr(run.error)
    assert run.states == [{"bookmark": 1}]
    [invalid] = ledger_rows(ledger_path, outcome="invalid_record")
    assert invalid["stream"] == stream
    assert invalid["detail"].startswith(field)
    assert json.loads(invalid["payload"]) == record, "kept as it came, for a replay"
    assert [e["unique_id"] for e in klaviyo.events()] == ["after"]


def test_ledger_file_is_private(klaviyo, config, ledger_path):
    assert run_target(config, singer([event("e-1")])).error is None
    assert stat.S_IMODE(ledger_path.stat().st_mode) == 0o600
    # Even a ledger someone created readable by others is made private again.
    ledger_path.chmod(0o644)
    assert run_target(config, singer([event("e-2")])).error is None
    assert stat.S_IMODE(ledger_path.stat().st_mode) == 0o600


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


@pytest.mark.parametrize(
    ("limits", "code"),
    [
        ({"max_set_aside": 2, "max_set_aside_ratio": 1}, 3),
        ({"max_set_aside": 3, "max_set_aside_ratio": 1}, 0),
        ({"max_set_aside_ratio": 0.25}, 3),
        ({"max_set_aside_ratio": 0.5}, 0),
    ],
    ids=["count-over", "count-at", "ratio-over", "ratio-under"],
)
def test_too_many_set_aside_records_exit_3_after_recording_everything(
    tmp_path, ledger_path, executable, limits, code
):
    # 3 of 8 records set aside (37.5%).
    with RecordingKlaviyo(api_key="pk_t", rate_limits=False, job_delay=0.02) as klaviyo:
        config = {
            "api_key": "pk_t",
            "api_url": klaviyo.url,
            "ledger_url": f"sqlite:///{ledger_path}",
        }
        records = [event(f"e-{i}", f"c{i}@example.com") for i in range(5)]
        records += [event(f"bad-{i}", f"bad{i}@") for i in range(3)]
        records.append(state({"bookmark": 8}))
        result = run_cli({**config, **limits}, singer(records), tmp_path)
    assert result.returncode == code, result.stderr
    # Set-aside records are recorded, so the bookmark may move past them either way.
    assert result.stdout.strip() == '{"bookmark": 8}'
    assert Counter(r["outcome"] for r in ledger_rows(ledger_path)) == {"accepted": 5, "rejected": 3}
    if code:
        [line] = [line for line in result.stderr.splitlines() if "Failing the run" in line]
        assert "3 " in line
        assert "max_set_aside" in line


def test_records_set_aside_by_an_earlier_run_met_again_do_not_fail_the_run(
    tmp_path, ledger_path, executable
):
    """The lookback re-reads a return without a usable e-mail: only a new one counts."""
    with RecordingKlaviyo(api_key="pk_t", rate_limits=False, job_delay=0.02) as klaviyo:
        config = {
            "api_key": "pk_t",
            "api_url": klaviyo.url,
            "ledger_url": f"sqlite:///{ledger_path}",
            "max_set_aside_ratio": 0.25,
        }
        first = [event(f"e-{i}", f"c{i}@example.com") for i in range(9)]
        first.append(event("bad-0", "bad0@"))
        assert run_cli(config, singer(first), tmp_path).returncode == 0
        # The next run meets the bad record again beside one good one: 1 of 2 (50%) is over the
        # ratio, but it is not news.
        again = [event("bad-0", "bad0@"), event("e-new", "new@example.com")]
        result = run_cli(config, singer(again), tmp_path)
        assert result.returncode == 0, result.stderr
        # A new bad record among them is.
        worse = [*again, event("bad-1", "bad1@")]
        result = run_cli(config, singer(worse), tmp_path)
    assert result.returncode == 3
    [line] = [line for line in result.stderr.splitlines() if "Failing the run" in line]
    assert "1 of 2 records newly set aside" in line
