"""The runs table as the run lifecycle uses it: outcomes, interrupted runs, alert history.

The table itself (and its migrations) belongs to :mod:`target_klaviyo.ledger`; this module only
reads and writes rows of it. ``runs.error`` is written when the ledger has the column (migration
0002); against an older table definition the outcome is still written, the error only logged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from target_klaviyo.ledger import Ledger, as_utc, runs, to_json, utcnow
from target_klaviyo.outcomes import ALREADY_RUNNING, INTERRUPTED, OUTCOMES, SUCCEEDED

#: How long a repeated outcome stays quiet before it alerts again.
REPEAT_ALERT_AFTER = timedelta(days=1)
#: How far back :func:`previous_outcomes` looks for the start of a repeated outcome.
_HISTORY = 500


def _has_error_column() -> bool:
    return "error" in runs.c


def finish_run(
    ledger: Ledger, outcome: str, summary: Mapping[str, Any], error: str | None = None
) -> None:
    """Write this run's outcome, summary and error (type and safe message) into its row."""
    if ledger.read_only:
        return
    values: dict[str, Any] = {
        "finished_at": utcnow(),
        "status": outcome,
        "summary": to_json(summary),
    }
    if _has_error_column():
        values["error"] = error
    with ledger.engine.begin() as conn:
        conn.execute(runs.update().where(runs.c.run_id == ledger.run_id).values(**values))


def record_refused_run(ledger: Ledger, outcome: str, error: str | None) -> None:
    """A row for a run that ended before it could start: seen, not lost.

    ``already_running``, or ``crashed`` when the ledger could not be migrated: then the stored
    table may still be 0.1.0's (no ``error`` column), so the row goes in without it.
    """
    if ledger.read_only:
        return
    now = utcnow()
    values: dict[str, Any] = {
        "run_id": ledger.run_id,
        "started_at": now,
        "finished_at": now,
        "status": outcome,
    }
    with ledger.engine.begin() as conn:
        stored = {column["name"] for column in sa.inspect(conn).get_columns(runs.name)}
        if _has_error_column() and "error" in stored:
            values["error"] = error
        conn.execute(runs.insert().values(**values))


def mark_interrupted(ledger: Ledger) -> int:
    """Mark ``running`` runs ``interrupted``; call only while holding the run lock.

    The lock guarantees that no other run is alive, so a ``running`` row is a run that was
    killed (``kill -9``, a lost machine) before it could write its outcome.
    """
    if ledger.read_only:
        return 0
    values: dict[str, Any] = {"status": INTERRUPTED, "finished_at": utcnow()}
    if _has_error_column():
        values["error"] = f"found running when run {ledger.run_id} took the ledger lock"
    with ledger.engine.begin() as conn:
        result = conn.execute(
            runs.update()
            .where(runs.c.status == "running", runs.c.run_id != ledger.run_id)
            .values(**values)
        )
    return int(result.rowcount or 0)


@dataclass(frozen=True)
class PastRun:
    """An earlier target run's outcome and when it finished."""

    outcome: str
    finished_at: datetime


def previous_outcomes(ledger: Ledger) -> list[PastRun]:
    """Earlier finished target runs, newest first (not replays, not refused starts)."""
    counted = [o for o in OUTCOMES if o != ALREADY_RUNNING]
    query = (
        sa.select(runs.c.status, runs.c.finished_at)
        .where(
            runs.c.run_id != ledger.run_id,
            runs.c.status.in_(counted),
            runs.c.finished_at.is_not(None),
        )
        .order_by(runs.c.finished_at.desc())
        .limit(_HISTORY)
    )
    with ledger.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [PastRun(str(status), as_utc(when) or utcnow()) for status, when in rows]


def outcome_alert_due(outcome: str, previous: Sequence[PastRun], now: datetime) -> bool:
    """Whether this run's outcome alerts: once, again when it changes, or a day later.

    A repeated outcome alerted at the first run of its streak, then at the first run a day or
    more after the last alert, and so on: replaying that rule over the streak says whether this
    run is due, with no alert bookkeeping in the ledger. A first run that succeeds is quiet; one
    that succeeds after another outcome alerts (the pipeline recovered).
    """
    if outcome == ALREADY_RUNNING:
        return False  # the receiver runs again right after the current run: nothing to do
    last = previous[0].outcome if previous else SUCCEEDED
    if outcome != last:
        return True
    if outcome == SUCCEEDED:
        return False
    streak = []
    for run in previous:
        if run.outcome != outcome:
            break
        streak.append(run.finished_at)
    alerted = streak[-1]
    for finished in reversed(streak[:-1]):
        if finished - alerted >= REPEAT_ALERT_AFTER:
            alerted = finished
    return now - alerted >= REPEAT_ALERT_AFTER
