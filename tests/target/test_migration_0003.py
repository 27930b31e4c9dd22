"""Revision 0003: a ledger 0002 left with a profile version far in the future is unfrozen.

Before ``as_of`` was bounded, an update dated 9999 made every later update of its profile look
older: accepted in the ledger, its properties dropped. From a ledger at 0002 holding such
versions (and ordinary ones), the upgrade clamps only those beyond a day after it to its own
time, on SQLite and PostgreSQL; then the profile's next update (made after the upgrade) reaches
Klaviyo again.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from target_klaviyo.ledger import Ledger, alembic_config, profile_hash, profile_versions
from tests.support.target import properties_of, run_target, singer, update

FROZEN = "frozen@example.com"
NOW = datetime.now(timezone.utc)
#: profile -> as_of stored by a 0002 ledger (before the bound existed).
STORED = {
    "year-9999": datetime(9999, 12, 31, 23, 0, tzinfo=timezone.utc),
    "two-days-ahead": NOW + timedelta(days=2),
    "an-hour-ahead": NOW + timedelta(hours=1),
    "last-week": NOW - timedelta(days=7),
}


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_0002(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A ledger at revision 0002 whose profile versions hold the times of :data:`STORED`."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    else:
        url = str(request.getfixturevalue("postgres_db"))
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0002")
            rows = [
                {"profile_hash": name, "as_of": when, "updated_at": NOW - timedelta(days=1)}
                for name, when in STORED.items()
            ]
            rows.append(
                {
                    "profile_hash": profile_hash({"email": FROZEN}),
                    "as_of": STORED["year-9999"],
                    "updated_at": NOW,
                }
            )
            conn.execute(profile_versions.insert(), rows)
    finally:
        engine.dispose()
    return url


def versions(url: str) -> dict[str, datetime]:
    """Each profile's stored ``as_of`` (read in the database as text: 9999 reads on any)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = sa.select(profile_versions.c.profile_hash, profile_versions.c.as_of)
            return {key: _utc(when) for key, when in conn.execute(query)}
    finally:
        engine.dispose()


def _utc(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def test_0003_clamps_only_versions_beyond_a_day_ahead(ledger_0002: str) -> None:
    ledger = Ledger(ledger_0002)
    try:
        started = datetime.now(timezone.utc)
        assert ledger.migrate() == "0003"
        ended = datetime.now(timezone.utc)
    finally:
        ledger.close()
    after = versions(ledger_0002)
    for name in ("year-9999", "two-days-ahead"):
        assert started - timedelta(seconds=1) <= after[name] <= ended, name
    for name in ("an-hour-ahead", "last-week"):  # within the bound: as they were
        assert abs(after[name] - STORED[name]) < timedelta(milliseconds=1), name


def test_after_0003_the_frozen_profiles_next_update_is_applied(
    klaviyo: Any, config: dict[str, Any], ledger_0002: str
) -> None:
    # An update made after the upgrade (the first run upgrades): before 0003 it was dropped.
    as_of = (datetime.now(timezone.utc) + timedelta(minutes=1)).isoformat()
    text = singer([update("u-after", FROZEN, as_of=as_of, properties={"swap_tier": "gold"})])
    run = run_target({**config, "ledger_url": ledger_0002}, text)
    assert run.error is None, repr(run.error)
    assert properties_of(klaviyo, FROZEN)["swap_tier"] == "gold"
