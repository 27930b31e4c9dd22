"""How times and durations read on the page and in the terminal: short, UTC, unambiguous.

The report is read by people in several time zones and pasted into tickets, so times always say
UTC and durations use the largest two units ("2h 05m") instead of raw seconds.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


def duration(seconds: float | timedelta | None) -> str:
    """``125`` -> ``2m 05s``; ``93784`` -> ``1d 02h``; under a minute keeps one decimal."""
    if seconds is None:
        return "—"
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 and seconds % 1 else f"{seconds:.0f}s"
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def timestamp(moment: datetime | None) -> str:
    """``2025-03-01 14:05 UTC``, or a dash when there is no time."""
    if moment is None:
        return "—"
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def number(value: int | None) -> str:
    """Thousands separated, a dash when a run recorded no count."""
    return "—" if value is None else f"{value:,}"
