"""The receiver's state db keeps its own schema version (``PRAGMA user_version``).

``fixtures/swap-webhooks-0.1.0.sqlite`` was written by the 0.1.0 release's store (commit
2f1ae9f): deliveries handled, waiting and claimed by a run cut short, runs of every outcome it
knew (``succeeded``, ``locked_out``, ``failed``, one still ``running``), and counters.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from swap_webhooks.store import SCHEMA_VERSION, DeliveryStore, StoreVersionError

FIXTURE = Path(__file__).with_name("fixtures") / "swap-webhooks-0.1.0.sqlite"
NONCES = [f"nonce-{i:04d}" for i in range(1, 7)]


@pytest.fixture
def old_db(tmp_path: Path) -> Path:
    path = tmp_path / "swap-webhooks.sqlite"
    shutil.copyfile(FIXTURE, path)
    return path


def test_a_state_db_of_0_1_0_is_migrated_with_its_deliveries_intact(old_db: Path) -> None:
    with sqlite3.connect(old_db) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (0,)
        before = db.execute(
            "SELECT id, nonce, event, return_id, order_id, received_at, expires_at, status,"
            " run_id, attempts, handled_at FROM deliveries ORDER BY id"
        ).fetchall()

    with DeliveryStore(old_db) as store:
        assert store.schema_version() == SCHEMA_VERSION == 3
        runs = {run["id"]: run for run in store.runs()}
        counters = store.counters()
        deliveries = store.deliveries()

    assert [d["nonce"] for d in deliveries] == NONCES
    with sqlite3.connect(old_db) as db:
        after = db.execute(
            "SELECT id, nonce, event, return_id, order_id, received_at, expires_at, status,"
            " run_id, attempts, handled_at FROM deliveries ORDER BY id"
        ).fetchall()
    assert after == before
    # Outcomes take the pipeline's names; 0.1.0's unexplained failures stay `failed`.
    assert [runs[i]["outcome"] for i in sorted(runs)] == [
        "succeeded",
        "already_running",
        "failed",
        "succeeded",
        "running",
    ]
    assert all(run["refusals"] == 0 and run["output_tail"] is None for run in runs.values())
    assert all(run["dagster_run_id"] is None for run in runs.values())
    assert counters["accepted"] == 6
    assert counters["redelivered"] == 1
    assert counters["coalesced"] == 2
    assert counters["runs.already_running"] == 1
    assert counters["runs.failed"] == 1
    assert counters["refused.expired"] == 1


def test_a_migrated_db_serves_on_the_run_cut_short_goes_back_to_waiting(old_db: Path) -> None:
    with DeliveryStore(old_db) as store:
        assert store.recover() == 1
        assert store.queue()["pending"] == 2
        claim = store.claim()
        assert claim is not None
        assert claim.deliveries == 2
    with DeliveryStore(old_db) as store:  # opening again migrates nothing
        assert store.schema_version() == SCHEMA_VERSION
        statuses = {d["nonce"]: d["status"] for d in store.deliveries()}
    assert statuses == {
        **dict.fromkeys(NONCES[:4], "handled"),
        **dict.fromkeys(NONCES[4:], "claimed"),
    }


def test_a_new_db_starts_at_the_current_version(tmp_path: Path) -> None:
    with DeliveryStore(tmp_path / "new.sqlite") as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.runs() == []


def test_a_db_from_a_newer_release_is_refused_untouched(old_db: Path) -> None:
    with sqlite3.connect(old_db) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreVersionError, match="newer than this release"):
        DeliveryStore(old_db)
    with sqlite3.connect(old_db) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 1,)
