"""The contract's bounds that JSON Schema cannot say, and lookups that fit in a URL.

The schemas (``schemas/*.json``) bound lengths, sizes and number ranges. What they cannot say
is checked here, after the schema passed: a time within a window of *now* (an ``as_of`` in year
9999 would freeze a profile, since no later update could be newer), nesting no deeper than
Klaviyo's ten levels of nested objects, property names Klaviyo and the ledger can hold. A record
outside is set aside as ``out_of_bounds`` with the field named, never its value.

Lookups put ids and emails in a URL's ``filter``: :func:`url_chunks` splits them so that no URL
passes :data:`MAX_FILTER_CHARS`, and hands back any single value too long for a URL on its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote_plus

OUT_OF_BOUNDS = "out_of_bounds"

#: Klaviyo takes event times after 2000 (its ingestion limits); no source time is older.
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
#: How far ahead of the run a source time may be (clock skew), not more.
FUTURE_LEEWAY = timedelta(days=1)
#: The fields of each stream that are source times, checked against the window.
TIME_FIELDS: dict[str, tuple[str, ...]] = {
    "klaviyo_events": ("time",),
    "klaviyo_profile_updates": ("as_of",),
    "klaviyo_catalog_variants": ("time",),
}
#: Klaviyo's "max levels of nested objects".
MAX_NESTING = 10
#: Longest name in each free-form field: Klaviyo's 100 KB for any string (as characters; its
#: bytes are checked before sending), 128 for list properties (the ledger's mirror holds them).
MAX_NAME_CHARS = {"properties": 102_400, "append": 128, "unappend": 128}
#: The fields holding free-form objects whose depth and names are checked, per stream.
NESTED_FIELDS: dict[str, tuple[str, ...]] = {
    "klaviyo_events": ("properties",),
    "klaviyo_profile_updates": ("properties", "append", "unappend"),
}
#: Inventory a restock may leave: never below zero, never past a 32-bit integer.
MIN_INVENTORY = 0
MAX_INVENTORY = 2**31 - 1

#: Characters the encoded ``filter`` values of one lookup may take: with the base URL and the
#: other parameters, the URL stays well under 8 KB, which every proxy and server accepts.
MAX_FILTER_CHARS = 6000


def out_of_bounds(stream: str, record: Mapping[str, Any], now: datetime) -> str | None:
    """Why ``record`` (already valid against its schema) is out of bounds, as ``field: why``."""
    for name in TIME_FIELDS.get(stream, ()):
        problem = _time_problem(record.get(name), now)
        if problem:
            return f"{name}: {problem}"
    for name in NESTED_FIELDS.get(stream, ()):
        value = record.get(name)
        if isinstance(value, dict | list):
            problem = _nesting_problem(value, name)
            if problem:
                return problem
    return None


def _time_problem(value: Any, now: datetime) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None  # the schema's format check names it
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    if moment < EARLIEST:
        return f"before {EARLIEST:%Y-%m-%d}"
    if moment > now + FUTURE_LEEWAY:
        return "more than a day after the time of the run"
    return None


def _nesting_problem(root: dict[str, Any] | list[Any], field: str) -> str | None:
    """Depth and names under ``root``, iteratively (the reader bounded the total depth)."""
    longest = MAX_NAME_CHARS[field]
    stack: list[tuple[Any, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            return f"{field}: nested deeper than {MAX_NESTING} levels"
        if isinstance(node, dict):
            for key, value in node.items():
                if len(key) > longest:
                    return f"{field}: a property name longer than {longest} characters"
                if isinstance(value, dict | list):
                    stack.append((value, depth + 1))
        else:
            stack.extend((value, depth + 1) for value in node if isinstance(value, dict | list))
    return None


def url_chunks(
    values: Iterable[str], *, size: int, budget: int = MAX_FILTER_CHARS
) -> tuple[list[list[str]], list[str]]:
    """``values`` in lookups of at most ``size`` values whose encoded filter fits ``budget``.

    Returns the chunks, and the values too long to be looked up even alone (set them aside).
    """
    chunks: list[list[str]] = []
    too_long: list[str] = []
    current: list[str] = []
    used = 0
    for value, cost in _costs(values):
        if cost > budget:
            too_long.append(value)
            continue
        if current and (len(current) >= size or used + cost > budget):
            chunks.append(current)
            current, used = [], 0
        current.append(value)
        used += cost
    if current:
        chunks.append(current)
    return chunks, too_long


def _costs(values: Iterable[str]) -> Iterator[tuple[str, int]]:
    """Each value with what it adds to the URL: JSON-quoted, URL-encoded, plus a comma."""
    for value in values:
        yield value, len(quote_plus(json.dumps(value))) + 3
