"""Latency from a Swap webhook to Klaviyo: swap-webhooks' deliveries joined with the ledger.

This is the project's join of its two plugins' records (neither plugin knows the other): the
receiver's state db and target-klaviyo's delivery ledger. It reads only the receiver's state db
(its ``state_db`` setting, ``runtime/swap-webhooks.sqlite`` by default), only its ``deliveries``
table, and only two columns of it:

- ``return_id`` (TEXT): the Swap return id the webhook announced;
- ``received_at`` (TEXT, ISO 8601 with its UTC offset): when the receiver accepted the webhook.

The file is opened read-only (a ``file:...?mode=ro`` URI), so the report is safe while a receiver
runs. ``swap_webhooks.store.webhook_latencies`` documents the same contract on its side; the
tests create the state db with swap-webhooks' own schema, so a change there shows up. The
result is a :class:`target_klaviyo.report.TriggerLatency`, which the target's report shows.

The join, per delivery: the first acceptance in the ledger (stream ``klaviyo_events``, outcome
``accepted``, ``source_id`` = the return id) recorded at or after ``received_at``. A return's
``returnCreated`` and ``returnProcessed`` webhooks are two deliveries, each measured. A delivery
with no such acceptance is counted as not accepted yet: its run has not finished, its event was
set aside, or the change it announced made no new event.
"""

from __future__ import annotations

import contextlib
import sqlite3
from bisect import bisect_left
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from target_klaviyo.ledger import ACCEPTED, as_utc, deliveries
from target_klaviyo.report import LatencyStats, TriggerLatency
from target_klaviyo.report.stats import latency_stats

#: The ledger stream of the events a webhook's run sends.
EVENTS_STREAM = "klaviyo_events"
#: What one trigger is, under the report's figures.
NOTE = "A return's created and processed webhooks count as two deliveries."


class WebhooksDbError(ValueError):
    """The file given as the swap-webhooks state db is not one (or not one this report reads)."""


def read_webhook_deliveries(state_db: Path) -> list[tuple[str, datetime]]:
    """``(return_id, received_at)`` of every delivery in the receiver's state db (aware UTC).

    Only the two columns of the contract are read, through a read-only connection.
    """
    uri = f"{state_db.resolve().as_uri()}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            rows = db.execute("SELECT return_id, received_at FROM deliveries").fetchall()
        result = []
        for return_id, received in rows:
            moment = as_utc(str(received))
            assert moment is not None
            result.append((str(return_id), moment.astimezone(timezone.utc)))
    except (sqlite3.DatabaseError, ValueError) as exc:
        msg = f"{state_db} is not a swap-webhooks state db: {exc}"
        raise WebhooksDbError(msg) from exc
    return result


def load_webhook_latency(
    conn: Connection | None, state_db: Path, since: datetime | None
) -> TriggerLatency:
    """Measure each delivery received since ``since`` against the ledger behind ``conn``.

    ``conn`` is None when the ledger has no ``deliveries`` table yet (nothing accepted). A state
    db that does not exist means no webhooks: noted in the result, not an error.
    """
    source = f"swap-webhooks state db at {state_db}"
    if not state_db.is_file():
        return TriggerLatency(label="Webhook", source=source, found=False, note=NOTE)
    # The receiver first, then the ledger: a webhook arriving in between is not miscounted.
    received = [
        (return_id, at)
        for return_id, at in read_webhook_deliveries(state_db)
        if since is None or at >= since
    ]
    accepted = _acceptances(conn, received) if conn is not None and received else {}
    seconds: list[float] = []
    for return_id, at in received:
        times = accepted.get(return_id, [])
        first = bisect_left(times, at)
        if first < len(times):
            seconds.append((times[first] - at).total_seconds())
    seconds.sort()
    stats: LatencyStats | None = latency_stats(seconds)
    return TriggerLatency(
        label="Webhook",
        source=source,
        found=True,
        note=NOTE,
        deliveries=len(received),
        not_accepted=len(received) - len(seconds),
        latency=stats,
    )


def _acceptances(
    conn: Connection, received: list[tuple[str, datetime]]
) -> dict[str, list[datetime]]:
    """Klaviyo's acceptances of the returns' events since the oldest delivery, sorted per return."""
    wanted = {return_id for return_id, _ in received}
    earliest = min(at for _, at in received)
    d = deliveries
    query = sa.select(d.c.source_id, d.c.recorded_at).where(
        d.c.stream == EVENTS_STREAM,
        d.c.outcome == ACCEPTED,
        d.c.source_id.is_not(None),
        d.c.recorded_at >= earliest,
    )
    times: dict[str, list[datetime]] = {}
    for source_id, recorded_at in conn.execute(query):  # (Result.tuples is deprecated in 2.1)
        recorded = as_utc(recorded_at)
        if source_id in wanted and recorded is not None:
            times.setdefault(source_id, []).append(recorded)
    for values in times.values():
        values.sort()
    return times


def webhook_latency(ledger_url: str, state_db: Path, since: datetime | None) -> TriggerLatency:
    """The latency from each delivery in ``state_db`` to its acceptance in the ledger."""
    engine = sa.create_engine(ledger_url)
    try:
        with engine.connect() as conn:
            has_ledger = deliveries.name in sa.inspect(conn).get_table_names()
            return load_webhook_latency(conn if has_ledger else None, state_db, since)
    finally:
        engine.dispose()
