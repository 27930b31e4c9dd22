"""The delivery ledger: each record's outcome, the restocks applied, each profile's newest update.

One place answers "did this return event reach Klaviyo, and if not, why?". It is SQLite by
default and any SQLAlchemy URL (Postgres) otherwise. Rows hold no personal data beyond what is
needed to replay a set-aside record (its payload), and payloads are cleared once they are older
than the retention period. Identities are stored as a hash.

The schema is versioned with Alembic (``migrations/``): :meth:`Ledger.migrate` brings a ledger
to this release's schema, and the tables below are always that newest schema.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from filelock import FileLock, Timeout
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Engine, make_url

if TYPE_CHECKING:
    from alembic.config import Config

metadata = sa.MetaData()

#: One row per record outcome per run. A rerun that meets the record again adds a row.
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(36), nullable=False, index=True),
    sa.Column("stream", sa.String(64), nullable=False),
    sa.Column("record_key", sa.String(255), nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("reason", sa.String(128)),
    sa.Column("detail", sa.Text),
    sa.Column("metric", sa.String(128)),
    sa.Column("source_id", sa.String(255), index=True),
    sa.Column("profile_hash", sa.String(64), index=True),
    sa.Column("source_time", sa.DateTime(timezone=True)),
    sa.Column("event_time", sa.DateTime(timezone=True)),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("payload", sa.Text),
    sa.Column("replayed_at", sa.DateTime(timezone=True)),
    sa.Index("ix_deliveries_lookup", "stream", "record_key", "outcome"),
)

#: The newest ``as_of`` whose properties reached each profile: older updates never overwrite.
profile_versions = sa.Table(
    "profile_versions",
    metadata,
    sa.Column("profile_hash", sa.String(64), primary_key=True),
    sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

#: Each restock's inventory change, applied at most once. ``pending`` rows are in flight: the
#: quantities and job id let a rerun after a crash tell whether Klaviyo applied the change.
restocks = sa.Table(
    "restocks",
    metadata,
    sa.Column("restock_key", sa.String(255), primary_key=True),
    sa.Column("variant_id", sa.String(255), nullable=False),
    sa.Column("inventory_delta", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("base_quantity", sa.Numeric),
    sa.Column("target_quantity", sa.Numeric),
    sa.Column("job_id", sa.String(128)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

#: The values of list properties (``swap_open_returns``) the target appended to or unappended
#: from each profile, as Klaviyo holds them: who is flagged now (``state`` ``appended``), without
#: keeping emails (the identity is stored masked). Unappended values stay (``unappended``), so
#: that an append is never sent twice and an unappend never sent for a value already gone.
profile_lists = sa.Table(
    "profile_lists",
    metadata,
    sa.Column("profile_hash", sa.String(64), primary_key=True),
    sa.Column("property", sa.String(128), primary_key=True),
    sa.Column("value", sa.String(255), primary_key=True),
    sa.Column("masked_identity", sa.String(255)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, server_default="appended"),
)

#: One row per target run: its summary, for the health report and alerts.
runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(36), primary_key=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("summary", sa.Text),
    sa.Column("error", sa.Text),
)

#: Alembic's version table, named apart from ``alembic_version`` so that a ledger may share a
#: Postgres database with Meltano's system database (which has its own).
VERSION_TABLE = "ledger_schema_version"
#: The revision whose tables 0.1.0 created without a version table.
FIRST_RELEASE = "0001"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: A profile_lists row's state.
APPENDED = "appended"
UNAPPENDED = "unappended"

ACCEPTED = "accepted"
DEDUPLICATED = "deduplicated"
REJECTED = "rejected"
FAILED_PROFILE_IMPORT = "failed_profile_import"
HELD = "held"
MAPPER_EXCEPTION = "mapper_exception"
INVALID_RECORD = "invalid_record"
SKIPPED = "skipped"

#: Outcomes a person may need to act on (and that a replay can resend, except mapper exceptions).
SET_ASIDE = (REJECTED, FAILED_PROFILE_IMPORT, HELD, MAPPER_EXCEPTION, INVALID_RECORD)


#: The advisory lock's key: 0.1.0's for the ``public`` schema (a run of either release excludes
#: the other), the schema's name added for any other.
_LOCK_KEY_SQL = (
    "'target-klaviyo ledger' || CASE WHEN coalesce(current_schema(), 'public') = 'public' "
    "THEN '' ELSE ':' || current_schema() END"
)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def profile_hash(identity: Mapping[str, Any]) -> str:
    """A stable pseudonym for a profile identity, so the ledger holds no raw email."""
    email = (identity.get("email") or "").strip().lower()
    key = email or identity.get("phone_number") or identity.get("external_id") or ""
    return hashlib.sha256(str(key).encode()).hexdigest()


def to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"), sort_keys=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    msg = f"cannot serialise {type(value).__name__}"
    raise TypeError(msg)


@dataclass(frozen=True)
class ListChange:
    """One value appended to or unappended from a profile's list property, once accepted."""

    profile_hash: str
    masked_identity: str | None
    property: str
    value: Any
    operation: str  # "append" or "unappend"


