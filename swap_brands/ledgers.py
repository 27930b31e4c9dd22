"""Each brand's delivery ledger: where it is, making it ready, reading it, purging it.

A brand's ledger is its own SQLite file, or its own schema ``brand_<name>`` in a shared Postgres
database (decisions §6): profile versions, the list mirror and restock keys are keyed per
customer, so two brands sharing a customer must never share those rows, and target-klaviyo keys
its Postgres run lock by schema, so one brand's run never waits for another's. This module reads
the target's documented tables (``runs``, ``deliveries``) with plain SQL: the project layer does
not import the target's package.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from swap_brands.config import Brand
from swap_brands.jobs import NO_OUTCOME, failed_without_outcome, last_job

#: The target's set-aside outcomes (target-klaviyo README, "delivery ledger").
SET_ASIDE = ("rejected", "failed_profile_import", "held", "mapper_exception", "invalid_record")
SUMMARY_WINDOW = timedelta(days=30)
_SCHEMA_NAME = re.compile(r"^brand_[a-z][a-z0-9_]{0,39}$")


class LedgerConfigError(Exception):
    """A brand's ledger cannot be located (a variable not set, a URL that is not Postgres)."""


def ledger_url(brand: Brand, project_root: Path, env: Mapping[str, str]) -> str:
    """The SQLAlchemy URL target-klaviyo gets as ``ledger_url`` for this brand."""
    if brand.ledger.kind == "sqlite":
        return f"sqlite:///{sqlite_path(brand, project_root)}"
    base = _postgres_base(brand, env)
    return base.update_query_dict({"options": f"-csearch_path={brand.schema}"}).render_as_string(
        hide_password=False
    )


def sqlite_path(brand: Brand, project_root: Path) -> Path:
    folder = Path(brand.ledger.folder)
    folder = folder if folder.is_absolute() else project_root / folder
    return folder / brand.name / "klaviyo-ledger.sqlite"


def _postgres_base(brand: Brand, env: Mapping[str, str]) -> sa.URL:
    name = brand.ledger.url_env or ""
    raw = env.get(name)
    if not raw:
        raise LedgerConfigError(f"{name} is not set (the brands' Postgres ledger database URL)")
    url = make_url(raw)
    if url.get_backend_name() != "postgresql":
        raise LedgerConfigError(f"{name} must be a postgresql+psycopg:// URL")
    return url


