"""Profile updates: merged per profile in record order, never older over newer, riding on their
profile's event when there is one, otherwise imported in jobs polled to completion."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from emulators.klaviyo import KlaviyoEmulator
from tests.support.target import (
    EVENTS_PATH,
    IMPORTS_PATH,
    PROFILES,
    RecordingKlaviyo,
    event,
    ledger_rows,
    outcomes,
    properties_of,
    run_target,
    singer,
    update,
)

T1 = "2026-02-01T10:00:00+00:00"
T2 = "2026-02-02T10:00:00+00:00"
T3 = "2026-02-03T10:00:00+00:00"


def open_returns(klaviyo: KlaviyoEmulator, email: str) -> Any:
    return properties_of(klaviyo, email).get("swap_open_returns", [])


@pytest.mark.slow
def test_append_then_unappend_of_one_value_leaves_it_absent(klaviyo, config, ledger_path):
    klaviyo.add_profile("ana@example.com", properties={"swap_open_returns": ["R-0"]})
    records = [
        update("u-1", "ana@example.com", as_of=T1, append={"swap_open_returns": ["R-1"]}),
        update("u-2", "ana@example.com", as_of=T2, unappend={"swap_open_returns": ["R-1"]}),
        update("u-3", "bob@example.com", as_of=T1, append={"swap_open_returns": ["R-9"]}),
        update("u-4", "bob@example.com", as_of=T2, unappend={"swap_open_returns": ["R-9"]}),
        update("u-5", "bob@example.com", as_of=T3, append={"swap_open_returns": ["R-9"]}),
    ]
    run = run_target(config, singer(records))
    assert run.error is None
    assert open_returns(klaviyo, "ana@example.com") == ["R-0"]
    assert open_returns(klaviyo, "bob@example.com") == ["R-9"]  # the last operation wins
    # Merged: one import job, one profile entry each.
    [job] = klaviyo.requests("POST", IMPORTS_PATH)
    assert len(job.json()["data"]["attributes"]["profiles"]["data"]) == 2
    assert Counter(outcomes(ledger_path, PROFILES).values()) == {"accepted": 5}


@pytest.mark.slow
def test_two_open_returns_keep_the_profile_listed_until_both_close(klaviyo, config):
    email = "ana@example.com"
    opened = [
        update("r1-open", email, as_of=T1, append={"swap_open_returns": ["R-1"]}),
        update("r2-open", email, as_of=T2, append={"swap_open_returns": ["R-2"]}),
    ]
    assert run_target(config, singer(opened)).error is None
    assert sorted(open_returns(klaviyo, email)) == ["R-1", "R-2"]

    first_closed = update("r1-done", email, as_of=T3, unappend={"swap_open_returns": ["R-1"]})
    assert run_target(config, singer([first_closed])).error is None
    assert open_returns(klaviyo, email) == ["R-2"]

    second_closed = update("r2-done", email, as_of=T3, unappend={"swap_open_returns": ["R-2"]})
    assert run_target(config, singer([second_closed])).error is None
    assert open_returns(klaviyo, email) == []


@pytest.mark.slow
def test_an_older_update_never_overwrites_newer_properties_in_a_batch(klaviyo, config):
    records = [
        update("new", "ana@example.com", as_of=T2, properties={"status": "closed", "n": 2}),
        update("old", "ana@example.com", as_of=T1, properties={"status": "open", "extra": 1}),
        update("b-old", "bob@example.com", as_of=T1, properties={"status": "open"}),
        update("b-new", "bob@example.com", as_of=T2, properties={"status": "closed"}),
    ]
    assert run_target(config, singer(records)).error is None
    ana = properties_of(klaviyo, "ana@example.com")
    assert ana == {"status": "closed", "n": 2}
    assert properties_of(klaviyo, "bob@example.com") == {"status": "closed"}


@pytest.mark.slow
def test_an_older_update_never_overwrites_newer_properties_across_runs(
    klaviyo, config, ledger_path
):
    newer = update("new", "ana@example.com", as_of=T2, properties={"status": "closed"})
    assert run_target(config, singer([newer])).error is None
    older = [
        update("old", "ana@example.com", as_of=T1, properties={"status": "open"}),
        # An older update still applies its list operations: they are not "last value" data.
        update("old-2", "ana@example.com", as_of=T1, append={"swap_open_returns": ["R-1"]}),
    ]
    assert run_target(config, singer(older)).error is None
    properties = properties_of(klaviyo, "ana@example.com")
    assert properties["status"] == "closed"
    assert properties["swap_open_returns"] == ["R-1"]
    [version] = ledger_rows(ledger_path, "profile_versions")
    assert version["as_of"].startswith("2026-02-02 10:00:00")


@pytest.mark.slow
def test_an_older_update_riding_on_an_event_does_not_overwrite_either(klaviyo, config):
    newer = update("new", "ana@example.com", as_of=T2, properties={"status": "closed"})
    assert run_target(config, singer([newer])).error is None
    older = [
        event("e-1", "ana@example.com"),
        update("old", "ana@example.com", as_of=T1, properties={"status": "open"}),
    ]
    assert run_target(config, singer(older)).error is None
    assert properties_of(klaviyo, "ana@example.com")["status"] == "closed"
    assert [e["unique_id"] for e in klaviyo.events()] == ["e-1"]


@pytest.mark.slow
def test_updates_ride_on_their_profiles_event_in_the_same_run(klaviyo, config, ledger_path):
    records = [
        update(
            "u-ana",
            "ana@example.com",
            as_of=T1,
            properties={"swap_last_return_status": "open"},
            append={"swap_open_returns": ["R-1"]},
        ),
        event("e-ana", "ana@example.com"),
        update("u-bob", "bob@example.com", as_of=T1, properties={"status": "x"}),
    ]
    assert run_target(config, singer(records)).error is None

    [post] = klaviyo.event_posts()
    [entry] = post.json()["data"]["attributes"]["events-bulk-create"]["data"]
    profile = entry["attributes"]["profile"]["data"]
    assert profile["attributes"]["properties"] == {"swap_last_return_status": "open"}
    assert profile["meta"]["patch_properties"] == {"append": {"swap_open_returns": ["R-1"]}}
    # Only bob, who has no event, went through a profile import job.
    [job] = klaviyo.requests("POST", IMPORTS_PATH)
    emails = [
        p["attributes"]["email"] for p in job.json()["data"]["attributes"]["profiles"]["data"]
    ]
    assert emails == ["bob@example.com"]
    assert properties_of(klaviyo, "ana@example.com") == {
        "swap_last_return_status": "open",
        "swap_open_returns": ["R-1"],
    }
    reasons = {r["record_key"]: r["reason"] for r in ledger_rows(ledger_path, stream=PROFILES)}
    assert reasons == {"u-ana": "sent_with_event", "u-bob": None}


@pytest.mark.slow
def test_update_of_a_profile_whose_event_is_rejected_goes_by_import(klaviyo, config, ledger_path):
    # The event is refused for a string over Klaviyo's 100 KB of UTF-8 (within the contract's
    # 102,400 characters): the update must still arrive.
    records = [
        update("u-ana", "ana@example.com", as_of=T1, properties={"status": "open"}),
        event("bad", "ana@example.com", properties={"k": "\u00e9" * 60_000}),
    ]
    run = run_target(config, singer(records))
    assert run.error is None
    assert properties_of(klaviyo, "ana@example.com") == {"status": "open"}
    assert outcomes(ledger_path) == {"bad": "rejected", "u-ana": "accepted"}


@pytest.mark.slow
def test_import_jobs_are_polled_and_failed_profiles_set_aside_with_klaviyos_reason(
    tmp_path, ledger_path
):
    # Jobs take a while: the target must poll each one until it completes. 25 bad emails make
    # the import errors span two pages.
    with RecordingKlaviyo(api_key="pk_jobs", rate_limits=False, job_delay=0.6) as klaviyo:
        config = {
            "api_key": "pk_jobs",
            "api_url": klaviyo.url,
            "ledger_url": f"sqlite:///{ledger_path}",
            "max_set_aside_ratio": 1,
        }
        records = [
            update(f"good-{i}", f"good{i}@example.com", as_of=T1, properties={"i": i})
            for i in range(5)
        ]
        records += [
            update(f"bad-{i}", f"bad{i}@@example", as_of=T1, properties={"i": i}) for i in range(25)
        ]
        run = run_target(config, singer(records))
        assert run.error is None
        polls = klaviyo.requests("GET")
        stats = klaviyo.stats()
        good = [properties_of(klaviyo, f"good{i}@example.com") for i in range(5)]

    assert len([p for p in polls if p.path.endswith("/import-errors")]) == 2
    assert len([p for p in polls if not p.path.endswith("/import-errors")]) >= 2
    assert stats["profile_jobs_in_flight"] == 0
    assert good == [{"i": i} for i in range(5)]
    failed = ledger_rows(ledger_path, outcome="failed_profile_import")
    assert sorted(r["record_key"] for r in failed) == sorted(f"bad-{i}" for i in range(25))
    for row in failed:
        assert row["reason"] == "invalid"
        assert "Invalid email" in row["detail"]
        assert row["payload"] is not None
    assert run.summary["set_aside_by_reason"] == {"invalid": 25}
    assert sorted(r["record_key"] for r in ledger_rows(ledger_path, outcome="accepted")) == [
        f"good-{i}" for i in range(5)
    ]


@pytest.mark.slow  # waits on Retry-After, timeouts or back-off: seconds each
def test_at_most_one_import_job_per_profile_in_flight(klaviyo, config):
    # Small jobs, small batches, and the same customers again and again over several runs.
    settings = {**config, "profiles_per_job": 3, "batch_size_rows": 7}
    for run_number in range(3):
        records = [
            update(
                f"u-{run_number}-{i}",
                f"c{i % 8}@example.com",
                as_of=f"2026-02-0{run_number + 1}T10:{i:02d}:00+00:00",
                properties={"run": run_number, "i": i},
                append={"swap_open_returns": [f"R-{run_number}-{i}"]},
            )
            for i in range(40)
        ]
        assert run_target(settings, singer(records)).error is None
    stats = klaviyo.stats()
    assert stats["profile_jobs"] >= 3 * 6
    assert stats["profile_jobs_overlapping"] == 0
    assert properties_of(klaviyo, "c7@example.com")["i"] == 39
    assert len(properties_of(klaviyo, "c0@example.com")["swap_open_returns"]) == 15


@pytest.mark.slow
def test_riding_updates_need_no_import_job(klaviyo, config):
    records = []
    for i in range(30):
        email = f"c{i}@example.com"
        records.append(update(f"u-{i}", email, as_of=T1, properties={"i": i}))
        records.append(event(f"e-{i}", email))
    assert run_target(config, singer(records)).error is None
    assert klaviyo.requests("POST", IMPORTS_PATH) == []
    assert len(klaviyo.requests("POST", EVENTS_PATH)) == 1
    assert all(properties_of(klaviyo, f"c{i}@example.com") == {"i": i} for i in range(30))


@pytest.mark.slow
def test_a_refused_riding_update_does_not_take_its_profiles_events_with_it(
    klaviyo, config, ledger_path
):
    # Klaviyo refuses the update's oversized property (pointing into the profile of the entry
    # that carries it): the update is set aside, and its profile's events are still delivered.
    records = [
        event("e-1", "ana@example.com"),
        event("e-2", "ana@example.com"),
        event("e-3", "bob@example.com"),
        update("u-1", "ana@example.com", as_of=T1, properties={"note": "\u00e9" * 60_000, "ok": 1}),
        update("u-2", "bob@example.com", as_of=T1, properties={"fine": True}),
    ]
    run = run_target(config, singer(records))
    assert run.error is None
    assert sorted(e["unique_id"] for e in klaviyo.events()) == ["e-1", "e-2", "e-3"]
    assert outcomes(ledger_path) == {
        "e-1": "accepted",
        "e-2": "accepted",
        "e-3": "accepted",
        "u-1": "rejected",
        "u-2": "accepted",
    }
    [refused] = ledger_rows(ledger_path, outcome="rejected")
    assert "100 KB" in refused["detail"]
    assert properties_of(klaviyo, "bob@example.com") == {"fine": True}
    assert "note" not in properties_of(klaviyo, "ana@example.com")


@pytest.mark.slow
def test_an_append_of_objects_is_set_aside_and_the_run_goes_on(klaviyo, config, ledger_path):
    # Klaviyo's append and unappend take simple values; an object cannot be appended (and used
    # to stop the whole run).
    records = [
        update("u-1", "ana@example.com", as_of=T1, append={"tags": [{"a": 1}]}),
        update("u-2", "bob@example.com", as_of=T1, append={"n": [1, 2.5, "x"], "flags": [False]}),
        update("u-3", "cid@example.com", as_of=T1, unappend={"tags": [["nested"]]}),
    ]
    run = run_target(config, singer(records))
    assert run.error is None, repr(run.error)
    assert outcomes(ledger_path) == {
        "u-1": "invalid_record",
        "u-2": "accepted",
        "u-3": "invalid_record",
    }
    assert properties_of(klaviyo, "bob@example.com") == {"n": [1, 2.5, "x"], "flags": [False]}
    assert klaviyo.profile("ana@example.com") is None
