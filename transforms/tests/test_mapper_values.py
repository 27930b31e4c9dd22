"""Output checks: `check_native` accepts exactly what the Singer writer can send as JSON."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
from jinja2 import StrictUndefined
from jinja2.runtime import Undefined
from markupsafe import Markup

from swap_transforms.values import CheckedList, check_native

_LEAVES = frozenset({str, int, bool, type(None)})


def reference_check(value: Any) -> Any:
    """The check as first written (one recursive call per value): the behaviour to keep."""
    kind = type(value)
    if kind in _LEAVES:
        return value
    if kind is dict:
        for key, member in value.items():
            if type(key) is not str:
                msg = f"object keys must be strings, got {type(key).__name__}"
                raise TypeError(msg)
            if type(member) not in _LEAVES:
                reference_check(member)
    elif kind is list or kind is tuple:
        for member in value:
            if type(member) not in _LEAVES:
                reference_check(member)
    elif isinstance(value, (Decimal, float)):
        if not math.isfinite(value):
            msg = "numbers must be finite"
            raise ValueError(msg)
    elif isinstance(value, Undefined):
        value._fail_with_undefined_error()
    elif isinstance(value, tuple):
        reference_check(list(value))
    elif isinstance(value, Iterator):
        msg = "a filter chain gives a generator here: end it with '| list'"
        raise TypeError(msg)
    elif not isinstance(value, (str, int)):
        msg = f"a value of type {type(value).__name__} cannot be sent (not JSON)"
        raise TypeError(msg)
    return value


class Pair(NamedTuple):
    first: Any
    second: Any


def _outcome(check: Any, value: Any) -> tuple[str, str]:
    try:
        check(value)
    except Exception as error:  # noqa: BLE001 - the failure is what is compared
        return type(error).__name__, str(error)
    return "ok", ""


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    bad = [
        float("nan"),
        Decimal("Infinity"),
        Decimal("NaN"),
        StrictUndefined(name="missing"),
        iter([1]),
        object(),
        {1, 2},
        b"bytes",
        1.5 + 2j,
    ]
    good = ["text", Markup("<b>"), 3, True, None, Decimal("1.25"), 2.5, -0.0]
    roll = rng.random()
    if depth < 3 and roll < 0.25:
        return {
            (rng.choice(["a", "b", "c", 1]) if rng.random() < 0.05 else f"k{i}"): _random_value(
                rng, depth + 1
            )
            for i in range(rng.randint(0, 4))
        }
    if depth < 3 and roll < 0.4:
        members = [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
        shape = rng.random()
        if shape < 0.6:
            return members
        return tuple(members) if shape < 0.8 else Pair(members[:1], members[1:])
    if roll < 0.45:
        return rng.choice(bad)
    return rng.choice(good)


def test_check_native_fails_first_where_and_as_the_first_version_did() -> None:
    rng = random.Random(11)
    outcomes = set()
    for _ in range(5000):
        value = _random_value(rng)
        expected = _outcome(reference_check, value)
        assert _outcome(check_native, value) == expected, repr(value)
        outcomes.add(expected[0])
    assert outcomes >= {"ok", "TypeError", "ValueError", "UndefinedError"}


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, {"b": Decimal("2.50")}], "c": (None, True), "d": Markup("x")},
        Pair("grouper", [1, 2]),
        CheckedList([{"SKU": "A"}, {"SKU": "B"}]),
    ],
)
def test_check_native_returns_what_it_accepts(value: Any) -> None:
    assert check_native(value) is value


def test_a_for_each_list_is_not_walked_again() -> None:
    # Its members were checked as the for_each added them; it is still a list, sent as one.
    built = CheckedList([{"SKU": "A"}])
    assert isinstance(built, list)
    assert built == [{"SKU": "A"}]
    assert check_native({"Items": built, "Count": 1})["Items"] is built
