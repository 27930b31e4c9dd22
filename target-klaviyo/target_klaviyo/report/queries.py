"""Reading the delivery ledger into :class:`ReportData`, without writing to it.

The report may run against a production ledger while the target writes to it, so it only
selects: it never creates tables (a ledger the target has not used yet reads as empty, one from
before ``profile_lists`` existed shows no open returns) and never touches ``profile_versions`` or
``restocks``. Sums happen in SQL; rows are fetched only where the
report lists individual records, and then streamed a page at a time (:data:`PAGE_ROWS`), keeping
per record only what the page shows (never its payload), so a large ledger stays cheap to report
on. A ``since`` window bounds the rest.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url

from target_klaviyo.ledger import (
    ACCEPTED,
    APPENDED,
    SET_ASIDE,
    as_utc,
    deliveries,
    profile_lists,
    runs,
    utcnow,
)
from target_klaviyo.masking import mask_identity, scrub
from target_klaviyo.report.data import (
    MISMATCH_REASONS,
    OpenReturnsRow,
    ReasonCount,
    RecordRow,
    ReportData,
    RunRow,
)
from target_klaviyo.report.guidance import guidance
from target_klaviyo.report.stats import bucket_series, latency_stats

PROFILE_STREAM = "klaviyo_profile_updates"
OPEN_RETURNS = "swap_open_returns"
#: What a record is when it has no metric, by stream (the set-aside table's "metric" column).
STREAM_LABELS = {
    "klaviyo_profile_updates": "profile update",
    "klaviyo_catalog_variants": "restock",
    "integration_exceptions": "mapping",
}
#: Sorts rows without a time first.
_DAWN = datetime.min.replace(tzinfo=timezone.utc)
#: Rows fetched from the ledger at a time where the report reads rows.
PAGE_ROWS = 5000
#: What the report keeps of a set-aside record's newest row.
_KEPT = (
    "stream",
    "reason",
    "outcome",
    "detail",
    "source_id",
    "metric",
    "profile_hash",
    "recorded_at",
    "replayed_at",
)


def _paged(conn: Connection, query: sa.Select[Any]) -> sa.Result[Any]:
    """``query``'s rows fetched :data:`PAGE_ROWS` at a time, not all at once."""
    return conn.execution_options(stream_results=True, yield_per=PAGE_ROWS).execute(query)


def display_url(ledger_url: str) -> str:
    """The ledger's URL as safe to show: a Postgres password never reaches the page."""
    return make_url(ledger_url).render_as_string(hide_password=True)


def load_report_data(
    ledger_url: str,
    *,
    since: datetime | None = None,
    set_aside_limit: int = 500,
    runs_limit: int = 20,
) -> ReportData:
    """Every figure of the report, from the ledger at ``ledger_url`` (records since ``since``)."""
    _require_sqlite_file(ledger_url)
    since = as_utc(since)
    data = ReportData(
        generated_at=utcnow(),
        ledger=display_url(ledger_url),
        since=since,
        set_aside_shown_limit=set_aside_limit,
    )
    engine = sa.create_engine(ledger_url)
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            if deliveries.name in tables:
                _load_deliveries(conn, data, since)
            _load_open_returns(conn, data, tables)
            if runs.name in tables:
                data.runs = _load_runs(conn, since, runs_limit)
    finally:
        engine.dispose()
    return data


