"""The ``--since`` window of the report and the summary: an ISO time, or an age like ``30d``.

Reports read a window of the ledger rather than all of it, so that a ledger of months costs what
its last weeks cost; an age (``30d``, ``12h``, ``90m``) keeps a scheduled command's window moving
without editing its arguments.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from target_klaviyo.ledger import as_utc

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhm])\s*$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_since(value: str, *, now: datetime | None = None) -> datetime:
    """``30d`` -> 30 days before ``now``; an ISO time as given (UTC if it has no offset)."""
    age = _AGE.match(value)
    if age:
        delta = timedelta(**{_UNITS[age.group(2)]: float(age.group(1))})
        return (now or datetime.now(timezone.utc)) - delta
    try:
        moment = as_utc(value.strip())
    except ValueError:
        msg = f"not a time or an age: {value!r} (use e.g. 30d, 12h or 2026-01-31T00:00:00Z)"
        raise ValueError(msg) from None
    assert moment is not None
    return moment