@dataclass
class Outcome:
    """What happened to one record, as the ledger stores it."""

    stream: str
    record_key: str
    outcome: str
    reason: str | None = None
    detail: str | None = None
    metric: str | None = None
    source_id: str | None = None
    profile_hash: str | None = None
    source_time: datetime | None = None
    event_time: datetime | None = None
    payload: Mapping[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Ledger:
    """Thread-safe access to the ledger tables (sinks drain in parallel threads)."""

    def __init__(self, url: str, *, run_id: str | None = None, read_only: bool = False) -> None:
        self.url = url
        self.run_id = run_id or str(uuid.uuid4())
        #: A dry run reads the ledger (to send exactly what a real run would) but writes nothing.
        self.read_only = read_only
        self._file_lock: FileLock | None = None
        self._lock_connection: sa.Connection | None = None
        _prepare_sqlite_file(url)
        # hide_parameters: a database error must not print set-aside payloads (personal data).
        self.engine: Engine = sa.create_engine(url, future=True, hide_parameters=True)
        self._lock = threading.Lock()

    def close(self) -> None:
        self.release_run()
        self.engine.dispose()

    # -- schema versions -----------------------------------------------------------------------

    @property
    def schema_version(self) -> str | None:
        """The ledger's schema revision (``0002``), ``0001`` for an unversioned 0.1.0 ledger."""
        with self.engine.connect() as conn:
            return _schema_revision(conn)

    def migrate(self) -> str:
        """Bring the ledger to this release's schema; return the revision it is at.

        The caller holds the run lock (:meth:`lock_run`), so no other run reads or writes while a
        revision changes a table. A ledger 0.1.0 created (tables, no version table) is stamped
        ``0001`` first, then upgraded like any other. A read-only ledger (a dry run) may not be
        changed: it is only checked, and one behind this release is refused. An empty database
        gets the current schema either way, as the first run always did.
        """
        with self.engine.begin() as conn:
            current = _schema_revision(conn)
            head = head_revision()
            _refuse_unknown(current)
            if current == head:
                return head
            if self.read_only and current is not None:
                msg = (
                    f"the ledger's schema is at revision {current} and this release of "
                    f"target-klaviyo needs {head}; a dry run does not change the ledger: run "
                    "target-klaviyo once without dry_run (or `klaviyo-ops schema --upgrade`) "
                    "to upgrade it, then dry-run again"
                )
                raise LedgerSchemaError(msg)
            from alembic import command  # noqa: PLC0415 - only to migrate, not every run

            config = alembic_config(conn)
            if _stored_revision(conn) is None and current == FIRST_RELEASE:
                command.stamp(config, FIRST_RELEASE)
            command.upgrade(config, "head")
        return head

    def ensure_current(self, lock_timeout: float) -> str:
        """For commands between runs: migrate under the run lock, held only if it is needed.

        A ledger at this release's schema is used as it is, without waiting for a run that holds
        the lock. One behind waits up to ``lock_timeout`` seconds for the lock (a run in progress
        may be migrating it itself), then upgrades, or refuses clearly.
        """
        head = head_revision()
        current = self.schema_version
        _refuse_unknown(current)
        if current == head:
            return head
        if not self.lock_run(lock_timeout):
            msg = (
                f"the ledger's schema is at revision {current} and this release needs {head}, "
                f"but a run has held the ledger for {lock_timeout:.0f} s: try again once it "
                "ends (a run upgrades the ledger itself at start-up)"
            )
            raise LedgerSchemaError(msg)
        try:
            return self.migrate()
        finally:
            self.release_run()

    # -- one run at a time ---------------------------------------------------------------------

    def lock_run(self, timeout: float) -> bool:
        """Hold the ledger for this run: two runs never deliver at once, even started together.

        Meltano refuses a second run of a pipeline whose state id has a running job, but checks
        and records in two steps, so two runs started in the same instant can both pass; two
        targets writing the same ledger could then apply one restock twice. A SQLite ledger is
        locked with a lock file beside it, a Postgres one with an advisory lock keyed by the
        ledger's schema (a brand per schema never waits for another's run; advisory locks are
        per database already). Returns False when another run held it for longer than
        ``timeout`` seconds.
        """
        parsed = make_url(self.url)
        backend = parsed.get_backend_name()
        if backend == "sqlite" and parsed.database and parsed.database != ":memory:":
            self._file_lock = FileLock(f"{parsed.database}.lock", mode=0o600)
            try:
                self._file_lock.acquire(timeout=timeout)
            except Timeout:
                return False
            return True
        if backend == "postgresql":
            self._lock_connection = self.engine.connect()
            deadline = time.monotonic() + timeout
            query = sa.text(f"SELECT pg_try_advisory_lock(hashtext({_LOCK_KEY_SQL}))")
            while not self._lock_connection.execute(query).scalar():
                if time.monotonic() > deadline:
                    self._lock_connection.close()
                    self._lock_connection = None
                    return False
                time.sleep(min(1.0, max(timeout, 0.05)))
        return True

    def release_run(self) -> None:
        if self._file_lock is not None and self._file_lock.is_locked:
            self._file_lock.release()
        if self._lock_connection is not None:
            # Closing gives the session back to the pool, still holding the lock: unlock first.
            unlock = sa.text(f"SELECT pg_advisory_unlock(hashtext({_LOCK_KEY_SQL}))")
            self._lock_connection.execute(unlock)
            self._lock_connection.close()
            self._lock_connection = None

    # -- outcomes ------------------------------------------------------------------------------

    def record(self, outcomes: Iterable[Outcome]) -> None:
        if self.read_only:
            return
        now = utcnow()
        rows = [self._row(o, now) for o in outcomes]
        if not rows:
            return
        with self._lock, self.engine.begin() as conn:
            conn.execute(deliveries.insert(), rows)

    def _row(self, o: Outcome, now: datetime) -> dict[str, Any]:
        """One outcome as a row every database stores: bounded, without NUL or lone surrogates.

        The values come from the input (a set-aside record may hold anything). Postgres refuses
        a NUL in text and a string longer than its column with ``DataError``, and a lone
        surrogate cannot be encoded at all; raised after Klaviyo accepted the records, that
        would stop every run on the same input. So each text is made storable here.
        """
        return {
            "run_id": self.run_id,
            "stream": storable(o.stream, 64) or "(unknown)",
            "record_key": storable(o.record_key, 255) or "(missing)",
            "outcome": storable(o.outcome, 32),
            "reason": storable(o.reason, 128),
            "detail": storable(o.detail),
            "metric": storable(o.metric, 128),
            "source_id": storable(o.source_id, 255),
            "profile_hash": storable(o.profile_hash, 64),
            "source_time": storable_time(o.source_time),
            "event_time": storable_time(o.event_time),
            "recorded_at": now,
            # Payloads (personal data) are kept only where a person may need to replay them.
            "payload": None
            if o.outcome in (ACCEPTED, DEDUPLICATED) or o.payload is None
            else _payload_text(o.payload),
        }

    def already_accepted(
        self, stream: str, keys: Sequence[str]
    ) -> set[tuple[str, str | None, str | None]]:
        """``(key, profile_hash, metric)`` of the records among ``keys`` accepted earlier.

        Klaviyo keeps one event per profile, metric and ``unique_id``: the same id for another
        profile or metric is another event, so a key alone does not say it was delivered.
        """
        # Rows keep a key as storable text (a NUL in it would make PostgreSQL refuse the query).
        asked = {storable(key, 255) or "": key for key in keys}
        found: set[tuple[str, str | None, str | None]] = set()
        with self._lock, self.engine.connect() as conn:
            for chunk in chunked(list(asked), 500):
                query = sa.select(
                    deliveries.c.record_key, deliveries.c.profile_hash, deliveries.c.metric
                ).where(
                    deliveries.c.stream == stream,
                    deliveries.c.outcome == ACCEPTED,
                    deliveries.c.record_key.in_(chunk),
                )
                found.update((asked[row[0]], row[1], row[2]) for row in conn.execute(query))
        return found

    # -- profile ordering ----------------------------------------------------------------------

    def profile_as_of(self, hashes: Sequence[str]) -> dict[str, datetime]:
        result: dict[str, datetime] = {}
        with self._lock, self.engine.connect() as conn:
            for chunk in chunked(list(hashes), 500):
                query = sa.select(profile_versions.c.profile_hash, profile_versions.c.as_of).where(
                    profile_versions.c.profile_hash.in_(chunk)
                )
                for key, as_of in conn.execute(query):
                    result[key] = as_of if as_of.tzinfo else as_of.replace(tzinfo=timezone.utc)
        return result

    def set_profile_as_of(self, versions: Mapping[str, datetime]) -> None:
        """Remember the newest ``as_of`` applied per profile (never moving one backwards)."""
        if not versions or self.read_only:
            return
        now = utcnow()
        rows = [{"profile_hash": k, "as_of": v, "updated_at": now} for k, v in versions.items()]
        table = profile_versions

        def newer(excluded: Any) -> dict[str, Any]:
            keep = sa.case((excluded.as_of > table.c.as_of, excluded.as_of), else_=table.c.as_of)
            return {"as_of": keep, "updated_at": excluded.updated_at}

        with self._lock, self.engine.begin() as conn:
            self._upsert(conn, table, rows, newer)

    def apply_list_operations(self, changes: Iterable[ListChange]) -> None:
        """Mirror accepted appends and unappends, so that the ledger knows who is flagged now.

        An unappended value keeps its row (state ``unappended``): knowing it is gone is what lets
        the next run skip a second unappend, as an ``appended`` row skips a second append.
        """
        changes = list(changes)
        if self.read_only or not changes:
            return
        now = utcnow()
        # The last operation on a value wins (a merged update holds one per value).
        final: dict[tuple[str, str, str], ListChange] = {}
        for change in changes:
            final[list_key(change.profile_hash, change.property, change.value)] = change
        rows = [
            {
                "profile_hash": h,
                "property": p,
                "value": v,
                "masked_identity": c.masked_identity,
                "updated_at": now,
                "state": APPENDED if c.operation == "append" else UNAPPENDED,
            }
            for (h, p, v), c in final.items()
        ]
        with self._lock, self.engine.begin() as conn:
            self._upsert(
                conn,
                profile_lists,
                rows,
                lambda excluded: {
                    "masked_identity": excluded.masked_identity,
                    "updated_at": excluded.updated_at,
                    "state": excluded.state,
                },
            )

    def list_states(self, hashes: Sequence[str]) -> dict[tuple[str, str, str], str]:
        """The mirror's state of every list value of these profiles, by :func:`list_key`.

        A value without a row is unknown: the target never changed it, or 0.1.0 deleted it
        when it was unappended.
        """
        result: dict[tuple[str, str, str], str] = {}
        table = profile_lists
        with self._lock, self.engine.connect() as conn:
            for chunk in chunked(sorted(set(hashes)), 500):
                query = sa.select(
                    table.c.profile_hash, table.c.property, table.c.value, table.c.state
                ).where(table.c.profile_hash.in_(chunk))
                for key, prop, value, found in conn.execute(query):
                    result[(key, prop, value)] = found
        return result

    def _upsert(
        self,
        conn: sa.Connection,
        table: sa.Table,
        rows: list[dict[str, Any]],
        updates: Callable[[Any], dict[str, Any]],
    ) -> None:
        """Insert rows, or update those whose primary key exists, in one statement per batch.

        SQLite and Postgres say it with ``ON CONFLICT ... DO UPDATE``; other databases get an
        update-then-insert per row.
        """
        dialect = conn.dialect.name
        if dialect in ("sqlite", "postgresql"):
            module = sqlite_dialect if dialect == "sqlite" else postgresql_dialect
            statement = module.insert(table)
            keys = [column.name for column in table.primary_key.columns]
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=keys, set_=updates(statement.excluded)
                ),
                rows,
            )
            return
        for row in rows:
            where = [table.c[c.name] == row[c.name] for c in table.primary_key.columns]
            if conn.execute(table.update().where(*where).values(**row)).rowcount == 0:
                conn.execute(table.insert().values(**row))

    def list_members(self, property_name: str) -> list[dict[str, Any]]:
        """Profiles whose list property holds values now: hash, masked identity, values, when."""
        query = (
            sa.select(profile_lists)
            .where(profile_lists.c.property == property_name, profile_lists.c.state == APPENDED)
            .order_by(profile_lists.c.profile_hash, profile_lists.c.updated_at)
        )
        members: dict[str, dict[str, Any]] = {}
        with self._lock, self.engine.connect() as conn:
            for row in conn.execute(query).mappings():
                member = members.setdefault(
                    row["profile_hash"],
                    {"profile_hash": row["profile_hash"], "values": [], "updated_at": None},
                )
                member["values"].append(row["value"])
                member["masked_identity"] = row["masked_identity"]
                member["updated_at"] = as_utc(row["updated_at"])
        return list(members.values())

    # -- restocks ------------------------------------------------------------------------------

    def restocks(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The restock rows of these keys, by the caller's key (stored by :func:`restock_key`)."""
        asked = {restock_key(key): key for key in keys}
        result: dict[str, dict[str, Any]] = {}
        with self._lock, self.engine.connect() as conn:
            for chunk in chunked(list(asked), 500):
                query = sa.select(restocks).where(restocks.c.restock_key.in_(chunk))
                for row in conn.execute(query).mappings():
                    result[asked[row["restock_key"]]] = dict(row)
        return result

    def pending_restocks(self) -> list[dict[str, Any]]:
        with self._lock, self.engine.connect() as conn:
            query = sa.select(restocks).where(restocks.c.status == "pending")
            return [dict(row) for row in conn.execute(query).mappings()]

    def save_restocks(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Insert or update restock rows (keyed by ``restock_key``)."""
        if self.read_only:
            return
        now = utcnow()
        values = [
            {**row, "restock_key": restock_key(row["restock_key"]), "updated_at": now}
            for row in rows
        ]
        if not values:
            return
        columns = set(values[0])

        def replace(excluded: Any) -> dict[str, Any]:
            return {c: excluded[c] for c in columns if c != "restock_key"}

        with self._lock, self.engine.begin() as conn:
            self._upsert(conn, restocks, values, replace)

    def forget_restocks(self, keys: Sequence[str]) -> None:
        if self.read_only or not keys:
            return
        with self._lock, self.engine.begin() as conn:
            for chunk in chunked([restock_key(key) for key in keys], 500):
                conn.execute(restocks.delete().where(restocks.c.restock_key.in_(chunk)))

    # -- runs ----------------------------------------------------------------------------------

    def start_run(self) -> None:
        if self.read_only:
            return
        with self._lock, self.engine.begin() as conn:
            conn.execute(
                runs.insert().values(run_id=self.run_id, started_at=utcnow(), status="running")
            )

    def finish_run(self, status: str, summary: Mapping[str, Any]) -> None:
        if self.read_only:
            return
        with self._lock, self.engine.begin() as conn:
            conn.execute(
                runs.update()
                .where(runs.c.run_id == self.run_id)
                .values(finished_at=utcnow(), status=status, summary=to_json(summary))
            )

    def new_set_aside(self) -> dict[str, int]:
        """This run's set-aside records, by reason, that no earlier run had set aside."""
        current = deliveries.alias("current")
        earlier = deliveries.alias("earlier")
        seen_before = sa.exists().where(
            earlier.c.stream == current.c.stream,
            earlier.c.record_key == current.c.record_key,
            earlier.c.run_id != self.run_id,
            earlier.c.outcome.in_(SET_ASIDE),
        )
        reason = sa.func.coalesce(current.c.reason, current.c.outcome)
        query = (
            sa.select(reason, sa.func.count(sa.distinct(current.c.record_key)))
            .where(current.c.run_id == self.run_id, current.c.outcome.in_(SET_ASIDE), ~seen_before)
            .group_by(reason)
        )
        with self._lock, self.engine.connect() as conn:
            return {str(r): int(n) for r, n in conn.execute(query)}

    # -- people's tools: dead letters, replay, retention ---------------------------------------

    def last_delivery_id(self) -> int:
        """The id of the newest delivery row (0 for none): where a replay's work ends."""
        with self._lock, self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(deliveries.c.id))).scalar() or 0)

    def mark_replayed(self, ids: Sequence[int]) -> None:
        if self.read_only:
            return
        with self._lock, self.engine.begin() as conn:
            for start in range(0, len(ids), 500):
                conn.execute(
                    deliveries.update()
                    .where(deliveries.c.id.in_(ids[start : start + 500]))
                    .values(replayed_at=utcnow())
                )

    def purge(self, retention_days: float) -> int:
        """Clear payloads (personal data) older than the retention period; return how many.

        A read-only ledger (a dry run) is left as it is, like every other write: the target
        purges at start-up, before it knows whether anything will be sent.
        """
        if self.read_only:
            return 0
        cutoff = utcnow() - timedelta(days=retention_days)
        with self._lock, self.engine.begin() as conn:
            result = conn.execute(
                deliveries.update()
                .where(deliveries.c.recorded_at < cutoff, deliveries.c.payload.is_not(None))
                .values(payload=None)
            )
        return int(result.rowcount or 0)