def _require_sqlite_file(ledger_url: str) -> None:
    """A mistyped SQLite path must fail, not report an empty ledger (SQLite would create it)."""
    parsed = make_url(ledger_url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    path = Path(str(parsed.database))
    if not path.is_file():
        msg = f"No delivery ledger at {path}: run target-klaviyo first, or check ledger_url"
        raise FileNotFoundError(msg)


def _since(column: sa.ColumnElement[Any], since: datetime | None) -> sa.ColumnElement[bool]:
    return sa.true() if since is None else column >= since


def _load_deliveries(conn: Connection, data: ReportData, since: datetime | None) -> None:
    d = deliveries
    in_window = _since(d.c.recorded_at, since)
    total, first, last = conn.execute(
        sa.select(
            sa.func.count(), sa.func.min(d.c.recorded_at), sa.func.max(d.c.recorded_at)
        ).where(in_window)
    ).one()
    data.total_rows = int(total or 0)
    data.first_recorded, data.last_recorded = as_utc(first), as_utc(last)
    if not data.total_rows:
        return
    data.accepted_by_stream = {
        str(stream): int(count)
        for stream, count in conn.execute(
            sa.select(d.c.stream, sa.func.count())
            .where(in_window, d.c.outcome == ACCEPTED)
            .group_by(d.c.stream)
            .order_by(d.c.stream)
        )
    }
    _load_accepted_events(conn, data, in_window)
    masks = _Masks()
    _load_set_aside(conn, data, in_window, masks)


def _load_accepted_events(
    conn: Connection, data: ReportData, in_window: sa.ColumnElement[bool]
) -> None:
    d = deliveries
    rows = _paged(
        conn,
        sa.select(d.c.metric, d.c.source_time, d.c.recorded_at).where(
            in_window, d.c.outcome == ACCEPTED, d.c.metric.is_not(None)
        ),
    )
    times: list[tuple[str, datetime]] = []
    latencies: list[float] = []
    for metric, source_time, recorded_at in rows:
        recorded = as_utc(recorded_at)
        assert recorded is not None  # the column is NOT NULL
        label = scrub(metric) or ""
        times.append((label, recorded))
        source = as_utc(source_time)
        if source is not None:
            # A source clock ahead of ours would read as negative latency: count it as none.
            latencies.append(max(0.0, (recorded - source).total_seconds()))
    by_metric = Counter(metric for metric, _ in times)
    data.accepted_by_metric = dict(sorted(by_metric.items(), key=lambda kv: (-kv[1], kv[0])))
    data.series = bucket_series(times, order=list(data.accepted_by_metric))
    data.latency_seconds = sorted(latencies)
    data.latency = latency_stats(data.latency_seconds)


@dataclass
class _Masks:
    """Masked identities by profile hash, learnt from the set-aside payloads the ledger keeps."""

    by_hash: dict[str, str] = field(default_factory=dict)

    def learn(self, profile_hash: str | None, payload: Mapping[str, Any] | None) -> str | None:
        masked = mask_identity(_identity(payload))
        if masked and profile_hash:
            self.by_hash.setdefault(profile_hash, masked)
        return masked or (self.by_hash.get(profile_hash) if profile_hash else None)


def _identity(payload: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """An event's ``profile``, or a profile update's own identity fields."""
    if not payload:
        return None
    profile = payload.get("profile")
    return profile if isinstance(profile, Mapping) else payload


def _payload(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@dataclass
class _Group:
    """One record in one category (set aside, or mismatched profile), over all its rows.

    Only the newest row's fields the page shows are kept, with the first time and the count:
    a record met in every run of a month costs one small dict, not a payload per run.
    """

    latest: Mapping[str, Any] = field(default_factory=dict)
    first_seen: datetime | None = None
    times_seen: int = 0
    delivered: bool = False
    customer: str | None = None

    def add(self, row: sa.RowMapping) -> None:
        """Count a row (rows come oldest first)."""
        if self.first_seen is None:
            self.first_seen = as_utc(row["recorded_at"])
        self.latest = {name: row[name] for name in _KEPT}
        self.times_seen += 1
        self.delivered = self.delivered or bool(row["delivered"])

    def to_row(self) -> RecordRow:
        latest = self.latest
        stream = str(latest["stream"])
        when = as_utc(latest["recorded_at"])
        first = self.first_seen
        assert when is not None  # the column is NOT NULL
        assert first is not None
        return RecordRow(
            reason=scrub(latest["reason"] or latest["outcome"]) or "",
            outcome=str(latest["outcome"]),
            detail=scrub(latest["detail"]),
            source_id=scrub(latest["source_id"]),
            metric=_what(stream, scrub(latest["metric"])),
            stream=stream,
            customer=self.customer,
            when=when,
            first_seen=first,
            times_seen=self.times_seen,
            replayed_at=as_utc(latest["replayed_at"]),
            delivered_later=self.delivered,
        )


def _what(stream: str, metric: str | None) -> str:
    """The metric of an event; for other records what they are (a mapper exception's rule)."""
    if stream == "integration_exceptions":
        return f"mapping rule {metric}" if metric else "mapping"
    return metric or STREAM_LABELS.get(stream, stream)


def _load_set_aside(
    conn: Connection, data: ReportData, in_window: sa.ColumnElement[bool], masks: _Masks
) -> None:
    d = deliveries
    later = deliveries.alias("later")
    delivered = (
        sa.exists()
        .where(
            later.c.stream == d.c.stream,
            later.c.record_key == d.c.record_key,
            later.c.outcome == ACCEPTED,
        )
        .label("delivered")
    )
    columns = [d.c[name] for name in _KEPT]
    query = (
        sa.select(*columns, d.c.record_key, d.c.payload, delivered)
        .where(in_window, sa.or_(d.c.outcome.in_(SET_ASIDE), d.c.reason.in_(MISMATCH_REASONS)))
        .order_by(d.c.id)
    )
    groups: dict[tuple[str, str, bool], _Group] = {}
    for found in _paged(conn, query).mappings():
        mismatch = found["reason"] in MISMATCH_REASONS
        group = groups.setdefault((found["stream"], found["record_key"], mismatch), _Group())
        group.add(found)
        customer = masks.learn(found["profile_hash"], _payload(found["payload"]))
        group.customer = customer or group.customer
    outstanding: list[RecordRow] = []
    affected: set[str] = set()
    for (_, _, mismatch), group in groups.items():
        if group.customer is None and group.latest["profile_hash"]:
            group.customer = masks.by_hash.get(group.latest["profile_hash"])
        row = group.to_row()
        if mismatch:
            data.mismatched.append(row)
        elif row.delivered_later:
            data.resolved_later += 1
        else:
            outstanding.append(row)
        if not row.delivered_later and row.outcome in SET_ASIDE:
            data.outstanding_total += 1
            if row.source_id:
                affected.add(row.source_id)
    data.returns_affected = len(affected)
    data.reasons = _reason_counts(outstanding)
    rank = {r.reason: i for i, r in enumerate(data.reasons)}
    outstanding.sort(key=lambda r: (rank[r.reason], -r.when.timestamp()))
    data.set_aside_total = len(outstanding)
    data.set_aside = outstanding[: data.set_aside_shown_limit]
    data.mismatched.sort(key=lambda r: -r.when.timestamp())


def _reason_counts(rows: Iterable[RecordRow]) -> list[ReasonCount]:
    records: Counter[str] = Counter()
    returns: dict[str, set[str]] = {}
    outcomes: dict[str, str] = {}
    for row in rows:
        records[row.reason] += 1
        outcomes.setdefault(row.reason, row.outcome)
        if row.source_id:
            returns.setdefault(row.reason, set()).add(row.source_id)
    return [
        ReasonCount(
            reason=reason,
            records=count,
            returns=len(returns.get(reason, ())),
            guidance=guidance(reason, outcomes[reason]),
        )
        for reason, count in sorted(records.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


def _load_open_returns(conn: Connection, data: ReportData, tables: set[str]) -> None:
    """Who Klaviyo flags with open returns now, from the ledger's mirror of accepted list changes.

    ``profile_lists`` holds every value the target appended to ``swap_open_returns`` (state
    ``appended``) and has not unappended since, once Klaviyo accepted the change. The whole
    table is used whatever ``since`` says: it is the current state, not a window of history. A
    profile whose newer profile update was set aside (and not delivered since) gets that update's
    reason, because its flag in Klaviyo may be out of date.
    """
    if profile_lists.name not in tables:
        data.open_returns_mirrored = False
        return
    p = profile_lists
    query = (
        sa.select(p.c.profile_hash, p.c.value, p.c.masked_identity, p.c.updated_at)
        .where(p.c.property == OPEN_RETURNS, _appended(conn))
        .order_by(p.c.profile_hash, p.c.updated_at, p.c.value)
    )
    members: dict[str, _Member] = {}
    for key, value, masked, updated_at in conn.execute(query):
        member = members.setdefault(key, _Member())
        member.values.append(scrub(str(value)) or "")
        member.customer = scrub(masked) or member.customer
        member.last_changed = as_utc(updated_at)
    stale = _newer_set_aside(conn, members) if deliveries.name in tables else {}
    data.open_returns = [
        OpenReturnsRow(
            customer=member.customer or f"profile {key[:8]}",
            open_returns=tuple(member.values),
            last_changed=member.last_changed,
            not_delivered=stale.get(key),
        )
        for key, member in members.items()
    ]
    data.open_returns.sort(key=lambda r: (-(r.last_changed or _DAWN).timestamp(), r.customer))


def _appended(conn: Connection) -> sa.ColumnElement[bool]:
    """Values held now: ``appended`` rows (a ledger not yet migrated holds no other kind)."""
    columns = {c["name"] for c in sa.inspect(conn).get_columns(profile_lists.name)}
    return profile_lists.c.state == APPENDED if "state" in columns else sa.true()


@dataclass
class _Member:
    """One profile's open returns in ``profile_lists``, its masked identity and last change."""

    values: list[str] = field(default_factory=list)
    customer: str | None = None
    last_changed: datetime | None = None


def _newer_set_aside(conn: Connection, members: Mapping[str, _Member]) -> dict[str, str]:
    """Why each flagged profile's flag may be out of date, for profiles where it may be.

    That is the reason (else the outcome) of the profile's newest update set aside after its flag
    last changed and not accepted since.
    """
    d = deliveries
    later = deliveries.alias("later")
    delivered_since = sa.exists().where(
        later.c.stream == d.c.stream,
        later.c.record_key == d.c.record_key,
        later.c.outcome == ACCEPTED,
        later.c.id > d.c.id,
    )
    flagged = (
        sa.select(profile_lists.c.profile_hash)
        .where(profile_lists.c.property == OPEN_RETURNS, _appended(conn))
        .distinct()
    )
    query = (
        sa.select(d.c.profile_hash, d.c.reason, d.c.outcome, d.c.recorded_at)
        .where(
            d.c.stream == PROFILE_STREAM,
            d.c.outcome.in_(SET_ASIDE),
            d.c.profile_hash.in_(flagged),
            ~delivered_since,
        )
        .order_by(d.c.id)
    )
    reasons: dict[str, str] = {}
    for key, reason, outcome, recorded_at in conn.execute(query):
        member = members.get(key)
        recorded = as_utc(recorded_at)
        if member is None or recorded is None or member.last_changed is None:
            continue
        if recorded > member.last_changed:  # rows come oldest first: the newest one wins
            reasons[key] = scrub(reason or outcome) or str(outcome)
    return reasons


def _load_runs(conn: Connection, since: datetime | None, limit: int) -> list[RunRow]:
    """The newest runs; ``error`` only where the ledger has the column (migration 0002)."""
    present = {c["name"] for c in sa.inspect(conn).get_columns(runs.name)}
    query = (
        sa.select(*[c for c in runs.c if c.name in present])
        .where(_since(runs.c.started_at, since))
        .order_by(runs.c.started_at.desc())
        .limit(limit)
    )
    result = []
    for row in conn.execute(query).mappings():
        summary = _payload(row["summary"]) or {}
        started = as_utc(row["started_at"])
        assert started is not None  # the column is NOT NULL
        result.append(
            RunRow(
                run_id=str(row["run_id"]),
                started_at=started,
                finished_at=as_utc(row["finished_at"]),
                status=str(row["status"]),
                accepted=_total(summary, "accepted_by_stream"),
                deduplicated=_total(summary, "deduplicated"),
                set_aside=_total(summary, "set_aside_by_reason"),
                requests=_total(summary, "requests"),
                retries=_total(summary, "retries"),
                throttled=_total(summary, "throttled_429"),
                error=scrub(row.get("error")),
            )
        )
    return result


def _total(summary: Mapping[str, Any], key: str) -> int | None:
    """The sum of one of the summary's counters, or None when the run recorded none."""
    counts = summary.get(key)
    if not isinstance(counts, Mapping):
        return None
    return sum(int(v) for v in counts.values() if isinstance(v, int | float))
