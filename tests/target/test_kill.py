"""The real ``target-klaviyo`` killed mid-run (SIGKILL), then rerun on the same input; on a SQLite
and on a PostgreSQL ledger."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from emulators.klaviyo import KlaviyoEmulator
from tests.support.target import (
    EVENTS,
    VARIANTS,
    hours_ago,
    inventory_of,
    ledger_rows,
    run_cli,
    scaled_limits,
    singer,
    state,
)

TIME_SCALE = 10
EVENT_COUNT = 30_000
SKUS = [f"K{i:03d}" for i in range(300)]
RESTOCKS = 6_000


def build_input() -> tuple[str, dict[str, int]]:
    rng = random.Random(11)
    records: list[Any] = [
        (
            EVENTS,
            {
                "unique_id": f"ev-{i}",
                "metric": "Return Started" if i % 2 else "Refund Issued",
                "profile": {"email": f"k{i % 3_000}@example.com"},
                "time": hours_ago(100 + i % 500),
                "properties": {"n": i},
            },
        )
        for i in range(EVENT_COUNT)
    ]
    inventory = dict.fromkeys(SKUS, 50)
    for r in range(RESTOCKS):
        sku = SKUS[r % len(SKUS)]
        delta = rng.choice([1, 2, 5])
        inventory[sku] += delta
        position = (r + 1) * len(records) // (RESTOCKS + 1)
        records.insert(
            position,
            (
                VARIANTS,
                {
                    "restock_key": f"rk-{r}",
                    "variant_id": f"$custom:::$default:::{sku}",
                    "inventory_delta": delta,
                    "time": hours_ago(3),
                },
            ),
        )
    return singer([*records, state({"bookmark": "end"})]), inventory


def count(reader: sa.Engine, sql: str) -> int:
    """A count from the ledger while the target writes it (a reader; it may not exist yet)."""
    try:
        with reader.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):
        return 0  # no file or tables yet, or locked for a moment


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, sa.Engine]]:
    """The ledger's URL (a SQLite file or a throwaway PostgreSQL database) and a reader of it.

    The SQLite reader opens the file read-only, so that polling never creates it before the target.
    """
    if request.param == "sqlite":
        path = tmp_path / "ledger.sqlite"
        url = f"sqlite:///{path}"
        reader = sa.create_engine(f"sqlite:///file:{path}?mode=ro&uri=true", poolclass=sa.NullPool)
    else:
        url = str(request.getfixturevalue("postgres_db"))
        reader = sa.create_engine(url)
    try:
        yield url, reader
    finally:
        reader.dispose()


@pytest.mark.slow
@pytest.mark.parametrize(
    "in_flight",
    [
        # Killed between recording the restocks as pending and knowing Klaviyo's job for them.
        "status='pending'",
        # Killed while waiting for Klaviyo's job (its id recorded) to complete.
        "status='pending' AND job_id IS NOT NULL",
    ],
    ids=["before-job-id", "waiting-for-job"],
)
def test_killed_mid_run_then_rerun_delivers_everything_once(
    tmp_path, executable, in_flight, ledger
):
    ledger_url, reader = ledger
    text, expected_inventory = build_input()
    input_file = tmp_path / "input.jsonl"
    input_file.write_text(text)
    with KlaviyoEmulator(
        api_key="pk_kill",
        rate_limits=True,
        time_scale=TIME_SCALE,
        job_delay=3.0,  # 0.3 s once scaled: long enough to be killed while waiting for one
        keep_event_properties=False,
    ) as klaviyo:
        klaviyo.add_variants(SKUS, inventory=50)
        config = {
            "api_key": "pk_kill",
            "api_url": klaviyo.url,
            "ledger_url": ledger_url,
            "events_per_request": 200,
            "batch_size_rows": 2_000,
            "rate_limits": scaled_limits(TIME_SCALE),
            "job_poll_seconds": 0.02,
        }
        config_file = tmp_path / "config.json"
        config_file.write_text(json.dumps(config))
        stderr_file = tmp_path / "killed.stderr"
        with input_file.open() as stdin, stderr_file.open("w") as stderr:
            process = subprocess.Popen(
                [str(executable), "--config", str(config_file)],
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
            try:
                # Kill it once some events were accepted and a restock is in flight.
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and process.poll() is None:
                    accepted = count(
                        reader, "SELECT count(*) FROM deliveries WHERE outcome='accepted'"
                    )
                    pending = count(reader, f"SELECT count(*) FROM restocks WHERE {in_flight}")
                    if accepted >= 2_000 and pending:
                        break
                    time.sleep(0.005)
                assert process.poll() is None, "the run ended before it could be killed"
                os.kill(process.pid, signal.SIGKILL)
                stdout, _ = process.communicate(timeout=30)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.communicate(timeout=30)
        assert process.returncode == -signal.SIGKILL
        assert stdout == "", "killed before the end: no STATE"
        events_before = klaviyo.stats()["events"]
        assert 0 < events_before < EVENT_COUNT
        in_flight_at_kill = count(reader, f"SELECT count(*) FROM restocks WHERE {in_flight}")
        assert in_flight_at_kill, "the kill left restocks in flight, as intended"

        # Meltano saw no new state: it runs the same input again.
        result = run_cli(config, text, tmp_path, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        assert json.loads(result.stdout) == {"bookmark": "end"}
        events = klaviyo.events()
        inventory = {sku: inventory_of(klaviyo, f"$custom:::$default:::{sku}") for sku in SKUS}
        stats = klaviyo.stats()

    held_count = Counter(e["unique_id"] for e in events)
    assert len(held_count) == EVENT_COUNT
    assert held_count.most_common(1)[0][1] == 1
    assert stats["events"] == EVENT_COUNT
    assert inventory == expected_inventory, "every restock applied exactly once"
    statuses = Counter(r["status"] for r in ledger_rows(ledger_url, "restocks"))
    assert statuses == {"applied": RESTOCKS}
    accepted_rows = Counter(
        r["record_key"] for r in ledger_rows(ledger_url, stream=EVENTS, outcome="accepted")
    )
    assert len(accepted_rows) == EVENT_COUNT
    assert accepted_rows.most_common(1)[0][1] == 1
    runs = [
        r["status"] for r in sorted(ledger_rows(ledger_url, "runs"), key=lambda r: r["started_at"])
    ]
    assert runs == ["interrupted", "succeeded"], "the killed run is marked by the next one"