class LedgerSchemaError(RuntimeError):
    """The ledger's schema cannot be used or upgraded by this run; the message says why."""


def alembic_config(connection: sa.Connection) -> Config:
    """Alembic's configuration in code: the package's revisions, run on ``connection``."""
    from alembic.config import Config  # noqa: PLC0415 - only to migrate, not every run

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@cache
def shipped_revisions() -> dict[str, str | None]:
    """Each revision this release ships and the one it follows, from its file's own lines.

    Every run checks the ledger's revision; importing Alembic's script and runtime machinery to
    learn it cost each run about 0.3 CPU seconds, so Alembic is imported only to migrate. The
    revision files keep Alembic's plain ``revision = "0002"`` and ``down_revision = "0001"``
    lines; a test checks this reading against Alembic's own ``ScriptDirectory``.
    """
    found: dict[str, str | None] = {}
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        revision = _REVISION_LINE.search(text)
        down = _DOWN_REVISION_LINE.search(text)
        if revision is None or down is None:
            msg = f"{path.name}: no plain revision/down_revision line"
            raise LedgerSchemaError(msg)
        found[revision.group(1)] = down.group(2)
    return found


_REVISION_LINE = re.compile(r'^revision(?:\s*:[^=\n]*)?\s*=\s*"([^"]+)"', re.MULTILINE)
_DOWN_REVISION_LINE = re.compile(
    r'^down_revision(?:\s*:[^=\n]*)?\s*=\s*(None|"([^"]+)")', re.MULTILINE
)


