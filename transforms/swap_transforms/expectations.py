"""Comparing what a mapping produced with what a test expects, field by field.

An analyst lists only the fields a test is about, so dictionaries are compared on the keys the
test gives (recursively); lists are compared whole, element by element. Numbers compare by value
(`80.5` in YAML equals the mapper's Decimal `80.50`) but never with booleans.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

ABSENT = "(no such field)"


@dataclass(frozen=True)
class Mismatch:
    """One field that differs: where (dotted path), what the test wants, what came out."""

    field: str
    expected: Any
    actual: Any


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _same_number(expected: Any, actual: Any) -> bool:
    try:
        return Decimal(str(expected)) == Decimal(str(actual))
    except ArithmeticError:
        return False


def compare(expected: Any, actual: Any, field: str = "") -> list[Mismatch]:
    """Every mismatch between a (partial) expected value and the actual one."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [Mismatch(field, expected, actual)]
        found: list[Mismatch] = []
        for key, wanted in expected.items():
            name = f"{field}.{key}" if field else str(key)
            if key not in actual:
                found.append(Mismatch(name, wanted, ABSENT))
            else:
                found.extend(compare(wanted, actual[key], name))
        return found
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [Mismatch(field, expected, actual)]
        found = []
        for index, (wanted, got) in enumerate(zip(expected, actual, strict=True)):
            found.extend(compare(wanted, got, f"{field}[{index}]"))
        # A list that differs in several members reads better as one line.
        return [Mismatch(field, expected, actual)] if len(found) > 1 else found
    if _is_number(expected) and _is_number(actual):
        same = _same_number(expected, actual)
    else:
        same = type(expected) is type(actual) and expected == actual
    return [] if same else [Mismatch(field, expected, actual)]


def matches(expected: Any, actual: Any) -> bool:
    return not compare(expected, actual)
