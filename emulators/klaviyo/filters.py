"""Klaviyo's ``filter`` query parameter: parse, check against an endpoint's allow-list, evaluate.

The syntax is Klaviyo's own (``any(email,["a@x.com"])``, ``equals(sku,'X')``,
``and(greater-than(updated,2024-01-01T00:00:00Z),equals(published,true))``, several top-level
expressions meaning AND), so no library parses it. Each endpoint declares which field/operator
pairs it allows, as its OpenAPI ``filter`` description lists them; anything else is a 400 on the
``filter`` parameter, as Klaviyo answers.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from emulators.klaviyo.jsonapi import ApiError
from emulators.klaviyo.limits import MAX_FILTER_LIST_VALUES

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<datetime>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?)
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<name>[A-Za-z_$][\w.$-]*)
    | (?P<punct>[(),\[\]])
    )""",
    re.VERBOSE,
)
_CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None}
_LOGICAL = {"and", "or", "not"}


@dataclass(frozen=True)
class Condition:
    """``operator(field, value)``; ``value`` is a list for ``any``."""

    operator: str
    field: str
    value: Any


@dataclass(frozen=True)
class Logical:
    """``and(...)``, ``or(...)`` or ``not(...)`` of other expressions."""

    operator: str
    operands: tuple[Node, ...]


Node = Condition | Logical


def _fail(detail: str) -> ApiError:
    return ApiError.bad_parameter("filter", f"Invalid filter: {detail}")


def _tokens(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise _fail(f"unexpected text at position {position}.")
        kind = match.lastgroup or ""
        raw = match.group(kind)
        position = match.end()
        if kind == "string":
            tokens.append(("value", ast.literal_eval(raw)))
        elif kind == "datetime":
            tokens.append(("value", _timestamp(raw)))
        elif kind == "number":
            tokens.append(("value", float(raw) if "." in raw else int(raw)))
        elif kind == "name" and raw in _CONSTANTS:
            tokens.append(("value", _CONSTANTS[raw]))
        else:
            tokens.append((kind, raw))
    return tokens


def _timestamp(raw: str) -> float:
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _fail(f"bad date-time {raw!r}.") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.tokens = tokens
        self.index = 0

    def peek(self) -> tuple[str, Any]:
        return self.tokens[self.index] if self.index < len(self.tokens) else ("end", None)

    def take(self, kind: str, text: str | None = None) -> Any:
        token_kind, value = self.peek()
        if token_kind != kind or (text is not None and value != text):
            expected = text or kind
            raise _fail(f"expected {expected!r} but found {value!r}.")
        self.index += 1
        return value

    def expressions(self) -> list[Node]:
        nodes = [self.expression()]
        while self.peek() == ("punct", ","):
            self.index += 1
            nodes.append(self.expression())
        self.take("end")
        return nodes

    def expression(self) -> Node:
        operator = self.take("name")
        self.take("punct", "(")
        if operator in _LOGICAL:
            operands = [self.expression()]
            while self.peek() == ("punct", ","):
                self.index += 1
                operands.append(self.expression())
            self.take("punct", ")")
            if operator == "not" and len(operands) != 1:
                raise _fail("not() takes one expression.")
            return Logical(operator, tuple(operands))
        field = self.take("name")
        self.take("punct", ",")
        value = self.value()
        self.take("punct", ")")
        return Condition(operator, field, value)

    def value(self) -> Any:
        if self.peek() == ("punct", "["):
            self.index += 1
            values = []
            while self.peek() != ("punct", "]"):
                values.append(self.take("value"))
                if self.peek() == ("punct", ","):
                    self.index += 1
            self.take("punct", "]")
            return values
        return self.take("value")


def parse(text: str, allowed: dict[str, set[str]]) -> Node:
    """Parse ``text`` and check every ``operator(field, ...)`` against ``allowed``."""
    nodes = _Parser(_tokens(text)).expressions()
    node = nodes[0] if len(nodes) == 1 else Logical("and", tuple(nodes))
    for condition in conditions(node):
        operators = allowed.get(condition.field)
        if operators is None:
            fields = ", ".join(sorted(allowed))
            raise _fail(f"'{condition.field}' is not a filterable field; use one of: {fields}.")
        if condition.operator not in operators:
            ops = ", ".join(sorted(operators))
            detail = f"operator '{condition.operator}' is not allowed on '{condition.field}'"
            raise _fail(f"{detail}; allowed: {ops}.")
        is_list = isinstance(condition.value, list)
        if (condition.operator == "any") != is_list:
            raise _fail(f"'{condition.operator}' on '{condition.field}' takes the wrong value.")
        if is_list and len(condition.value) > MAX_FILTER_LIST_VALUES:
            raise _fail(f"'any' takes at most {MAX_FILTER_LIST_VALUES} values.")
    return node


def conditions(node: Node) -> Iterator[Condition]:
    if isinstance(node, Condition):
        yield node
    else:
        for operand in node.operands:
            yield from conditions(operand)


def lookup_values(node: Node, fields: set[str]) -> tuple[str, list[Any]] | None:
    """``(field, values)`` when the filter is one ``any``/``equals`` on an indexed field.

    Lets a store answer the common "find these 100 emails" from its index instead of a scan.
    """
    if isinstance(node, Condition) and node.field in fields:
        if node.operator == "any":
            return node.field, list(node.value)
        if node.operator == "equals":
            return node.field, [node.value]
    return None


def _compare(operator: str, actual: Any, expected: Any) -> bool:  # noqa: PLR0911
    if operator == "equals":
        return bool(actual == expected)
    if operator == "any":
        return actual in expected
    if operator == "contains":
        return isinstance(actual, str) and str(expected) in actual
    if actual is None:
        return False
    if operator == "greater-than":
        return bool(actual > expected)
    if operator == "less-than":
        return bool(actual < expected)
    if operator == "greater-or-equal":
        return bool(actual >= expected)
    if operator == "less-or-equal":
        return bool(actual <= expected)
    raise _fail(f"unsupported operator '{operator}'.")


def matches(node: Node, value_of: Callable[[str], Any]) -> bool:
    """Evaluate the filter on one record; ``value_of(field)`` gives the record's value."""
    if isinstance(node, Condition):
        return _compare(node.operator, value_of(node.field), node.value)
    if node.operator == "and":
        return all(matches(operand, value_of) for operand in node.operands)
    if node.operator == "or":
        return any(matches(operand, value_of) for operand in node.operands)
    return not matches(node.operands[0], value_of)
