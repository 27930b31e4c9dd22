"""A ledger that cannot be migrated at start-up: the run ends ``crashed``, visibly.

The failure comes before the run has a row in the ledger, so without care it would show only in
the log: ``summary`` would read the last real run, and no alert would go out while every later
run fails the same way. Here a ledger at 0.1.0's schema lacks a table revision 0002 alters.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from target_klaviyo.ledger import alembic_config
from tests.support.target import Hook, event, run_cli, singer

pytestmark = pytest.mark.slow  # the target's executable (a few seconds)


@pytest.fixture
def broken_ledger(tmp_path: Path) -> Path:
    """A ledger at revision 0001 (0.1.0's schema) missing ``profile_lists``: 0002 fails on it."""
    path = tmp_path / "ledger" / "klaviyo-ledger.sqlite"
    path.parent.mkdir()
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0001")
            conn.execute(sa.text("DROP TABLE profile_lists"))
    finally:
        engine.dispose()
    return path


def test_a_failed_migration_ends_crashed_recorded_and_alerted(
    klaviyo: Any, config: dict[str, Any], hook: Hook, broken_ledger: Path, tmp_path: Path
) -> None:
    settings = {**config, "ledger_url": f"sqlite:///{broken_ledger}", "alert_webhook_url": hook.url}
    result = run_cli(settings, singer([event("e-1", "ana@example.com")]), tmp_path)

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].endswith("run outcome: crashed"), result.stderr[-3000:]
    assert "OperationalError: no such table: profile_lists" in result.stderr
    assert "Traceback" not in result.stderr
    assert "ana@example.com" not in result.stderr
    with contextlib.closing(sqlite3.connect(broken_ledger)) as db:
        [(finished,)] = db.execute(
            "SELECT finished_at FROM runs WHERE status = 'crashed'"
        ).fetchall()
    assert finished is not None
    [alert] = hook.posts
    assert "run crashed" in alert["text"]
    assert "no such table: profile_lists" in alert["text"]
    assert klaviyo.posts() == []
