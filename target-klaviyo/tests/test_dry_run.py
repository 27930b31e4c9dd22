"""dry_run: the exact request bodies go to a private file; nothing is sent, emitted or recorded."""

from __future__ import annotations

import hashlib
import json
import stat
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulators.klaviyo import KlaviyoEmulator
from tests.support.target import (
    JSONAPI,
    KEY,
    REVISION,
    RecordingKlaviyo,
    event,
    hours_ago,
    inventory_of,
    ledger_execute,
    ledger_rows,
    restock,
    run_target,
    singer,
    state,
    update,
)

pytestmark = pytest.mark.slow  # each test takes over half a second (not in the fast tier)

T1 = "2026-02-01T10:00:00+00:00"


def mixed_input() -> str:
    records = [event(f"e-{i}", f"c{i % 6}@example.com") for i in range(40)]
    records += [
        event("recent", "c1@example.com", time=hours_ago(1)),
        update(
            "u-ride",
            "c2@example.com",
            as_of=T1,
            properties={"ride": True},
            append={"swap_open_returns": ["R-1"]},
        ),
        update("u-import", "solo@example.com", as_of=T1, properties={"solo": True}),
        restock("r-1", "A", 3),
        restock("r-2", "B", -1),
        state({"bookmark": 1}),
    ]
    return singer(records)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_dry_run_writes_the_bodies_privately_and_sends_nothing(klaviyo, config, ledger_path):
    klaviyo.add_variants(["A", "B"], inventory=5)
    # A ledger from an earlier real run, with a set-aside payload older than the retention.
    assert run_target(config, singer([event("old", "not-an-email")])).error is None
    long_ago = (datetime.now(timezone.utc) - timedelta(days=90)).strftime("%Y-%m-%d %H:%M:%S")
    ledger_execute(ledger_path, "UPDATE deliveries SET recorded_at = ?", long_ago)
    before = digest(ledger_path)
    klaviyo.seen.clear()
    path = config["dry_run_path"]

    run = run_target({**config, "dry_run": True}, mixed_input())
    assert run.error is None

    assert run.states == [], "a dry run must not move the source's bookmark"
    assert [s.method for s in klaviyo.requests()] == ["GET"], "only the variant read"
    assert klaviyo.stats()["events"] == 0
    assert inventory_of(klaviyo, "$custom:::$default:::A") == 5
    assert digest(ledger_path) == before, "a dry run writes nothing to the ledger"
    assert len(ledger_rows(ledger_path, "runs")) == 1
    file = Path(path)
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    lines = [json.loads(line) for line in file.read_text().splitlines()]
    assert [(line["method"], line["path"]) for line in lines] == [
        ("POST", "/api/event-bulk-create-jobs"),
        ("POST", "/api/profile-bulk-import-jobs"),
        ("POST", "/api/catalog-variant-bulk-update-jobs"),
    ]


def test_dry_run_bodies_are_exactly_what_a_real_run_sends(tmp_path):
    """Replaying the dry run's bodies gives Klaviyo the same data as the real run does."""
    dry_path = tmp_path / "dry.jsonl"
    text = mixed_input()
    with (
        RecordingKlaviyo(api_key=KEY, rate_limits=False, job_delay=0.02) as dry,
        RecordingKlaviyo(api_key=KEY, rate_limits=False, job_delay=0.02) as real,
    ):
        for emulator in (dry, real):
            emulator.add_variants(["A", "B"], inventory=5)
        settings = {"api_key": KEY, "revision": REVISION, "job_poll_seconds": 0.02}
        dry_run = run_target(
            {
                **settings,
                "api_url": dry.url,
                "ledger_url": f"sqlite:///{tmp_path / 'a.sqlite'}",
                "dry_run": True,
                "dry_run_path": str(dry_path),
            },
            text,
        )
        assert dry_run.error is None
        real_run = run_target(
            {**settings, "api_url": real.url, "ledger_url": f"sqlite:///{tmp_path / 'b.sqlite'}"},
            text,
        )
        assert real_run.error is None

        lines = [json.loads(line) for line in dry_path.read_text().splitlines()]
        sent = [s for s in real.requests() if s.method == "POST"]
        assert [(x["method"], x["path"]) for x in lines] == [(s.method, s.path) for s in sent]
        for line, request in zip(lines, sent, strict=True):
            assert line["body"] == request.json()

        # And the bodies are valid requests: the dry emulator, fed them, ends like the real one.
        headers = {
            "Authorization": f"Klaviyo-API-Key {KEY}",
            "revision": REVISION,
            "Content-Type": JSONAPI,
        }
        with httpx.Client(base_url=dry.url, headers=headers, timeout=10) as http:
            for line in lines:
                response = http.post(line["path"], content=json.dumps(line["body"]))
                assert response.status_code == 202, response.text
        expected = _state(real)
        assert _settled_state(dry, expected) == expected


def _settled_state(emulator: KlaviyoEmulator, expected: Any) -> Any:
    """The emulator's data once its jobs ran (they run asynchronously, after job_delay)."""
    deadline = time.monotonic() + 10
    while (found := _state(emulator)) != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def _state(emulator: KlaviyoEmulator) -> Any:
    events = sorted(
        (e["email"], e["metric"], e["unique_id"], e["backfill"]) for e in emulator.events()
    )
    profiles = sorted(
        (p["email"], json.dumps(p["properties"], sort_keys=True)) for p in emulator.profiles()
    )
    variants = sorted((v["id"], v["inventory_quantity"]) for v in emulator.variants())
    return events, profiles, variants
