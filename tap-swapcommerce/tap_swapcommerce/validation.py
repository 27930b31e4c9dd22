"""Checks Swap's records against the stream schema, reporting violations without stopping.

Swap's data is dirty in ways a schema can catch (a money field sent as text, a count as a word).
Such a record is still emitted, because it is still a real return that downstream steps must
account for; the tap reports which return and which field, so that a person can take it up with
the data owner. Only a row without the keys the sync itself relies on is left out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

import fastjsonschema
from jsonschema import Draft7Validator, FormatChecker

#: Fields the sync itself needs to page, bookmark and key a return.
REQUIRED_KEYS = ("return_id", "date_updated")


class RecordValidator:
    """Validates at compiled-code speed, and explains failures with jsonschema's error paths."""

    def __init__(self, schema: Mapping[str, Any], stream: str, logger: logging.Logger) -> None:
        self._check = fastjsonschema.compile(dict(schema), formats={"date-time": _is_datetime})
        self._explain = Draft7Validator(schema, format_checker=DATE_TIME)
        self._stream = stream
        self._logger = logger
        self.invalid_records = 0
        self.skipped_records = 0

    def key_problem(self, row: Any) -> KeyProblem | None:
        """What keeps the sync from keying or bookmarking this row, if anything."""
        problem = _key_problem(row)
        if problem is not None:
            self.skipped_records += 1
        return problem

    def report(self, row: dict[str, Any]) -> bool:
        """True when the row matches the schema; otherwise log each violation and return False."""
        try:
            self._check(row)
        except fastjsonschema.JsonSchemaException:
            pass
        else:
            return True
        self.invalid_records += 1
        for error in self._explain.iter_errors(row):
            field = ".".join(str(part) for part in error.absolute_path) or "(record)"
            self._logger.warning(
                "Return %s does not match the %s schema at '%s': expected %s, got %s. "
                "Emitted as received.",
                row.get("return_id"),
                self._stream,
                field,
                _expected(error.schema),
                type(error.instance).__name__,
            )
        return False


class KeyProblem(NamedTuple):
    """A field the sync relies on, and what is wrong with it (never its value)."""

    field: str
    what: str


def _key_problem(row: Any) -> KeyProblem | None:
    if not isinstance(row, dict):
        return KeyProblem("(record)", f"expected an object, got {type(row).__name__}")
    for key in REQUIRED_KEYS:
        if not isinstance(row.get(key), str) or not row[key]:
            return KeyProblem(key, "missing or not a string: the return cannot be keyed")
    if not _is_datetime(row["date_updated"]):
        return KeyProblem("date_updated", "not an ISO 8601 timestamp: it cannot be bookmarked")
    return None


def _is_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True  # a format check applies to strings only; the type check covers the rest
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


#: jsonschema's own date-time check needs an optional package; this one is the same test as above.
DATE_TIME = FormatChecker(formats=())
DATE_TIME.checks("date-time")(_is_datetime)


def _expected(schema: Any) -> str:
    """What the schema wanted, in words: its types, or its format (never the value received)."""
    if not isinstance(schema, dict):
        return "a valid value"
    if "format" in schema:
        return f"{schema['format']}"
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(kind)
    return str(kind) if kind else "a valid value"
