"""The delivery ledger: records of the wrong types set aside, a private file, failing thresholds."""

from __future__ import annotations

import json
import stat
from collections import Counter

import pytest

from tests.support.target import (
    EVENTS,
    EXCEPTIONS,
    PROFILES,
    VARIANTS,
    RecordingKlaviyo,
    event,
    ledger_rows,
    run_cli,
    run_target,
    singer,
    state,
)

pytestmark = pytest.mark.slow  # each test takes over half a second (not in the fast tier)

T1 = "2026-02-01T10:00:00+00:00"


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
