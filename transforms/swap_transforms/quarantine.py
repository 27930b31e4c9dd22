"""Reading input lines the mapper cannot take as they are, without crashing and without losing them.

A line that is not JSON, a number out of range, nesting too deep, or a lone surrogate (half of
a UTF-16 pair, e.g. a broken emoji) in an id, a key or an e-mail must not stop the run: the next
run would read the same line and stop again, for ever (decisions.md §1). Such a line becomes an
`unreadable_record` exception (detail: what and where, never the value) and the mapper goes on.
A lone surrogate in free text (names, reasons, comments, addresses) is repaired to U+FFFD and
counted instead: the record is still good.

The fast path is msgspec's decoder; only a line it refuses is read again here, with the standard
library's parser (which keeps lone surrogates and reports huge numbers) to find out why.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

#: Fields whose text is prose a person typed or a name: a lone surrogate there is repaired.
#: (The same list as tap-swapcommerce's; the mapper does not import the tap.)
FREE_TEXT_FIELDS = frozenset(
    {
        "customer_name",
        "product_name",
        "variant_name",
        "main_reason_text",
        "sub_reason_text",
        "comments",
        "comment",
        "notes",
        "note",
        "intake_reason",
        "type_string",
        "processed_by",
        "name",
        "first_name",
        "last_name",
        "company",
        "address1",
        "address2",
        "city",
        "province",
        "country",
    }
)
SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"
#: Digits of an integer the mapper takes (beyond 64 bits is no id, amount or count of Swap's).
MAX_INT_DIGITS = 20


class UnreadableLineError(Exception):
    """An input line set aside: what is wrong and where (never the value), and whose it is."""

    def __init__(
        self, what: str, stream: str | None = None, record: dict[str, Any] | None = None
    ) -> None:
        self.what = what
        self.stream = stream
        self.record = record
        super().__init__(what)


@dataclass
class Repairs:
    """Free-text fields repaired (lone surrogate -> U+FFFD) per field name, for the log."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1


class _HugeNumber:
    """Stands for an integer too long to take; the walk reports where it was."""


_HUGE = _HugeNumber()


def _int(text: str) -> Any:
    digits = len(text.lstrip("-"))
    return _HUGE if digits > MAX_INT_DIGITS else int(text)


def fingerprint(line: bytes | str) -> str:
    """A stable id for a line that has no readable key (the same bad line, the same id)."""
    data = line if isinstance(line, bytes) else line.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:32]


def read_slowly(line: bytes | str, repairs: Repairs) -> dict[str, Any]:
    """The message of a line msgspec refused, repaired, or `UnreadableLineError` saying why."""
    text = line.decode("utf-8", "surrogateescape") if isinstance(line, bytes) else line
    try:
        message = json.loads(text, parse_int=_int, parse_float=Decimal)
    except RecursionError:
        raise UnreadableLineError("the line is nested too deep to read") from None
    except ValueError:
        raise UnreadableLineError("the line is not valid JSON") from None
    if not isinstance(message, dict):
        raise UnreadableLineError("the line is not a JSON object (a Singer message)")
    stream = message.get("stream") if isinstance(message.get("stream"), str) else None
    if stream is not None and SURROGATE.search(stream):
        raise UnreadableLineError("the stream name holds a lone surrogate")
    record = message.get("record") if message.get("type") == "RECORD" else None
    try:
        # A record's fields are named as the mapping names them (`customer_email`).
        problem = _repair(record, "", repairs) if isinstance(record, dict) else None
        if problem is None:
            rest = {key: value for key, value in message.items() if key != "record"}
            problem = _repair(rest, "", repairs)
    except RecursionError:
        problem = "nested too deep"
    if problem is not None:
        raise UnreadableLineError(problem, stream, record if isinstance(record, dict) else None)
    return message


def _repair(value: Any, path: str, repairs: Repairs) -> str | None:
    """Repair free text in place; the first thing that cannot be taken, if any."""
    if isinstance(value, dict):
        return _repair_object(value, path, repairs)
    if isinstance(value, list):
        for index, member in enumerate(value):
            if isinstance(member, str) and SURROGATE.search(member):
                return f"a text in '{_safe(path)}[{index}]' holds a lone surrogate"
            problem = _repair(member, f"{path}[{index}]", repairs)
            if problem is not None:
                return problem
        return None
    if value is _HUGE:
        return f"field '{_safe(path)}' holds a number out of range"
    return None


def _repair_object(value: dict[str, Any], path: str, repairs: Repairs) -> str | None:
    for key, member in list(value.items()):
        where = f"{path}.{key}" if path else str(key)
        if SURROGATE.search(key):
            return f"a key at '{_safe(path) or '(top)'}' holds a lone surrogate"
        if isinstance(member, str) and SURROGATE.search(member):
            if key not in FREE_TEXT_FIELDS:
                return f"field '{_safe(where)}' holds a lone surrogate (not free text)"
            value[key] = SURROGATE.sub(REPLACEMENT, member)
            repairs.add(key)
            continue
        problem = _repair(member, where, repairs)
        if problem is not None:
            return problem
    return None


def _safe(path: str) -> str:
    """A field path as the message may show it: keys are schema names, but repair anything odd."""
    return SURROGATE.sub(REPLACEMENT, path)[:200]


def record_key(record: dict[str, Any] | None, key_field: str | None) -> str | None:
    """The record's key if it can be written (a string or number without a lone surrogate)."""
    if record is None or key_field is None:
        return None
    value = record.get(key_field)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value)
    return None if SURROGATE.search(text) or len(text) > 255 else text
