"""Events: bulk requests of at most 1,000 events and 5 MB, grouped by profile, deduplicated,
rejections set aside by Klaviyo's pointers, history backfilled, nothing sent twice."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from emulators.klaviyo.limits import MAX_PAYLOAD_BYTES
from tests.support.target import (
    EVENTS,
    EVENTS_PATH,
    event,
    hours_ago,
    ledger_rows,
    outcomes,
    run_target,
    singer,
)

pytestmark = pytest.mark.slow  # each test takes over half a second (not in the fast tier)


def entries_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = body["data"]["attributes"]["events-bulk-create"]["data"]
    return entries


def emails_and_counts(body: dict) -> list[tuple[str, int]]:
    return [
        (
            e["attributes"]["profile"]["data"]["attributes"]["email"],
            len(e["attributes"]["events"]["data"]),
        )
        for e in entries_of(body)
    ]


def test_events_go_in_requests_of_at_most_1000_grouped_by_profile(klaviyo, config, ledger_path):
    # 2,500 events of 10 customers, interleaved as a tap would emit them.
    records = [event(f"e-{i}", f"c{i % 10}@example.com") for i in range(2500)]
    run = run_target(config, singer(records))
    assert run.error is None

    posts = klaviyo.event_posts()
    sizes = sorted(sum(n for _, n in emails_and_counts(p.json())) for p in posts)
    assert sizes == [500, 1000, 1000]
    for post in posts:
        counts = emails_and_counts(post.json())
        assert sum(n for _, n in counts) <= 1000
        emails = [email for email, _ in counts]
        assert len(emails) == len(set(emails)), "one entry per profile in a request"
    assert sum(n for p in posts for _, n in emails_and_counts(p.json())) == 2500
    stored = Counter(e["unique_id"] for e in klaviyo.events())
    assert len(stored) == 2500
    assert set(stored.values()) == {1}
    assert Counter(outcomes(ledger_path, EVENTS).values()) == {"accepted": 2500}
    assert run.summary["accepted_by_metric"] == {"Return Started": 2500}


def test_events_per_request_setting_and_one_profile_over_a_request(klaviyo, config):
    # One customer with 250 events, another with 3: 100 per request splits the first one.
    records = [event(f"a-{i}", "ana@example.com") for i in range(250)]
    records += [event(f"b-{i}", "bob@example.com") for i in range(3)]
    run = run_target({**config, "events_per_request": 100}, singer(records))
    assert run.error is None
    sizes = [sum(n for _, n in emails_and_counts(p.json())) for p in klaviyo.event_posts()]
    assert sorted(sizes) == [53, 100, 100]
    assert len(klaviyo.events()) == 253


def test_requests_stay_under_5_mb(klaviyo, config):
    # 150 events of 60 KB each: about 9 MB, which must go in two requests or more. (Many
    # 1 KB strings rather than one 60 KB string: the emulator's long-string scan is quadratic in
    # the length of a string, and would time the requests out.)
    fields = {f"line_{n}": f"{n:04d}" + "x" * 1000 for n in range(60)}
    records = [
        event(f"e-{i}", f"c{i % 4}@example.com", properties={**fields, "i": i}) for i in range(150)
    ]
    run = run_target(config, singer(records))
    assert run.error is None
    posts = klaviyo.requests("POST", EVENTS_PATH)
    assert len(posts) >= 2
    assert all(len(p.body) <= MAX_PAYLOAD_BYTES for p in posts)
    assert {p.status for p in posts} == {202}, "no 413: the target sizes its requests itself"
    assert len(klaviyo.events()) == 150


def test_repeated_unique_id_for_one_profile_and_metric_is_removed_before_sending(
    klaviyo, config, ledger_path
):
    records = [
        event("e-1", "ana@example.com"),
        event("e-1", "ANA@Example.com"),  # the same profile: Klaviyo matches emails in any case
        event("e-1", "ana@example.com", metric="Return Completed"),  # another metric: kept
        event("e-1", "bob@example.com"),  # another profile: kept
        event("e-2", "ana@example.com"),
    ]
    run = run_target(config, singer(records))
    assert run.error is None
    assert klaviyo.stats()["payloads_rejected"] == 0
    assert len(klaviyo.event_posts()) == 1
    stored = sorted((e["email"], e["metric"], e["unique_id"]) for e in klaviyo.events())
    assert stored == [
        ("ana@example.com", "Return Completed", "e-1"),
        ("ana@example.com", "Return Started", "e-1"),
        ("ana@example.com", "Return Started", "e-2"),
        ("bob@example.com", "Return Started", "e-1"),
    ]
    deduplicated = ledger_rows(ledger_path, outcome="deduplicated")
    assert [(r["record_key"], r["reason"]) for r in deduplicated] == [("e-1", "repeated_in_batch")]
    assert run.summary["deduplicated"] == {EVENTS: 1}


def test_a_bad_email_in_one_profile_sets_aside_its_events_and_sends_the_rest(
    klaviyo, config, ledger_path
):
    records = [event(f"e-{i}", f"c{i % 10}@example.com") for i in range(60)]
    records[13] = event("bad-1", "not-an-email", properties={"n": 1})
    records[40] = event("bad-2", "not-an-email", properties={"n": 2})
    run = run_target(config, singer(records))
    assert run.error is None

    rejected = ledger_rows(ledger_path, outcome="rejected")
    assert sorted(r["record_key"] for r in rejected) == ["bad-1", "bad-2"]
    for row in rejected:
        assert row["reason"] == "invalid"
        assert "Invalid email" in row["detail"]
        assert "/profile/data/attributes/email" in row["detail"]
        assert row["payload"] is not None, "a set-aside record keeps what a replay needs"
    stored = sorted(e["unique_id"] for e in klaviyo.events())
    assert stored == sorted(f"e-{i}" for i in range(60) if i not in (13, 40))
    assert [p.status for p in klaviyo.requests("POST", EVENTS_PATH)] == [400, 202]
    assert run.summary["set_aside_by_reason"] == {"invalid": 2}


def test_an_oversized_string_sets_aside_exactly_that_event(klaviyo, config, ledger_path):
    # A property *name* over 100 KB of UTF-8 (within the contract's 102,400 characters): the
    # target does not screen names' bytes, Klaviyo refuses it with a pointer to that event, and
    # only that event is set aside.
    records = [event(f"e-{i}", f"c{i % 5}@example.com") for i in range(30)]
    records[17] = event("huge", "c2@example.com", properties={"\u00e9" * 60_000: 1})
    run = run_target(config, singer(records))
    assert run.error is None

    rejected = ledger_rows(ledger_path, outcome="rejected")
    assert [r["record_key"] for r in rejected] == ["huge"]
    assert rejected[0]["reason"] == "invalid"
    assert "100 KB" in rejected[0]["detail"]
    assert sorted(e["unique_id"] for e in klaviyo.events()) == sorted(
        f"e-{i}" for i in range(30) if i != 17
    )
    # The other events of that same profile were resent and accepted.
    assert {e["unique_id"] for e in klaviyo.events(email="c2@example.com")} == {
        "e-2",
        "e-7",
        "e-12",
        "e-22",
        "e-27",
    }


def test_an_oversized_property_value_is_set_aside_before_sending(klaviyo, config, ledger_path):
    records = [
        event("ok", "ana@example.com"),
        event("long", "ana@example.com", properties={"note": "é" * 60_000}),  # 120 KB of UTF-8
    ]
    run = run_target(config, singer(records))
    assert run.error is None
    assert klaviyo.stats()["payloads_rejected"] == 0
    [row] = ledger_rows(ledger_path, outcome="rejected")
    assert (row["record_key"], row["reason"]) == ("long", "string_too_long")
    assert "properties.note" in row["detail"]
    assert [e["unique_id"] for e in klaviyo.events()] == ["ok"]


def test_history_is_backfilled_and_recent_events_are_not(klaviyo, config):
    records = [
        event("old", time=hours_ago(30)),
        event("older", time=hours_ago(24 * 90)),
        event("recent", time=hours_ago(2)),
        event("just-now", time=hours_ago(0.01)),
    ]
    run = run_target({**config, "backfill_after_hours": 24}, singer(records))
    assert run.error is None
    backfill = {e["unique_id"]: e["backfill"] for e in klaviyo.events()}
    assert backfill == {"old": True, "older": True, "recent": False, "just-now": False}
    stats = klaviyo.stats()
    assert (stats["backfill_events"], stats["flow_triggering_events"]) == (2, 2)


def test_backfill_after_hours_setting_moves_the_line(klaviyo, config):
    records = [event("a", time=hours_ago(3)), event("b", time=hours_ago(1))]
    run = run_target({**config, "backfill_after_hours": 2}, singer(records))
    assert run.error is None
    assert {e["unique_id"]: e["backfill"] for e in klaviyo.events()} == {"a": True, "b": False}


def test_events_accepted_in_an_earlier_run_are_not_sent_again(klaviyo, config, ledger_path):
    first = [event(f"e-{i}", f"c{i % 3}@example.com") for i in range(20)]
    assert run_target(config, singer(first)).error is None
    assert len(klaviyo.event_posts()) == 1

    # The source sends the same events again (its bookmark did not move), plus new ones.
    second = [*first, *(event(f"n-{i}", f"c{i % 3}@example.com") for i in range(5))]
    run = run_target(config, singer(second))
    assert run.error is None

    posts = klaviyo.event_posts()
    assert len(posts) == 2
    resent = [
        e["attributes"]["unique_id"]
        for entry in entries_of(posts[1].json())
        for e in entry["attributes"]["events"]["data"]
    ]
    assert sorted(resent) == sorted(f"n-{i}" for i in range(5))
    assert run.summary["deduplicated"] == {EVENTS: 20}
    reasons = Counter(r["reason"] for r in ledger_rows(ledger_path, outcome="deduplicated"))
    assert reasons == {"accepted_earlier": 20}

    # A third run sends nothing at all, and Klaviyo holds each event once.
    assert run_target(config, singer(second)).error is None
    assert len(klaviyo.event_posts()) == 2
    stored = Counter(e["unique_id"] for e in klaviyo.events())
    assert len(stored) == 25
    assert set(stored.values()) == {1}
    assert klaviyo.stats()["events_deduplicated"] == 0


def test_event_fields_reach_klaviyo_as_sent(klaviyo, config):
    record = event(
        "e-1",
        "ana@example.com",
        time="2026-03-01T10:20:30+00:00",
        properties={"return_id": "r-1", "items": [{"sku": "A", "qty": 2}], "amount": 12.5},
        value=42.75,
        value_currency="EUR",
    )
    assert run_target(config, singer([record])).error is None
    [stored] = klaviyo.events()
    assert stored["time"] == "2026-03-01T10:20:30+00:00"
    assert stored["value"] == 42.75
    assert stored["value_currency"] == "EUR"
    assert stored["properties"] == {
        "return_id": "r-1",
        "items": [{"sku": "A", "qty": 2}],
        "amount": 12.5,
    }


def test_ledger_dedup_is_per_profile_metric_and_unique_id_like_klaviyos(
    klaviyo, config, ledger_path
):
    # Klaviyo keeps one event per (profile, metric, unique_id): the same unique_id for another
    # metric or another profile is another event, in a later run as within one batch.
    assert run_target(config, singer([event("r-1", "ana@example.com")])).error is None
    later = [
        event("r-1", "ana@example.com"),  # the same event: not sent again
        event("r-1", "ana@example.com", metric="Return Completed"),
        event("r-1", "bob@example.com"),
    ]
    run = run_target(config, singer(later))
    assert run.error is None
    stored = sorted((e["email"], e["metric"], e["unique_id"]) for e in klaviyo.events())
    assert stored == [
        ("ana@example.com", "Return Completed", "r-1"),
        ("ana@example.com", "Return Started", "r-1"),
        ("bob@example.com", "Return Started", "r-1"),
    ]
    assert run.summary["deduplicated"] == {EVENTS: 1}
    assert run.summary["accepted_by_metric"] == {"Return Completed": 1, "Return Started": 1}
    assert klaviyo.stats()["events_deduplicated"] == 0
