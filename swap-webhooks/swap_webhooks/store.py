"""The receiver's durable state in SQLite: deliveries, the runs that handled them, and counters.

A delivery is committed (``synchronous=FULL``) before Swap gets its 200, so an accepted webhook
survives a crash or restart of the receiver; a delivery claimed by a run that never finished goes
back to ``pending`` when the receiver starts again. The unique ``nonce`` is what turns Swap's
at-least-once redeliveries into a no-op.

Rows hold ids and times only (no customer data, no secret), yet the file is made owner-only: it
tells which orders were returned when. One receiver at a time may use a file, which an exclusive
lock on ``<state_db>.lock`` enforces.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from swap_webhooks.verify import Delivery, Reason

#: ``PRAGMA user_version`` of a current state db. Version 1 is the 0.1.0 release's schema (which
#: said so only in ``meta.schema_version``); each later version is one entry of ``_MIGRATIONS``.
SCHEMA_VERSION = 3

PENDING = "pending"
CLAIMED = "claimed"
HANDLED = "handled"

#: A run's outcome: while it runs, then the pipeline's ``run outcome:`` (decisions §2).
RUNNING = "running"
SUCCEEDED = "succeeded"
SET_ASIDE_OVER_THRESHOLD = "set_aside_over_threshold"
MAPPING_ERRORS_HELD = "mapping_errors_held"
THROTTLE_DEADLINE = "throttle_deadline"
AUTH_FAILED = "auth_failed"
ALREADY_RUNNING = "already_running"
CRASHED = "crashed"
INTERRUPTED = "interrupted"
#: Runs recorded by 0.1.0 as ``failed``: a failure whose cause it did not know.
FAILED = "failed"
OUTCOMES = (
    SUCCEEDED,
    SET_ASIDE_OVER_THRESHOLD,
    MAPPING_ERRORS_HELD,
    THROTTLE_DEADLINE,
    AUTH_FAILED,
    ALREADY_RUNNING,
    CRASHED,
    INTERRUPTED,
    FAILED,
)
#: The run read every return it was started for: its deliveries are handled. What it set aside or
#: held is in the ledger, alerted by the target, and re-read by later runs while held.
HANDLED_OUTCOMES = frozenset({SUCCEEDED, SET_ASIDE_OVER_THRESHOLD, MAPPING_ERRORS_HELD})

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    outcome TEXT NOT NULL,
    exit_code INTEGER,
    deliveries INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    nonce TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    return_id TEXT NOT NULL,
    order_id TEXT,
    received_at TEXT NOT NULL,
    expires_at REAL NOT NULL,
    status TEXT NOT NULL,
    run_id INTEGER REFERENCES runs (id),
    attempts INTEGER NOT NULL DEFAULT 0,
    handled_at TEXT
);
CREATE INDEX IF NOT EXISTS ix_deliveries_status ON deliveries (status);
CREATE INDEX IF NOT EXISTS ix_deliveries_return ON deliveries (return_id);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

#: Run diagnostics (issue 9): how long, the end of the output, where the whole output is, why it
#: ended when the pipeline did not say, and how many tries another run's claim refused first.
#: Outcomes take the pipeline's names: 0.1.0's ``locked_out`` is ``already_running``.
_SCHEMA_V2 = """
ALTER TABLE runs ADD COLUMN duration_seconds REAL;
ALTER TABLE runs ADD COLUMN output_tail TEXT;
ALTER TABLE runs ADD COLUMN log_file TEXT;
ALTER TABLE runs ADD COLUMN note TEXT;
ALTER TABLE runs ADD COLUMN refusals INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET outcome = 'already_running' WHERE outcome = 'locked_out';
UPDATE counters SET name = 'runs.already_running' WHERE name = 'runs.locked_out';
"""

#: A run launched on Dagster (``dagster_url``): the id of Dagster's run, once Dagster accepted it.
_SCHEMA_V3 = """
ALTER TABLE runs ADD COLUMN dagster_run_id TEXT;
"""

#: ``version -> statements`` that bring a db at ``version - 1`` to ``version``.
_MIGRATIONS = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3}

COUNTERS = (
    "accepted",
    "redelivered",
    "coalesced",
    *(f"refused.{reason.key}" for reason in Reason),
    "runs.started",
    *(f"runs.{outcome}" for outcome in OUTCOMES),
)

#: ``meta`` keys set when the staleness alert is sent (when, and the last run's outcome it
#: named: a new one alerts again); a successful run deletes them.
STALE_ALERT_KEY = "alert.stale_sent_at"
STALE_OUTCOME_KEY = "alert.stale_outcome"

#: The columns ``runs()`` returns, in order.
RUN_COLUMNS = (
    "id",
    "started_at",
    "ended_at",
    "outcome",
    "exit_code",
    "deliveries",
    "duration_seconds",
    "refusals",
    "note",
    "log_file",
    "output_tail",
    "dagster_run_id",
)


class StoreVersionError(RuntimeError):
    """The state db was written by a newer release: opening it here could lose what it holds."""


@dataclass(frozen=True)
class RunReport:
    """How a run ended, and what to read about it (no customer data: the pipeline's own log)."""

    outcome: str
    exit_code: int | None
    duration_seconds: float | None = None
    refusals: int = 0
    note: str | None = None
    log_file: str | None = None
    output_tail: str | None = None


class StoreInUseError(RuntimeError):
    """Another receiver holds this state db: two would start overlapping runs."""


@dataclass(frozen=True)
class Claim:
    """A run and the deliveries it took on."""

    run_id: int
    deliveries: int


def utc_iso(timestamp: float) -> str:
    """ISO 8601 in UTC with microseconds: sorts as text, and compares with the ledger's times."""
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="microseconds")


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class DeliveryStore:
    """Thread-safe: request handlers and the runner share one connection under a lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = _exclusive_lock(self.path.with_name(self.path.name + ".lock"))
        try:
            _create_owner_only(self.path)
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
        except BaseException:
            self._lock_file.close()
            raise
        self._lock = threading.Lock()
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except BaseException:
            self._db.close()
            self._lock_file.close()
            raise
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(self.path.with_name(self.path.name + suffix), 0o600)

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._lock_file.close()

    def __enter__(self) -> DeliveryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- deliveries ------------------------------------------------------------------------------

    def add(self, delivery: Delivery, received_at: float) -> bool:
        """Persist an accepted delivery; False when its nonce was seen before (a redelivery)."""
        return self.add_many([(delivery, received_at)])[0]

    def add_many(
        self,
        deliveries: Sequence[tuple[Delivery, float]],
        refusals: Mapping[Reason, int] | None = None,
    ) -> list[bool]:
        """Persist deliveries (and count refusals) that came together: one fsync, not one each.

        A burst's answers wait for its commits (``synchronous=FULL``); committed one by one, 200
        deliveries queued behind 200 fsyncs. Per delivery, the same as :meth:`add`.
        """
        results = []
        with self._transaction() as db:
            for reason, count in (refusals or {}).items():
                _bump(db, f"refused.{reason.key}", count)
            for delivery, received_at in deliveries:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO deliveries (nonce, event, return_id, order_id,"
                    " received_at, expires_at, status) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        delivery.nonce,
                        delivery.event,
                        delivery.return_id,
                        delivery.order_id,
                        utc_iso(received_at),
                        delivery.expires_at,
                        PENDING,
                    ),
                )
                new = cursor.rowcount == 1
                _bump(db, "accepted" if new else "redelivered")
                results.append(new)
        return results

    def count_refusal(self, reason: Reason) -> None:
        with self._transaction() as db:
            _bump(db, f"refused.{reason.key}")

    def pending(self) -> int:
        return self._count("SELECT COUNT(*) FROM deliveries WHERE status = ?", PENDING)

    # -- runs ------------------------------------------------------------------------------------

    def claim(self) -> Claim | None:
        """Start a run that takes on every pending delivery; None when there is none."""
        with self._transaction() as db:
            waiting = _scalar(db, "SELECT COUNT(*) FROM deliveries WHERE status = ?", PENDING)
            if not waiting:
                return None
            run_id = db.execute(
                "INSERT INTO runs (started_at, outcome, deliveries) VALUES (?, ?, ?)",
                (_now_iso(), RUNNING, waiting),
            ).lastrowid
            assert run_id is not None
            db.execute(
                "UPDATE deliveries SET status = ?, run_id = ?, attempts = attempts + 1"
                " WHERE status = ?",
                (CLAIMED, run_id, PENDING),
            )
            _bump(db, "runs.started")
        return Claim(run_id, waiting)

    def finish(self, run_id: int, report: RunReport) -> None:
        """Record a run's end: its deliveries are handled, or go back to wait for the next run."""
        now = _now_iso()
        with self._transaction() as db:
            handled = _scalar(
                db, "SELECT deliveries FROM runs WHERE id = ? AND outcome = ?", run_id, RUNNING
            )
            db.execute(
                "UPDATE runs SET ended_at = ?, outcome = ?, exit_code = ?, duration_seconds = ?,"
                " refusals = ?, note = ?, log_file = ?, output_tail = ? WHERE id = ?",
                (
                    now,
                    report.outcome,
                    report.exit_code,
                    report.duration_seconds,
                    report.refusals,
                    report.note,
                    report.log_file,
                    report.output_tail,
                    run_id,
                ),
            )
            if report.outcome in HANDLED_OUTCOMES:
                db.execute(
                    "UPDATE deliveries SET status = ?, handled_at = ? WHERE run_id = ?"
                    " AND status = ?",
                    (HANDLED, now, run_id, CLAIMED),
                )
                # Every delivery but the first rode along on a run another one started.
                if handled and handled > 1:
                    _bump(db, "coalesced", handled - 1)
                db.execute(
                    "DELETE FROM meta WHERE key IN (?, ?)", (STALE_ALERT_KEY, STALE_OUTCOME_KEY)
                )
            else:
                db.execute(
                    "UPDATE deliveries SET status = ?, run_id = NULL WHERE run_id = ?"
                    " AND status = ?",
                    (PENDING, run_id, CLAIMED),
                )
            _bump(db, f"runs.{report.outcome}")

    def record_dagster_run(self, run_id: int, dagster_run_id: str) -> None:
        """Dagster accepted the launch of this run: its id, to follow it (and to show it)."""
        with self._transaction() as db:
            db.execute("UPDATE runs SET dagster_run_id = ? WHERE id = ?", (dagster_run_id, run_id))

    def unfinished_dagster_runs(self) -> list[tuple[int, int, str]]:
        """``(run id, deliveries, Dagster run id)`` of runs launched on Dagster and not ended."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, deliveries, dagster_run_id FROM runs WHERE outcome = ?"
                " AND dagster_run_id IS NOT NULL ORDER BY id",
                (RUNNING,),
            ).fetchall()
        return [(int(run), int(count), str(launched)) for run, count, launched in rows]

    def count_refusal_of_run(self) -> None:
        """A try of the current run that another run's claim refused (it tries again)."""
        with self._transaction() as db:
            _bump(db, f"runs.{ALREADY_RUNNING}")

    def recover(self) -> int:
        """After a stop or crash mid-run: that run is over, its deliveries wait again."""
        with self._transaction() as db:
            rows = db.execute("SELECT id FROM runs WHERE outcome = ?", (RUNNING,)).fetchall()
        stale = [row[0] for row in rows]
        for run_id in stale:
            self.finish(run_id, RunReport(INTERRUPTED, None, note="the receiver stopped"))
        return len(stale)

    def prune(self, retention_days: float, now: float) -> int:
        """Forget handled deliveries (and their runs) older than the retention period.

        A delivery whose token has not expired stays whatever its age: its nonce is what stops a
        redelivery from starting a run again.
        """
        cutoff = utc_iso(now - timedelta(days=retention_days).total_seconds())
        with self._transaction() as db:
            removed = db.execute(
                "DELETE FROM deliveries WHERE status = ? AND received_at < ? AND expires_at < ?",
                (HANDLED, cutoff, now),
            ).rowcount
            db.execute(
                "DELETE FROM runs WHERE outcome != ? AND started_at < ? AND id NOT IN"
                " (SELECT run_id FROM deliveries WHERE run_id IS NOT NULL)",
                (RUNNING, cutoff),
            )
        return removed

    # -- reporting -------------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        with self._lock:
            rows = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        return {name: int(rows.get(name, 0)) for name in COUNTERS}

    def queue(self) -> dict[str, Any]:
        """How many deliveries wait, how many a run has taken on, and since when the oldest is."""
        with self._lock:
            rows = self._db.execute(
                "SELECT status, COUNT(*), MIN(received_at) FROM deliveries"
                " WHERE status != ? GROUP BY status",
                (HANDLED,),
            ).fetchall()
        by_status = {status: (count, oldest) for status, count, oldest in rows}
        oldest = [v[1] for v in by_status.values() if v[1]]
        return {
            "pending": by_status.get(PENDING, (0, None))[0],
            "in_run": by_status.get(CLAIMED, (0, None))[0],
            "oldest_received_at": min(oldest) if oldest else None,
        }

    def runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Runs, newest first."""
        query = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs ORDER BY id DESC"  # noqa: S608
        query += "" if limit is None else f" LIMIT {int(limit)}"
        with self._lock:
            rows = self._db.execute(query).fetchall()
        return [dict(zip(RUN_COLUMNS, row, strict=True)) for row in rows]

    def last_success(self) -> dict[str, Any] | None:
        """The newest run whose deliveries were handled."""
        marks = ", ".join("?" for _ in HANDLED_OUTCOMES)
        query = f"SELECT id, ended_at FROM runs WHERE outcome IN ({marks})"  # noqa: S608
        with self._lock:
            row = self._db.execute(
                query + " ORDER BY id DESC LIMIT 1", tuple(HANDLED_OUTCOMES)
            ).fetchone()
        return None if row is None else {"id": row[0], "ended_at": row[1]}

    def waiting_since(self) -> str | None:
        """Since when a successful run has been needed; None when nothing waits for one.

        That is the oldest delivery not handled, or the first run after the last success: a
        quiet store with no delivery to handle is not a stale pipeline.
        """
        success = self.last_success()
        after = 0 if success is None else int(success["id"])
        with self._lock:
            first_run = _scalar(self._db, "SELECT MIN(started_at) FROM runs WHERE id > ?", after)
            oldest = _scalar(
                self._db, "SELECT MIN(received_at) FROM deliveries WHERE status != ?", HANDLED
            )
        times = [t for t in (first_run, oldest) if t]
        return min(times) if times else None

    def stale_alert_sent(self) -> str | None:
        """When the staleness alert went out (cleared by the next successful run)."""
        with self._lock:
            return _scalar(self._db, "SELECT value FROM meta WHERE key = ?", STALE_ALERT_KEY)  # type: ignore[no-any-return]

    def stale_alert_outcome(self) -> str | None:
        """The last run's outcome that alert named (None: no run had ended yet)."""
        with self._lock:
            value = _scalar(self._db, "SELECT value FROM meta WHERE key = ?", STALE_OUTCOME_KEY)
        return str(value) if value else None

    def mark_stale_alert_sent(self, outcome: str | None = None) -> None:
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(STALE_ALERT_KEY, _now_iso()), (STALE_OUTCOME_KEY, outcome or "")],
            )

    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def deliveries(self) -> list[dict[str, Any]]:
        """Every delivery kept, oldest first (for tests and reports; no customer data in them)."""
        keys = ("id", "nonce", "event", "return_id", "received_at", "status", "run_id", "attempts")
        with self._lock:
            query = f"SELECT {', '.join(keys)} FROM deliveries ORDER BY id"  # noqa: S608
            rows = self._db.execute(query).fetchall()
        return [dict(zip(keys, row, strict=True)) for row in rows]

    # -- internals -------------------------------------------------------------------------------

    def _migrate(self) -> None:
        """Bring the file to :data:`SCHEMA_VERSION`, one version per transaction.

        A file newer than this release is refused rather than used: its columns would be
        ignored or its rows misread.
        """
        with self._lock:
            version = _stored_version(self._db)
            if version > SCHEMA_VERSION:
                msg = (
                    f"{self.path} has schema version {version}, newer than this release's"
                    f" {SCHEMA_VERSION}: upgrade swap-webhooks"
                )
                raise StoreVersionError(msg)
            for target in range(version + 1, SCHEMA_VERSION + 1):
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _statements(_MIGRATIONS[target]):
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {target}")
                    self._db.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                        (str(target),),
                    )
                    self._db.execute(
                        "INSERT OR IGNORE INTO meta (key, value) VALUES ('created_at', ?)",
                        (_now_iso(),),
                    )
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")

    def _count(self, query: str, *args: Any) -> int:
        with self._lock:
            return int(_scalar(self._db, query, *args) or 0)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")


