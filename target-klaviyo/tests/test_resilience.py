"""Rate limits, retries, and failing runs: nothing lost, nothing confirmed that was not."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from emulators.klaviyo import KlaviyoEmulator
from target_klaviyo.client import ENDPOINTS, KlaviyoUnavailable
from tests.support.target import (
    EVENTS,
    EVENTS_PATH,
    IMPORTS_PATH,
    KEY,
    RecordingKlaviyo,
    event,
    inventory_of,
    ledger_rows,
    outcomes,
    properties_of,
    restock,
    run_cli,
    run_target,
    scaled_limits,
    singer,
    state,
    update,
)

pytestmark = pytest.mark.slow  # each test takes over half a second (not in the fast tier)

T1 = "2026-02-01T10:00:00+00:00"


@pytest.fixture
def limited(ledger_path):
    """An emulator enforcing Klaviyo's rate limits, 5 times faster than real time."""
    with RecordingKlaviyo(api_key=KEY, rate_limits=True, time_scale=5, job_delay=0.1) as klaviyo:
        yield klaviyo


def limited_config(klaviyo: KlaviyoEmulator, ledger_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "api_key": KEY,
        "api_url": klaviyo.url,
        "ledger_url": f"sqlite:///{ledger_path}",
        "events_per_request": 10,
        "profiles_per_job": 5,
        "job_poll_seconds": 0.02,
        "max_set_aside_ratio": 1,
        **extra,
    }


def busy_input() -> str:
    # 60 event requests, 8 import jobs (each polled), a variant read and job.
    records = [event(f"e-{i}", f"c{i % 40}@example.com") for i in range(600)]
    records += [
        update(f"u-{i}", f"p{i}@example.com", as_of=T1, properties={"i": i}) for i in range(40)
    ]
    records.append(restock("r-1", "A", 2))
    return singer(records)


def test_paced_to_scaled_limits_the_target_meets_few_429s(limited, ledger_path):
    limited.add_variants(["A"], inventory=0)
    config = limited_config(limited, ledger_path, rate_limits=scaled_limits(5))
    run = run_target(config, busy_input())
    assert run.error is None
    assert limited.stats()["throttled"] <= 2
    assert len(limited.events()) == 600
    assert all(limited.profile(f"p{i}@example.com") for i in range(40))


def test_unpaced_the_same_load_is_throttled_and_still_delivered(limited, ledger_path):
    # The control for the test above: without pacing, the emulator's limits do bite, and the
    # target waits each Retry-After and delivers everything anyway.
    limited.add_variants(["A"], inventory=0)
    unlimited = {name: [{"requests": 100_000, "seconds": 1}] for name in ENDPOINTS}
    config = limited_config(limited, ledger_path, rate_limits=unlimited)
    run = run_target(config, busy_input())
    assert run.error is None
    throttled = limited.stats()["throttled"]
    assert throttled > 2
    assert sum(run.summary["throttled_429"].values()) == throttled
    assert sum(run.summary["retries"].values()) == 0, "a 429 is pacing, not a failure"
    assert len(limited.events()) == 600
    assert Counter(e["unique_id"] for e in limited.events()).most_common(1)[0][1] == 1
    assert inventory_of(limited, "$custom:::$default:::A") == 2


def test_an_injected_429_is_waited_out_then_succeeds(klaviyo, config, ledger_path, caplog):
    klaviyo.faults.add(kind="status", status=429, path="event-bulk-create", retry_after=2, count=1)
    run = run_target(config, singer([event("e-1"), state({"bookmark": 1})]))
    assert run.error is None
    assert [p.status for p in klaviyo.requests("POST", EVENTS_PATH)] == [429, 202]
    assert "Klaviyo throttled events; waiting 2.0 s" in caplog.text
    assert run.summary["throttled_429"] == {"events": 1}
    assert run.summary["retries"] == {}
    assert run.states == [{"bookmark": 1}]
    assert [e["unique_id"] for e in klaviyo.events()] == ["e-1"]


@pytest.mark.parametrize(
    ("fault", "endpoint"),
    [
        ({"kind": "status", "status": 503}, "POST /api/event-bulk-create-jobs"),
        ({"kind": "status", "status": 500}, "POST /api/profile-bulk-import-jobs"),
        ({"kind": "status", "status": 502}, "GET /api/profile-bulk-import-jobs/[^/]+$"),
        ({"kind": "drop"}, "POST /api/event-bulk-create-jobs"),
        ({"kind": "drop"}, "GET /api/catalog-variants"),
        ({"kind": "drop"}, "POST /api/catalog-variant-bulk-update-jobs"),
        ({"kind": "slow", "delay": 1.5}, "POST /api/event-bulk-create-jobs"),
        ({"kind": "slow", "delay": 1.5}, "POST /api/catalog-variant-bulk-update-jobs"),
        ({"kind": "slow", "delay": 1.5}, "GET /api/catalog-variant-bulk-update-jobs/"),
    ],
    ids=lambda value: value.get("kind", "") if isinstance(value, dict) else value.split()[1][5:],
)
def test_failures_are_retried_and_everything_arrives_once(
    klaviyo, config, ledger_path, fault, endpoint
):
    method, path = endpoint.split()
    klaviyo.add_variants(["A"], inventory=5)
    klaviyo.faults.add(**fault, method=method, path=path, count=2)
    records = [
        event("e-1", "ana@example.com"),
        event("e-2", "bob@example.com"),
        update("u-1", "cid@example.com", as_of=T1, properties={"x": 1}),
        restock("r-1", "A", 3),
        state({"bookmark": 4}),
    ]
    run = run_target({**config, "request_timeout": 1}, singer(records))
    assert run.error is None
    assert sum(run.summary["retries"].values()) == 2
    assert run.states == [{"bookmark": 4}]
    assert Counter(e["unique_id"] for e in klaviyo.events()) == {"e-1": 1, "e-2": 1}
    assert properties_of(klaviyo, "cid@example.com") == {"x": 1}
    assert inventory_of(klaviyo, "$custom:::$default:::A") == 8
    assert set(outcomes(ledger_path).values()) == {"accepted"}


