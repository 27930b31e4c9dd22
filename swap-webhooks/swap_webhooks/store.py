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
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from swap_webhooks.verify import Delivery, Reason

SCHEMA_VERSION = 1

PENDING = "pending"
CLAIMED = "claimed"
HANDLED = "handled"

RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
LOCKED_OUT = "locked_out"
INTERRUPTED = "interrupted"

_SCHEMA = """
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

COUNTERS = (
    "accepted",
    "redelivered",
    "coalesced",
    *(f"refused.{reason.key}" for reason in Reason),
    "runs.started",
    "runs.succeeded",
    "runs.failed",
    "runs.locked_out",
    "runs.interrupted",
)


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
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()
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
        with self._transaction() as db:
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
        return new

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

    def finish(self, run_id: int, outcome: str, exit_code: int | None) -> None:
        """Record a run's end: its deliveries are handled, or go back to wait for the next run."""
        now = _now_iso()
        with self._transaction() as db:
            handled = _scalar(
                db, "SELECT deliveries FROM runs WHERE id = ? AND outcome = ?", run_id, RUNNING
            )
            db.execute(
                "UPDATE runs SET ended_at = ?, outcome = ?, exit_code = ? WHERE id = ?",
                (now, outcome, exit_code, run_id),
            )
            if outcome == SUCCEEDED:
                db.execute(
                    "UPDATE deliveries SET status = ?, handled_at = ? WHERE run_id = ?"
                    " AND status = ?",
                    (HANDLED, now, run_id, CLAIMED),
                )
                # Every delivery but the first rode along on a run another one started.
                if handled and handled > 1:
                    _bump(db, "coalesced", handled - 1)
            else:
                db.execute(
                    "UPDATE deliveries SET status = ?, run_id = NULL WHERE run_id = ?"
                    " AND status = ?",
                    (PENDING, run_id, CLAIMED),
                )
            _bump(db, f"runs.{outcome}")

    def recover(self) -> int:
        """After a stop or crash mid-run: that run is over, its deliveries wait again."""
        with self._transaction() as db:
            rows = db.execute("SELECT id FROM runs WHERE outcome = ?", (RUNNING,)).fetchall()
        stale = [row[0] for row in rows]
        for run_id in stale:
            self.finish(run_id, INTERRUPTED, None)
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
        query = "SELECT id, started_at, ended_at, outcome, exit_code, deliveries FROM runs"
        query += " ORDER BY id DESC" + ("" if limit is None else f" LIMIT {int(limit)}")
        with self._lock:
            rows = self._db.execute(query).fetchall()
        keys = ("id", "started_at", "ended_at", "outcome", "exit_code", "deliveries")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def deliveries(self) -> list[dict[str, Any]]:
        """Every delivery kept, oldest first (for tests and reports; no customer data in them)."""
        keys = ("id", "nonce", "event", "return_id", "received_at", "status", "run_id", "attempts")
        with self._lock:
            query = f"SELECT {', '.join(keys)} FROM deliveries ORDER BY id"  # noqa: S608
            rows = self._db.execute(query).fetchall()
        return [dict(zip(keys, row, strict=True)) for row in rows]

    # -- internals -------------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self._lock:
            # executescript commits on its own: run it outside an explicit transaction.
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('created_at', ?)", (_now_iso(),)
            )

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
