"""100,000 events with about one request in ten failing in every way, rerun until done.

The input is re-fed as Meltano would: from the last STATE the target emitted (all of it when a
run emitted none). In the end Klaviyo holds every event exactly once, every restock is applied
once, every profile ends as its updates say, and no bookmark ever moved past a record that was
not delivered or recorded. It runs on a SQLite and on a PostgreSQL ledger.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from emulators.klaviyo import KlaviyoEmulator
from target_klaviyo.client import KlaviyoUnavailable
from tests.support.target import (
    EVENTS,
    VARIANTS,
    inventory_of,
    iso,
    ledger_rows,
    now,
    properties_of,
    run_target,
    scaled_limits,
    singer,
    state,
)

EVENT_COUNT = 100_000
CUSTOMERS = 5_000
SEGMENTS = 20  # a STATE message after each
UPDATED_CUSTOMERS = 100
SKUS = [f"SKU-{i:03d}" for i in range(50)]
RESTOCKS = 200
MAX_RUNS = 25
TIME_SCALE = 20
METRICS = ["Return Started", "Return Received", "Refund Issued", "Return Closed"]


def build_input() -> tuple[list[list[Any]], dict[str, Any]]:
    """Segments of records (events, profile updates, restocks), and what Klaviyo must end with."""
    rng = random.Random(7)
    start = now() - timedelta(days=60)
    records: list[Any] = []
    for i in range(EVENT_COUNT):
        email = f"c{i % CUSTOMERS}@example.com"
        # Two thirds history (backfilled), one third within the last day.
        moment = start + timedelta(seconds=i * 50) if i % 3 else now() - timedelta(hours=2)
        records.append(
            (
                EVENTS,
                {
                    "unique_id": f"ev-{i}",
                    "metric": METRICS[i % len(METRICS)],
                    "profile": {"email": email},
                    "time": iso(moment),
                    "properties": {"return_id": f"ret-{i // 4}", "n": i},
                    "value": (i % 90) + 0.5,
                    "value_currency": "EUR",
                    "source_id": f"ret-{i // 4}",
                },
            )
        )
    expected_profiles: dict[str, dict[str, Any]] = {}
    for c in range(UPDATED_CUSTOMERS):
        email = f"c{c * 7}@example.com"  # some of these customers have events, all of them do
        first, second = f"RMA-{c}-A", f"RMA-{c}-B"
        stamps = [iso(start + timedelta(hours=h, minutes=c)) for h in (1, 2, 3)]
        updates = [
            {
                "update_id": f"up-{c}-1",
                "email": email,
                "as_of": stamps[0],
                "append": {"swap_open_returns": [first]},
                "properties": {"status": "opened-A"},
            },
            {
                "update_id": f"up-{c}-2",
                "email": email,
                "as_of": stamps[1],
                "append": {"swap_open_returns": [second]},
                "properties": {"status": "opened-B"},
            },
            {
                "update_id": f"up-{c}-3",
                "email": email,
                "as_of": stamps[2],
                "unappend": {"swap_open_returns": [first]},
                "properties": {"status": "closed-A"},
            },
        ]
        for offset, update in zip((10_000, 40_000, 80_000), updates, strict=True):
            records.insert(offset + c * 13, ("klaviyo_profile_updates", update))
        expected_profiles[email] = {"swap_open_returns": [second], "status": "closed-A"}
    expected_inventory = dict.fromkeys(SKUS, 100)
    for r in range(RESTOCKS):
        sku = SKUS[rng.randrange(len(SKUS))]
        delta = rng.choice([1, 2, 3, -1])
        expected_inventory[sku] += delta
        restock = {
            "restock_key": f"rs-{r}",
            "variant_id": f"$custom:::$default:::{sku}",
            "sku": sku,
            "inventory_delta": delta,
            "time": iso(start),
        }
        records.insert(rng.randrange(len(records)), (VARIANTS, restock))
    size = -(-len(records) // SEGMENTS)
    segments = [records[k : k + size] for k in range(0, len(records), size)]
    expected = {"profiles": expected_profiles, "inventory": expected_inventory}
    return segments, expected


def feed(segments: list[list[Any]], start: int) -> str:
    items: list[Any] = []
    for k in range(start, len(segments)):
        items.extend(segments[k])
        items.append(state({"bookmark": k + 1}))
    return singer(items)


def add_faults(klaviyo: KlaviyoEmulator) -> None:
    # Each about 2.5% of requests: about one request in ten fails, every way it can.
    share = 0.025
    klaviyo.faults.add(kind="status", status=429, retry_after=1, probability=share, count=0)
    klaviyo.faults.add(kind="status", status=503, probability=share / 2, count=0)
    klaviyo.faults.add(kind="status", status=500, probability=share / 2, count=0)
    klaviyo.faults.add(kind="slow", delay=1.5, probability=share, count=0)
    klaviyo.faults.add(kind="drop", probability=share, count=0)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The ledger's URL: a SQLite file, or a throwaway PostgreSQL database (issue 15)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    return str(request.getfixturevalue("postgres_db"))


@pytest.mark.slow
def test_100k_events_under_faults_end_delivered_exactly_once(ledger_url):
    segments, expected = build_input()
    # Klaviyo's rate limits, enforced 20 times faster than real time on both sides.
    with KlaviyoEmulator(
        api_key="pk_faults",
        rate_limits=True,
        time_scale=TIME_SCALE,
        job_delay=0.4,  # 0.02 s once scaled
        keep_event_properties=False,
    ) as klaviyo:
        klaviyo.add_variants(SKUS, inventory=100)
        add_faults(klaviyo)
        config = {
            "api_key": "pk_faults",
            "api_url": klaviyo.url,
            "ledger_url": ledger_url,
            "request_timeout": 1,
            "max_retries": 1,  # low, so that some runs do fail and are rerun
            "events_per_request": 500,
            "batch_size_rows": 20_000,
            "job_poll_seconds": 0.02,
            "max_set_aside_ratio": 1,
            "rate_limits": scaled_limits(TIME_SCALE),
        }
        bookmark, runs, failed_runs = 0, 0, 0
        while bookmark < len(segments):
            runs += 1
            assert runs <= MAX_RUNS, f"still not done after {MAX_RUNS} runs"
            started = time.monotonic()
            run = run_target(config, feed(segments, bookmark), max_record_age_minutes=0.02)
            print(f"run {runs} from {bookmark}: {time.monotonic() - started:.1f} s, {run.error}")
            if run.error is not None:
                assert isinstance(run.error, KlaviyoUnavailable), repr(run.error)
                failed_runs += 1
            else:
                assert run.states, "a successful run emits the last bookmark"
            if run.states:
                emitted = run.states[-1]["bookmark"]
                assert emitted > bookmark, "bookmarks only move forward"
                # Honest: every event before the bookmark is in Klaviyo, right now.
                held = {e["unique_id"] for e in klaviyo.events()}
                before = [r for seg in segments[:emitted] for s, r in seg if s == EVENTS]
                missing = [r["unique_id"] for r in before if r["unique_id"] not in held]
                assert missing == [], f"bookmark {emitted} passed undelivered events"
                bookmark = emitted
            assert run.error is not None or bookmark == len(segments)
        events = klaviyo.events()
        stats = klaviyo.stats()
        profiles = {email: properties_of(klaviyo, email) for email in expected["profiles"]}
        inventory = {sku: inventory_of(klaviyo, f"$custom:::$default:::{sku}") for sku in SKUS}

    # The faults did happen, and at the rate asked.
    failures = sum(stats["responses"].get(code, 0) for code in ("0", "429", "500", "503"))
    total = sum(stats["responses"].values())
    assert 0.05 < failures / total < 0.2, stats["responses"]

    # Every event exactly once, with what it was sent with.
    held_count = Counter(e["unique_id"] for e in events)
    assert len(held_count) == EVENT_COUNT
    assert held_count.most_common(1)[0][1] == 1
    assert stats["events"] == EVENT_COUNT
    backfilled = sum(1 for e in events if e["backfill"])
    assert backfilled == sum(1 for i in range(EVENT_COUNT) if i % 3)

    # Every restock applied once, and recorded as applied.
    assert inventory == expected["inventory"]
    restock_rows = ledger_rows(ledger_url, "restocks")
    assert Counter(r["status"] for r in restock_rows) == {"applied": RESTOCKS}

    # Every profile ends as its updates say: open returns, newest properties.
    for email, want in expected["profiles"].items():
        properties = profiles[email]
        assert properties["swap_open_returns"] == want["swap_open_returns"], email
        assert properties["status"] == want["status"], email

    # The ledger accepted each event once (reruns deduplicated what was already in).
    rows = ledger_rows(ledger_url, stream=EVENTS, outcome="accepted")
    accepted = Counter(r["record_key"] for r in rows)
    assert len(accepted) == EVENT_COUNT
    assert accepted.most_common(1)[0][1] == 1
    assert ledger_rows(ledger_url, outcome="rejected") == []
    print(f"{runs} runs ({failed_runs} failed), {total} requests, {failures} failures")
