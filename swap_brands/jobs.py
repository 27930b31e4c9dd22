"""Meltano's own record of a brand's last run, for runs that never reached the target.

The ledger holds the outcome target-klaviyo recorded. A run that failed before the target
started (Meltano could not write its job row, a plugin would not start) or whose target Meltano
killed records nothing there, so the ledger's last outcome would still read as the run before
it. Meltano's system database has a job row for every run, keyed by the brand's state id: one
that failed after the ledger's last run is a run without an outcome, and counts as a failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from swap_brands.config import Brand
from swap_meltano.launcher import system_database_uri
from swap_meltano.project import MeltanoProject, sys_dir_default

#: The outcome shown for a run that ended without one (as Dagster's asset names it).
NO_OUTCOME = "no_outcome"


@dataclass(frozen=True)
class Job:
    """A finished Meltano job of the brand: ``SUCCESS`` or ``FAIL``, and when."""

    state: str
    started_at: datetime
    ended_at: datetime | None


def last_job(brand: Brand, project_root: Path, env: Mapping[str, str]) -> Job | None:
    """The brand's last finished Meltano job, or None when there is no system database yet."""
    project = MeltanoProject.find(project_root)
    if project is None:
        return None
    uri = system_database_uri(project, env, sys_dir_default(project, env))
    if uri.startswith("sqlite") and not _sqlite_file(uri).exists():
        return None  # never create the database by reading it
    engine = sa.create_engine(uri)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("runs"):
                return None
            row = conn.execute(
                sa.text(
                    "SELECT state, started_at, ended_at FROM runs WHERE job_name = :job "
                    "AND state IN ('SUCCESS', 'FAIL') ORDER BY started_at DESC LIMIT 1"
                ),
                {"job": brand.state_id},
            ).first()
    finally:
        engine.dispose()
    if row is None or as_utc(row[1]) is None:
        return None
    started = as_utc(row[1])
    assert started is not None
    return Job(str(row[0]), started, as_utc(row[2]))


def failed_without_outcome(job: Job | None, ledger_last_started: datetime | None) -> bool:
    """Whether Meltano's last job failed and the ledger has no run from it.

    The target's run starts after Meltano's job does: a ledger run started before the job
    cannot be that job's.
    """
    if job is None or job.state != "FAIL":
        return False
    return ledger_last_started is None or ledger_last_started < job.started_at


def as_utc(value: Any) -> datetime | None:
    """A stored time (SQLite keeps naive UTC text, PostgreSQL a datetime) as aware UTC."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _sqlite_file(uri: str) -> Path:
    return Path(uri.split(":///", 1)[-1].split("?", 1)[0])
