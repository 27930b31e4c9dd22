"""A ledger that cannot be migrated at start-up: the run ends ``crashed``, visibly.

The failure comes before the run has a row in the ledger, so without care it would show only in
the log: ``summary`` would read the last real run, and no alert would go out while every later
run fails the same way. Here the 0.1.0 ledger lacks a table revision 0002 alters.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import make_ledger_0_1_0 as fixture
from tests.support.target import event, run_cli, singer
from tests.target.test_operations import Hook

pytestmark = pytest.mark.slow  # the target's executable (a few seconds)


@pytest.fixture
def hook() -> Iterator[Hook]:
    receiver = Hook()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()
    receiver.thread.join()


@pytest.fixture
def broken_ledger(tmp_path: Path) -> Path:
    """A 0.1.0 ledger missing ``profile_lists``: upgrading it to 0002 fails."""
    path = tmp_path / "ledger" / "klaviyo-ledger.sqlite"
    path.parent.mkdir()
    shutil.copy(fixture.FIXTURE, path)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("DROP TABLE profile_lists")
        db.commit()
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