def test_a_request_that_keeps_failing_fails_the_run_after_recording_what_was_confirmed(
    klaviyo, config, ledger_path, tmp_path, executable
):
    # Events drain first (their batch fills up) and are accepted; the profile import then keeps
    # failing. The run must exit non-zero with the events recorded, and emit no STATE.
    klaviyo.faults.add(kind="status", status=503, method="POST", path=IMPORTS_PATH, count=0)
    records = [event(f"e-{i}", f"c{i}@example.com") for i in range(5)]
    records.append(state({"bookmark": 5}))
    records += [
        update(f"u-{i}", f"p{i}@example.com", as_of=T1, properties={"i": i}) for i in range(3)
    ]
    records.append(state({"bookmark": 8}))
    settings = {**config, "batch_size_rows": 5, "max_retries": 2}
    result = run_cli(settings, singer(records), tmp_path)

    assert result.returncode == 1
    assert result.stdout == ""
    assert "failed 3 times (last: HTTP 503)" in result.stderr
    assert "Traceback" not in result.stderr
    assert outcomes(ledger_path) == {f"e-{i}": "accepted" for i in range(5)}
    [run] = ledger_rows(ledger_path, "runs")
    # Klaviyo unavailable after every retry: a failure of the pipeline's bounded waits, not a
    # crash (docs/runbook.md, run outcomes); the error says which wait ran out.
    assert run["status"] == "throttle_deadline"
    assert run["error"].startswith("KlaviyoUnavailable: Klaviyo POST /api/profile-bulk-import")
    assert result.stderr.rstrip().splitlines()[-1].endswith("run outcome: throttle_deadline")
    assert '"retries":{"profile_import":2}' in run["summary"]
    assert len(klaviyo.events()) == 5

    # Klaviyo is back: the same input (the bookmark never moved) completes, sending no event twice.
    klaviyo.faults.clear()
    result = run_cli(settings, singer(records), tmp_path)
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if line] == ['{"bookmark": 8}']
    assert len(klaviyo.event_posts()) == 1
    assert properties_of(klaviyo, "p2@example.com") == {"i": 2}


def test_state_is_emitted_only_past_confirmed_records(klaviyo, config, ledger_path):
    # With the SDK's periodic drain after every record, the target emits STATE as it goes.
    # Once profile imports start failing, no STATE past the update may come out.
    klaviyo.faults.add(kind="status", status=503, method="POST", path=IMPORTS_PATH, count=0)
    records = [
        event("e-1", "ana@example.com"),
        event("e-2", "bob@example.com"),
        state({"bookmark": 2}),
        event("e-3", "cid@example.com"),
        state({"bookmark": 3}),
        event("e-4", "cid@example.com"),
        update("u-1", "dan@example.com", as_of=T1, properties={"x": 1}),
        state({"bookmark": 5}),
        event("e-5", "eve@example.com"),
        state({"bookmark": 6}),
    ]
    run = run_target({**config, "max_retries": 1}, singer(records), max_record_age_minutes=0)
    assert isinstance(run.error, KlaviyoUnavailable)
    # Each bookmark comes out at the first drain after it, once everything before it is in.
    assert run.states == [{"bookmark": 2}, {"bookmark": 3}]
    accepted = dict.fromkeys(["e-1", "e-2", "e-3", "e-4"], "accepted")
    assert outcomes(ledger_path) == accepted
    assert sorted(e["unique_id"] for e in klaviyo.events()) == sorted(accepted)


def test_state_waits_for_set_aside_records_to_be_recorded(klaviyo, config, ledger_path):
    records = [
        event("ok", "ana@example.com"),
        event("bad", "not-an-email"),
        state({"bookmark": 2}),
    ]
    run = run_target(config, singer(records), max_record_age_minutes=0)
    assert run.error is None
    assert run.states == [{"bookmark": 2}]
    assert outcomes(ledger_path, EVENTS) == {"ok": "accepted", "bad": "rejected"}


def test_a_finished_run_leaves_no_thread_of_its_own(klaviyo, config):
    # In-process runs (tests, replays) must not pile up background threads: the rate limiter's
    # and the event sender's end with the run.
    def own_threads() -> set[int]:
        return {
            t.ident or 0
            for t in threading.enumerate()
            if "process_request_thread" not in t.name  # the emulator's connection handlers
        }

    klaviyo.add_variants(["A"], inventory=0)
    before = own_threads()
    for n in range(2):
        records = [
            event(f"e-{n}"),
            update(f"u-{n}", "bob@example.com", as_of=T1, properties={"n": n}),
            restock(f"r-{n}", "A", 1),
        ]
        assert run_target(config, singer(records)).error is None
    left = [t.name for t in threading.enumerate() if (t.ident or 0) in own_threads() - before]
    assert left == []