def prepare(brand: Brand, project_root: Path, env: Mapping[str, str]) -> str:
    """Make the brand's ledger location exist (its folder, or its schema); return its URL.

    The target creates and migrates its tables itself, but Postgres cannot create a table in a
    schema that does not exist, and SQLite cannot create a file in a missing folder.
    """
    if brand.ledger.kind == "sqlite":
        sqlite_path(brand, project_root).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    else:
        engine = sa.create_engine(_postgres_base(brand, env), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{_checked(brand.schema)}"'))
        finally:
            engine.dispose()
    return ledger_url(brand, project_root, env)


def purge(brand: Brand, project_root: Path, env: Mapping[str, str]) -> str:
    """Delete everything the brand's ledger holds; say what was removed."""
    if brand.ledger.kind == "sqlite":
        folder = sqlite_path(brand, project_root).parent
        existed = folder.exists()
        shutil.rmtree(folder, ignore_errors=True)
        return f"{folder} {'removed' if existed else 'was not there'}"
    engine = sa.create_engine(_postgres_base(brand, env), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{_checked(brand.schema)}" CASCADE'))
    finally:
        engine.dispose()
    return f"schema {brand.schema} dropped"


def _checked(schema: str) -> str:
    if not _SCHEMA_NAME.match(schema):  # names are validated by the file's schema already
        raise LedgerConfigError(f"unexpected schema name {schema!r}")
    return schema


@dataclass
class BrandSummary:
    """What ``swap-brands summary`` shows for one brand."""

    brand: str
    last_outcome: str | None = None
    last_finished_at: str | None = None
    last_error: str | None = None
    last_succeeded_at: str | None = None
    lag_minutes: float | None = None
    set_aside: dict[str, int] = field(default_factory=dict)
    problem: str | None = None

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def summarize(
    brand: Brand, project_root: Path, env: Mapping[str, str], now: datetime | None = None
) -> BrandSummary:
    """The brand's last outcome, lag (since its last successful run) and set-aside counts.

    A later run that Meltano records as failed but the ledger never saw ended without an
    outcome: it is shown as ``no_outcome``, a failure, not hidden behind the run before it.
    """
    summary, ledger_last_started = _from_ledger(brand, project_root, env, now)
    try:
        job = last_job(brand, project_root, env)
    except sa.exc.SQLAlchemyError as error:
        summary.problem = summary.problem or f"cannot read Meltano's runs ({type(error).__name__})"
        return summary
    if failed_without_outcome(job, ledger_last_started):
        assert job is not None
        summary.last_outcome = NO_OUTCOME
        summary.last_finished_at = None if job.ended_at is None else job.ended_at.isoformat()
        summary.last_error = (
            "Meltano's run failed before target-klaviyo recorded an outcome: read its log"
        )
        summary.problem = None
    return summary


def _from_ledger(
    brand: Brand, project_root: Path, env: Mapping[str, str], now: datetime | None
) -> tuple[BrandSummary, datetime | None]:
    """The summary as the ledger tells it, and when its last run started."""
    now = now or datetime.now(timezone.utc)
    summary = BrandSummary(brand.name)
    started = None
    try:
        url = ledger_url(brand, project_root, env)
    except LedgerConfigError as error:
        summary.problem = str(error)
        return summary, started
    if brand.ledger.kind == "sqlite" and not sqlite_path(brand, project_root).exists():
        summary.problem = "no run yet (no ledger)"
        return summary, started
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("runs"):
                summary.problem = "no run yet (no ledger)"
                return summary, started
            started = _read_runs(conn, summary, now)
            _read_set_aside(conn, summary, now - SUMMARY_WINDOW)
    except sa.exc.SQLAlchemyError as error:
        summary.problem = f"cannot read the ledger ({type(error).__name__})"
    finally:
        engine.dispose()
    return summary, started


def _read_runs(conn: sa.Connection, summary: BrandSummary, now: datetime) -> datetime | None:
    """Fill in the last run's outcome and the lag; when the last run started."""
    last = conn.execute(
        sa.text(
            "SELECT status, finished_at, error, started_at FROM runs "
            "ORDER BY started_at DESC LIMIT 1"
        )
    ).first()
    if last is not None:
        summary.last_outcome = str(last[0])
        summary.last_finished_at = _iso(last[1])
        summary.last_error = None if last[2] is None else str(last[2])[:300]
    succeeded = conn.execute(
        sa.text("SELECT max(finished_at) FROM runs WHERE status = 'succeeded'")
    ).scalar()
    moment = _as_datetime(succeeded)
    if moment is not None:
        summary.last_succeeded_at = moment.isoformat()
        summary.lag_minutes = round((now - moment).total_seconds() / 60, 1)
    return None if last is None else _as_datetime(last[3])


def _read_set_aside(conn: sa.Connection, summary: BrandSummary, since: datetime) -> None:
    """Records set aside and not replayed since ``since``, each counted once per reason."""
    query = sa.text(
        "SELECT coalesce(reason, outcome), count(DISTINCT stream || ':' || record_key) "
        "FROM deliveries WHERE outcome IN :outcomes AND replayed_at IS NULL "
        "AND recorded_at >= :since GROUP BY coalesce(reason, outcome)"
    ).bindparams(sa.bindparam("outcomes", expanding=True))
    # SQLAlchemy keeps SQLite times as naive UTC text ("2026-01-31 12:00:00.000000").
    bound: Any = since
    if conn.dialect.name == "sqlite":
        bound = since.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    rows = conn.execute(query, {"outcomes": list(SET_ASIDE), "since": bound}).all()
    summary.set_aside = {str(reason): int(count) for reason, count in rows}


def _as_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _iso(value: Any) -> str | None:
    moment = _as_datetime(value)
    return None if moment is None else moment.isoformat()
