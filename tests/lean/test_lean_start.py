"""What a run does not need is not imported when target-klaviyo starts; the ledger's revision
is still read exactly as Alembic reads it.

Each run checks the ledger's schema revision; Alembic (with Mako and its DDL machinery) is
imported only when a ledger must be migrated, and numpy (pulled in by singer_sdk's joblib) not at
all. These tests pin what is imported, and that the shortcut reads what Alembic reads.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from target_klaviyo.ledger import (
    MIGRATIONS,
    VERSION_TABLE,
    Ledger,
    _stored_revision,
    head_revision,
    shipped_revisions,
)

#: Modules a run has no use for: the report, its charts and templates, the segments command,
#: Alembic (an up-to-date ledger), numpy.
NOT_FOR_A_RUN = (
    "numpy",
    "matplotlib",
    "jinja2",
    "alembic",
    "mako",
    "target_klaviyo.report",
    "target_klaviyo.segments",
    "target_klaviyo.deadletters",
)


def imported_after(code: str) -> list[str]:
    """Which of NOT_FOR_A_RUN a fresh interpreter has imported after running ``code``."""
    listed = f"[m for m in {NOT_FOR_A_RUN!r} if m in sys.modules]"
    probe = f"{code}\nimport json, sys\nprint(json.dumps({listed}))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return list(json.loads(result.stdout.splitlines()[-1]))


@pytest.mark.slow
def test_the_target_starts_without_what_a_run_does_not_need() -> None:
    assert imported_after("import target_klaviyo.target") == []


@pytest.mark.slow
def test_a_current_ledger_is_checked_without_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    ledger = Ledger(url)
    assert ledger.migrate() == head_revision()  # a new ledger: created (Alembic may be used)
    ledger.close()
    code = f"from target_klaviyo.ledger import Ledger\nassert Ledger({url!r}).migrate()"
    assert imported_after(code) == []


@pytest.mark.slow
def test_numpy_still_imports_after_singer_sdk() -> None:
    code = "import target_klaviyo.cli\nimport numpy\nassert numpy.zeros(2).sum() == 0"
    assert "numpy" in imported_after(code)


def test_the_shipped_revisions_are_alembics() -> None:
    script = ScriptDirectory(str(MIGRATIONS))
    alembic_view = {s.revision: s.down_revision for s in script.walk_revisions()}
    assert shipped_revisions() == alembic_view
    assert head_revision() == script.get_current_head()


def test_the_stored_revision_is_what_alembic_reads(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}")

    def alembic_reads(conn: sa.Connection) -> str | None:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()

    with engine.begin() as conn:  # no version table yet
        assert _stored_revision(conn) is None
        assert alembic_reads(conn) is None
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    ledger.migrate()
    ledger.close()
    with engine.begin() as conn:
        assert _stored_revision(conn) == alembic_reads(conn) == head_revision()
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '0001'"))
        assert _stored_revision(conn) == alembic_reads(conn) == "0001"
    engine.dispose()
