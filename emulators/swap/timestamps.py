"""Swap's timestamp format and the emulator's clock.

Times are kept as integer milliseconds since the epoch (cheap to store for 100,000 returns and to
compare), and written the way Swap writes them: ISO 8601 UTC with milliseconds and a ``Z``.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta

SECOND_MS = 1_000
HOUR_MS = 3_600 * SECOND_MS
DAY_MS = 24 * HOUR_MS


def to_iso(ms: int) -> str:
    """``2026-05-06T09:12:00.000Z``: the one format every date of the emulator uses."""
    moment = datetime.fromtimestamp(ms // SECOND_MS, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % SECOND_MS:03d}Z"


def to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * SECOND_MS + moment.microsecond // 1_000


def parse_iso(text: str, *, end_of_day: bool = False) -> int:
    """Milliseconds of an ISO 8601 query value; naive values are UTC.

    A bare date means its first millisecond, or with ``end_of_day`` its last one, so that
    ``to_...=2026-05-01`` includes the whole of that day.

    Raises:
        ValueError: the text is not ISO 8601.
    """
    text = text.strip()
    moment = datetime.fromisoformat(text)
    if end_of_day and _is_bare_date(text):
        return to_ms(moment + timedelta(days=1)) - 1
    return to_ms(moment)


def _is_bare_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def start_of_day_ms(ms: int) -> int:
    return ms - ms % DAY_MS


def default_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Clock:
    """The emulator's now: every change to the data set happens at a fresh tick of it.

    A tick moves at least one second past the previous one, so rows changed at a tick sort after
    every row that exists already. With ``follow_wall_clock`` (when no fixed ``now`` was given, as
    in the demo) a tick also catches up with real time, so timestamps look current.
    """

    def __init__(self, start_ms: int, *, follow_wall_clock: bool = False) -> None:
        self._ms = start_ms
        self._follow = follow_wall_clock
        self._lock = threading.Lock()

    @property
    def ms(self) -> int:
        return self._ms

    def tick(self) -> int:
        with self._lock:
            candidate = self._ms + SECOND_MS
            if self._follow:
                wall = int(time.time()) * SECOND_MS
                candidate = max(candidate, wall)
            self._ms = candidate
            return candidate
