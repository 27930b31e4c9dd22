"""The atomic claim on a pipeline's state id, taken before any plugin starts.

Meltano's own guard (``JobFinder.latest_running`` then an insert of the job row) is a check then a
write: two runs started in the same instant both pass it. A claim here is one atomic operation
that the operating system or the database releases when its holder dies, so it never goes stale:

- SQLite system database: an exclusive ``flock`` on ``<system db>.claims/<state id>.lock``, beside
  the database (the file is on the machine that runs the pipelines, like the database);
- PostgreSQL system database: a session advisory lock (``pg_try_advisory_lock``) keyed by the
  state id, held by a connection the launcher keeps open for the whole command, so runs on
  different machines sharing the database are kept apart too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import os
import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

ADVISORY_NAMESPACE = b"swap-meltano:state-id:"


class AlreadyRunningError(Exception):
    """Another command holds the claim on this state id."""

    def __init__(self, state_id: str, holder: str) -> None:
        super().__init__(f"another run of {state_id} is in progress ({holder})")
        self.state_id = state_id


class ClaimError(RuntimeError):
    """The claim cannot be taken at all (no database driver, a database we cannot lock)."""


@contextlib.contextmanager
def claimed(state_ids: Sequence[str], database_uri: str) -> Iterator[list[int]]:
    """Hold every claim for the block; yield the file descriptors a child must inherit.

    Claims are taken in sorted order and never waited for: the first one held elsewhere raises
    :class:`AlreadyRunningError` after releasing those already taken.
    """
    if not state_ids:
        yield []
        return
    scheme = database_uri.split(":", 1)[0].split("+", 1)[0]
    if scheme == "sqlite":
        with _file_claims(sorted(state_ids), _claims_dir(database_uri)) as fds:
            yield fds
    elif scheme in ("postgresql", "postgres"):
        with _advisory_claims(sorted(state_ids), database_uri):
            yield []
    else:
        raise ClaimError(f"no atomic claim for a {scheme} system database")


def _claims_dir(database_uri: str) -> Path:
    path = database_uri.split(":///", 1)[1] if ":///" in database_uri else ""
    if not path or path == ":memory:":
        raise ClaimError("an in-memory SQLite system database cannot hold claims")
    db = Path(path.split("?", 1)[0])
    return db.with_name(db.name + ".claims")


@contextlib.contextmanager
def _file_claims(state_ids: list[str], folder: Path) -> Iterator[list[int]]:
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        handles = [stack.enter_context(_file_claim(folder, state_id)) for state_id in state_ids]
        yield [handle.fileno() for handle in handles]


@contextlib.contextmanager
def _file_claim(folder: Path, state_id: str) -> Iterator[TextIO]:
    handle = open(folder / lock_name(state_id), "a+")  # noqa: SIM115 - held for the block
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise AlreadyRunningError(state_id, handle.read().strip() or "holder unknown") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}")
        handle.flush()
        yield handle
    finally:
        handle.close()


def lock_name(state_id: str) -> str:
    """A file name for the state id: readable, and unique even where characters were replaced."""
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", state_id)[:100]
    digest = hashlib.sha256(state_id.encode()).hexdigest()[:12]
    return f"{readable}.{digest}.lock"


def advisory_key(state_id: str) -> int:
    """A signed 64-bit advisory lock key for the state id (stable across machines)."""
    digest = hashlib.sha256(ADVISORY_NAMESPACE + state_id.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def _advisory_claims(state_ids: list[str], database_uri: str) -> Iterator[None]:
    connection = _connect_postgres(database_uri)
    try:
        for state_id in state_ids:
            cursor = connection.cursor()
            cursor.execute("SELECT pg_try_advisory_lock(%s)", (advisory_key(state_id),))
            if not cursor.fetchone()[0]:
                raise AlreadyRunningError(state_id, "advisory lock held in the system database")
        yield
    finally:
        # Closing the session releases its advisory locks.
        connection.close()


def _connect_postgres(database_uri: str) -> Any:
    """A DB-API connection with whichever driver Meltano's ``postgres`` extra installed."""
    dsn = re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", database_uri)
    for name in ("psycopg", "psycopg2"):
        try:
            driver = importlib.import_module(name)
        except ImportError:
            continue
        connection = driver.connect(dsn)
        connection.autocommit = True
        return connection
    raise ClaimError("a PostgreSQL system database needs psycopg: pip install 'meltano[postgres]'")
