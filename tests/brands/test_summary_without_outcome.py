"""``swap-brands summary`` shows a run that ended without an outcome as a failure.

A run that failed before target-klaviyo started (Meltano could not write its job row) or whose
target Meltano killed leaves no row in the ledger: the summary used to show the run before it
(``succeeded``) as the brand's last outcome. Meltano's job rows tell: a failed job newer than the
ledger's last run is ``no_outcome``.
"""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from swap_brands.config import Brand, load_brands
from swap_brands.ledgers import ledger_url, summarize
from tests.support.ledger import migrated_ledger

BRANDS = """\
version: 1
defaults:
  environment: sandbox
  ledger: {kind: sqlite, folder: ledgers}
brands:
- name: acme
  store_id: store_acme
  swap_api_key_env: ACME_SWAP_KEY
  klaviyo_api_key_env: ACME_KLAVIYO_KEY
"""


@pytest.fixture
def acme(tmp_path: Path) -> Brand:
    """A project (meltano.yml, a system db with Meltano's ``runs`` table) and its one brand."""
    (tmp_path / "meltano.yml").write_text("version: 1\n")
    (tmp_path / ".meltano").mkdir()
    with contextlib.closing(sqlite3.connect(tmp_path / ".meltano" / "meltano.db")) as db:
        db.execute(
            "CREATE TABLE runs (job_name TEXT, state TEXT, started_at DATETIME, ended_at DATETIME)"
        )
        db.commit()
    (tmp_path / "brands.yml").write_text(BRANDS)
    [brand] = load_brands(tmp_path / "brands.yml").brands
    return brand


def ledger_run(brand: Brand, root: Path, outcome: str) -> None:
    (root / "ledgers" / brand.name).mkdir(parents=True, exist_ok=True)
    ledger = migrated_ledger(ledger_url(brand, root, {}))
    try:
        ledger.start_run()
        ledger.finish_run(outcome, {})
    finally:
        ledger.close()


def meltano_job(brand: Brand, root: Path, state: str, minutes_from_now: float) -> None:
    """A job row as Meltano writes it (naive UTC times)."""
    started = datetime.now(timezone.utc) + timedelta(minutes=minutes_from_now)
    naive = started.replace(tzinfo=None)
    with contextlib.closing(sqlite3.connect(root / ".meltano" / "meltano.db")) as db:
        db.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?)",
            (brand.state_id, state, str(naive), str(naive + timedelta(seconds=9))),
        )
        db.commit()


def test_a_failed_job_after_the_ledgers_last_run_is_no_outcome(acme: Brand, tmp_path: Path) -> None:
    meltano_job(acme, tmp_path, "SUCCESS", -1)
    ledger_run(acme, tmp_path, "succeeded")
    meltano_job(acme, tmp_path, "FAIL", 1)  # "database is locked": the target never started
    found = summarize(acme, tmp_path, {})
    assert found.last_outcome == "no_outcome"
    assert found.last_error is not None
    assert "before target-klaviyo recorded an outcome" in found.last_error
    assert found.lag_minutes is not None  # since the last success, which the ledger knows


def test_a_failed_first_run_without_a_ledger_is_no_outcome(acme: Brand, tmp_path: Path) -> None:
    meltano_job(acme, tmp_path, "FAIL", 0)
    found = summarize(acme, tmp_path, {})
    assert (found.last_outcome, found.problem) == ("no_outcome", None)


@pytest.mark.parametrize("state", ["FAIL", "SUCCESS"])
def test_a_job_the_ledger_recorded_keeps_the_ledgers_outcome(
    acme: Brand, tmp_path: Path, state: str
) -> None:
    meltano_job(acme, tmp_path, state, -1)  # started before the target's run: that run's job
    ledger_run(acme, tmp_path, "auth_failed")
    assert summarize(acme, tmp_path, {}).last_outcome == "auth_failed"


def test_no_system_database_is_not_created_by_reading(tmp_path: Path) -> None:
    (tmp_path / "meltano.yml").write_text("version: 1\n")
    (tmp_path / "brands.yml").write_text(BRANDS)
    [brand] = load_brands(tmp_path / "brands.yml").brands
    assert summarize(brand, tmp_path, {}).problem == "no run yet (no ledger)"
    assert not (tmp_path / ".meltano" / "meltano.db").exists()