def _stored_version(db: sqlite3.Connection) -> int:
    """``PRAGMA user_version``; 0.1.0 left it at 0 and wrote ``meta.schema_version`` = 1."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version:
        return version
    has_meta = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if not has_meta:
        return 0
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def _statements(script: str) -> list[str]:
    return [part.strip() for part in script.split(";") if part.strip()]


def _scalar(db: sqlite3.Connection, query: str, *args: Any) -> Any:
    row = db.execute(query, args).fetchone()
    return None if row is None else row[0]


def _bump(db: sqlite3.Connection, name: str, by: int = 1) -> None:
    db.execute(
        "INSERT INTO counters (name, value) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        (name, by),
    )


def _create_owner_only(path: Path) -> None:
    """Create the file 0600 before SQLite opens it (SQLite gives its -wal/-shm the same mode)."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def _exclusive_lock(path: Path) -> Any:
    handle = open(path, "a+")  # noqa: SIM115 - held open for the store's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        msg = f"another swap-webhooks receiver is using {path.with_suffix('')}"
        raise StoreInUseError(msg) from None
    return handle


def webhook_latencies(state_db: str | Path) -> list[tuple[str, datetime]]:
    """``(return_id, received_at)`` of every accepted delivery kept, in the order received.

    For the health report: join on the Klaviyo ledger (``deliveries.source_id`` = return id,
    ``recorded_at`` = Klaviyo's acceptance) and take, per delivery, the first acceptance at or
    after ``received_at``. A return can appear twice (``returnCreated``, then ``returnProcessed``).
    Opens the file read-only, so it is safe while a receiver runs.
    """
    uri = f"{Path(state_db).resolve().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        rows = db.execute("SELECT return_id, received_at FROM deliveries ORDER BY received_at, id")
        return [(return_id, datetime.fromisoformat(received)) for return_id, received in rows]
