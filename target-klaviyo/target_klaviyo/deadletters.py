"""Dead letters: every set-aside record not delivered since, read in pages, written owner-only.

A ledger of months holds hundreds of thousands of rows: the export reads them a page at a time
(keyset on ``id``), asking the database which rows are the latest word on their record, instead
of loading every delivery into memory. The file holds personal data (set-aside payloads), so it
is written to a new file created ``0600`` and renamed over the old one: an existing file's mode
(``0644`` from an earlier export or a ``touch``) is never kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from target_klaviyo.ledger import ACCEPTED, SET_ASIDE, as_utc, deliveries

PAGE_SIZE = 1000


def unresolved(
    engine: Engine,
    *,
    reasons: Sequence[str] | None = None,
    include_replayed: bool = False,
    page_size: int = PAGE_SIZE,
) -> Iterator[dict[str, Any]]:
    """The latest set-aside row of each record not accepted since, oldest first, page by page.

    With ``reasons``, the latest row among those reasons; an acceptance after it settles the
    record. Read a page at a time, so that a ledger of any size fits in memory.
    """
    d = deliveries
    later = deliveries.alias("later")
    matching = _matching(d, reasons)
    superseded = sa.exists().where(
        later.c.stream == d.c.stream,
        later.c.record_key == d.c.record_key,
        later.c.id > d.c.id,
        sa.or_(later.c.outcome == ACCEPTED, _matching(later, reasons)),
    )
    query = sa.select(d).where(matching, ~superseded).order_by(d.c.id).limit(page_size)
    if not include_replayed:
        query = query.where(d.c.replayed_at.is_(None))
    last_id = 0
    while True:
        with engine.connect() as conn:
            page = [dict(row) for row in conn.execute(query.where(d.c.id > last_id)).mappings()]
        for row in page:
            yield {
                **row,
                "recorded_at": as_utc(row["recorded_at"]),
                "replayed_at": as_utc(row["replayed_at"]),
            }
        if len(page) < page_size:
            return
        last_id = int(page[-1]["id"])


def _matching(table: Any, reasons: Sequence[str] | None) -> sa.ColumnElement[bool]:
    """Set-aside rows, of the given reasons (or outcomes) if any."""
    condition: sa.ColumnElement[bool] = table.c.outcome.in_(SET_ASIDE)
    if reasons:
        condition = sa.and_(
            condition, sa.or_(table.c.reason.in_(reasons), table.c.outcome.in_(reasons))
        )
    return condition


def letter(row: dict[str, Any]) -> dict[str, Any]:
    """What a person reads of one set-aside record: why, when, and the record itself."""
    return {
        "stream": row["stream"],
        "record_key": row["record_key"],
        "outcome": row["outcome"],
        "reason": row["reason"],
        "detail": row["detail"],
        "metric": row["metric"],
        "source_id": row["source_id"],
        "recorded_at": row["recorded_at"],
        "replayed_at": row["replayed_at"],
        "record": json.loads(row["payload"]) if row["payload"] else None,
    }


def write_owner_only(path: Path, lines: Iterable[str]) -> None:
    """Write ``lines`` to a new ``0600`` file beside ``path``, then rename it over ``path``.

    Something that is not a regular file (``/dev/stdout``, a pipe) is written in place.
    """
    if path.exists() and not path.is_file():
        with path.open("w", encoding="utf-8") as handle:
            handle.writelines(lines)
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.writelines(lines)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