def head_revision() -> str:
    """The schema revision this release of target-klaviyo reads and writes."""
    revisions = shipped_revisions()
    heads = set(revisions) - set(revisions.values())
    assert len(heads) == 1, heads  # the package ships one line of revisions
    return heads.pop()


def _stored_revision(conn: sa.Connection) -> str | None:
    """The version table's revision (what Alembic's ``get_current_revision`` reads), or None."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    query = sa.text(f"SELECT version_num FROM {VERSION_TABLE}")  # noqa: S608 - a constant
    rows = conn.execute(query).scalars().all()
    if len(rows) > 1:
        msg = f"the ledger's {VERSION_TABLE} table holds {len(rows)} revisions; expected one"
        raise LedgerSchemaError(msg)
    return str(rows[0]) if rows else None


def _schema_revision(conn: sa.Connection) -> str | None:
    """The revision a ledger is at: its version table, ``0001`` without one but with tables."""
    current = _stored_revision(conn)
    if current is None and _has_ledger_tables(conn):
        return FIRST_RELEASE
    return current


def _has_ledger_tables(conn: sa.Connection) -> bool:
    return deliveries.name in sa.inspect(conn).get_table_names()


def _refuse_unknown(revision: str | None) -> None:
    """A ledger written by a newer release: this one must not read or write it."""
    if revision is not None and revision not in shipped_revisions():
        msg = (
            f"the ledger's schema is at revision {revision}, written by a newer release of "
            f"target-klaviyo than this one (which knows up to {head_revision()}): run that "
            "release, or restore the backup taken before upgrading"
        )
        raise LedgerSchemaError(msg)


def list_key(profile: str, property_name: str, value: Any) -> tuple[str, str, str]:
    """How the list mirror keys a value: its columns' lengths, the value as storable text.

    A NUL in a value (an RMA number from Swap) would make PostgreSQL refuse the whole batch
    after Klaviyo accepted it; lookups key the same way, so the mirror still finds it.
    """
    return (profile, storable(property_name, 128) or "", storable(value, 255) or "")


def restock_key(key: str) -> str:
    """A restock key as the ledger stores it (see :func:`storable`): lookups use the same."""
    return storable(key, 255) or ""


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: Any, limit: int | None = None) -> str | None:
    """``value`` as text any database stores (None stays None).

    NUL and lone surrogates become U+FFFD; at most ``limit`` characters are kept.
    """
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    # ASCII text (the usual key, stream or reason) holds no surrogate: only NUL is looked for,
    # a scan in C, where the substitution costs a regular expression per value.
    if not text.isascii() or "\x00" in text:
        text = _UNSTORABLE.sub("\ufffd", text)
    return text if limit is None else text[:limit]


#: Times a ledger row keeps: a set-aside record may carry year 1 or 9999 (with an offset, past
#: what Python reads back from PostgreSQL); those are kept in its payload and detail only.
STORABLE_TIMES = (
    datetime(1900, 1, 1, tzinfo=timezone.utc),
    datetime(2200, 1, 1, tzinfo=timezone.utc),
)


def storable_time(value: datetime | None) -> datetime | None:
    """``value`` when a database stores and reads it back, else None."""
    if value is None:
        return None
    aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    earliest, latest = STORABLE_TIMES
    return value if earliest <= aware <= latest else None


def _payload_text(payload: Mapping[str, Any]) -> str:
    """The payload as JSON (which escapes NUL and surrogates), or a note of why it is not kept."""
    try:
        return to_json(payload)
    except (TypeError, ValueError, RecursionError) as error:
        return to_json({"payload_not_kept": type(error).__name__})


def chunked(items: list[str], size: int) -> Iterator[list[str]]:
    """Consecutive slices of at most ``size`` items (``IN`` lists, lookups, jobs)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def as_utc(value: datetime | str | None) -> datetime | None:
    """An aware UTC datetime from the SDK's datetimes, ISO strings, or SQLite's naive values."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _prepare_sqlite_file(url: str) -> None:
    """Create a SQLite ledger readable by its owner only, before SQLAlchemy opens it."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return
    if parsed.database == ":memory:":
        return
    path = Path(parsed.database)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    os.chmod(path, 0o600)
