"""Output values: how a YAML field value becomes (part of) one Jinja expression.

A field is a YAML literal, `"{{ expr }}"` (keeps the native type), a text template mixing text
and `{{ }}` (a string), a nested mapping or list (built as dict/list), or a loop
`{for_each: "x in xs", when: ..., value: ...}` that builds a list. All fields of one emitted
output are assembled into a single Jinja expression (a dict literal) because one call per output
runs several times faster than one call per field. Each piece keeps its own source so that, when
the combined expression fails on a record, the failing field can be found by evaluating the
pieces one at a time (only then, so the cost is paid on errors only).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any, cast

from jinja2 import TemplateError, nodes, pass_context
from jinja2.runtime import Context, Undefined

from swap_transforms.budgets import CHARS_PER_STEP, LIMITS, METER, BudgetError, check_items
from swap_transforms.errors import EvaluationError, Problem
from swap_transforms.sandbox import (
    ENGINE_LOOP,
    EngineFunction,
    Expression,
    ExpressionError,
    Scope,
    check_expression,
    parse_expression,
    parse_template,
    referenced_names,
)
from swap_transforms.yaml_lines import PathKey, YamlDocument

LOOP_KEYS = frozenset({"for_each", "value"})
LOOP_OPTIONAL_KEYS = frozenset({"when"})
FOR_EACH_SHAPE = "for_each must read '<name> in <expression>', e.g. 'item in items'"
_FOR_EACH = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s+in\s+(.+)$", re.DOTALL)


@dataclass(frozen=True)
class Site:
    """Where a piece of a mapping file is: for error messages that point at a line."""

    doc: YamlDocument
    path: PathKey
    where: str

    def at(self, key: str | int, where: str | None = None) -> Site:
        return Site(self.doc, (*self.path, key), self.where if where is None else where)

    def problem(self, message: str, line_in_text: int | None = None) -> Problem:
        if line_in_text is None:
            line = self.doc.line(self.path)
        else:
            line = self.doc.text_line(self.path, line_in_text)
        return Problem(self.doc.path, line, self.where, message)


class ValueSpec:
    """A compiled field value: builds its Jinja AST (fresh each time) and names its parts."""

    label: str

    def build(self) -> nodes.Expr:
        raise NotImplementedError

    def parts(self) -> list[ValueSpec]:
        return []

    @cached_property
    def expression(self) -> Expression:
        """This piece alone, compiled on first need (when locating a failure)."""
        return Expression(self.build())


class LiteralValue(ValueSpec):
    """A YAML scalar without `{{ }}`: sent as written."""

    def __init__(self, value: Any, label: str) -> None:
        self.value = value
        self.label = label

    def build(self) -> nodes.Expr:
        return nodes.Const(self.value, lineno=1)


class TemplateValue(ValueSpec):
    """A string with `{{ }}`: a lone expression keeps its type, mixed text makes a string."""

    def __init__(self, source: str, label: str) -> None:
        self.source = source
        self.label = label

    def build(self) -> nodes.Expr:
        return parse_template(self.source)


class MappingValue(ValueSpec):
    """A YAML mapping: a dict literal whose values are compiled the same way."""

    def __init__(self, items: list[tuple[str, ValueSpec]], label: str) -> None:
        self.items = items
        self.label = label

    def build(self) -> nodes.Expr:
        pairs = [nodes.Pair(nodes.Const(key), spec.build(), lineno=1) for key, spec in self.items]
        return nodes.Dict(pairs, lineno=1)

    def parts(self) -> list[ValueSpec]:
        return [spec for _, spec in self.items]


class ListValue(ValueSpec):
    """A YAML list: a list literal."""

    def __init__(self, items: list[ValueSpec], label: str) -> None:
        self.items = items
        self.label = label

    def build(self) -> nodes.Expr:
        return nodes.List([spec.build() for spec in self.items], lineno=1)

    def parts(self) -> list[ValueSpec]:
        return list(self.items)


class CheckedList(list[Any]):
    """The list a `for_each` value builds: each member passed `check_native` as it was added.

    Output checks do not walk it again (an output holds it as built: the sandbox refuses
    changing a list, and `+`, slices or filters make plain lists); `size` is what its members
    add to an output's size (see `native_size`), counted as they were added.
    """

    #: Set by `Loop` (a class default rather than an `__init__`: one call less per loop).
    size: int = 0


class Loop(EngineFunction):
    """A `for_each` inside a value: called from the compiled expression with the list."""

    def __init__(self, binding: str, when: Expression | None, body: ValueSpec, label: str) -> None:
        self.binding = binding
        self.when = when
        self.body = body
        self.label = label
        self._body = body.expression

    @pass_context
    def __call__(self, context: Context, items: Any) -> list[Any]:
        scope = cast("Scope", context)  # expressions run with their Scope as the context
        binding, when, body = self.binding, self.when, self._body.function
        result = CheckedList()
        size = 0
        meter = METER
        for index, item in enumerate(iterate(items)):
            child = scope.child(binding, item)
            steps = meter.steps
            try:
                meter.steps = steps + 1  # an item is a step (inline: the hot path)
                if meter.steps >= meter.next_check:
                    meter.check()
                if when is not None and not when(child):
                    continue
                value = body(child)
                if isinstance(value, Undefined):
                    value._fail_with_undefined_error()
                size += native_size(value) + 1
                if size > LIMITS.output:
                    _over_output(size)
                result.append(value)
            except Exception as error:
                spent = METER.steps
                METER.rewind(steps)  # the item is re-run to find the failing part
                cause = locate_failure(self.body, child, error)
                METER.rewind(max(spent, METER.steps))  # what the item spent stays spent
                raise EvaluationError(f"{self.label} item {index}", cause) from error
        if len(result) >= CHARS_PER_STEP:  # smaller lists are within budget and free
            check_items(len(result), "a for_each list")
        result.size = size
        return result


class LoopValue(ValueSpec):
    """A value-level `for_each`: a call of its `Loop` with the list, inside the expression."""

    def __init__(self, name: str, items_source: str, loop: Loop, label: str) -> None:
        self.name = name
        self.items_source = items_source
        self.loop = loop
        self.label = label

    def build(self) -> nodes.Expr:
        items = parse_expression(self.items_source)
        return nodes.Call(nodes.Name(self.name, "load"), [items], [], None, None, lineno=1)


def iterate(items: Any) -> Iterable[Any]:
    """What `for_each` accepts: a list (or a Jinja filter's generator), never text or an object."""
    if type(items) is list:
        return items
    if isinstance(items, Undefined):
        items._fail_with_undefined_error()
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        msg = f"for_each expects a list, got {type(items).__name__}"
        raise TypeError(msg)
    return items


def split_for_each(source: str) -> tuple[str, str] | None:
    """`"item in items"` -> ("item", "items"), or None when it is not of that form."""
    match = _FOR_EACH.match(source)
    return (match.group(1), match.group(2)) if match else None


class ValueCompiler:
    """Turns YAML values into `ValueSpec`s, collecting every problem instead of stopping."""

    def __init__(self, engine_names: dict[str, Any], problems: list[Problem]) -> None:
        self.engine_names = engine_names
        self.problems = problems

    def expression(
        self, source: str, site: Site, known: frozenset[str]
    ) -> tuple[nodes.Expr, set[str]] | None:
        """Parse and check a bare expression; returns it with the names it refers to."""
        try:
            expression = parse_expression(source)
        except ExpressionError as error:
            self.problems.append(site.problem(error.message, error.line))
            return None
        return self._checked(expression, site, known)

    def compile(self, expression: nodes.Expr, site: Site) -> Expression:
        """Compile a checked expression; Jinja's own compile-time errors become problems."""
        try:
            return Expression(expression)
        except TemplateError as error:
            self.problems.append(site.problem(str(error)))
            return Expression(nodes.Const(None))

    def _checked(
        self, expression: nodes.Expr, site: Site, known: frozenset[str]
    ) -> tuple[nodes.Expr, set[str]] | None:
        issues = check_expression(expression, known)
        for issue in issues:
            self.problems.append(site.problem(issue.message, issue.line))
        if issues:
            return None
        return expression, referenced_names(expression)

    def value(
        self, raw: Any, site: Site, label: str, known: frozenset[str], used: set[str]
    ) -> ValueSpec | None:
        """Compile one value; names it refers to are added to `used`."""
        if isinstance(raw, str):
            return self._text(raw, site, label, known, used)
        if isinstance(raw, dict):
            keys = set(raw)
            if LOOP_KEYS <= keys <= LOOP_KEYS | LOOP_OPTIONAL_KEYS:
                return self.loop(raw, site, label, known, used)
            return self._mapping(raw, site, label, known, used)
        if isinstance(raw, list):
            members = [
                self.value(member, site.at(index), f"{label}[{index}]", known, used)
                for index, member in enumerate(raw)
            ]
            return ListValue([member for member in members if member is not None], label)
        if raw is None or isinstance(raw, (bool, int)) or _finite_float(raw):
            return LiteralValue(raw, label)
        message = "numbers must be finite" if isinstance(raw, float) else "unsupported value"
        self.problems.append(site.problem(f"{message} ({type(raw).__name__})"))
        return None

    def _text(
        self, raw: str, site: Site, label: str, known: frozenset[str], used: set[str]
    ) -> ValueSpec | None:
        if "{{" not in raw and "{%" not in raw and "{#" not in raw:
            return LiteralValue(raw, label)
        try:
            expression = parse_template(raw, strict_text=False)
        except ExpressionError as error:
            self.problems.append(site.problem(error.message, error.line))
            return None
        checked = self._checked(expression, site, known)
        if checked is None:
            return None
        used.update(checked[1])
        return TemplateValue(raw, label)

    def _mapping(
        self, raw: dict[Any, Any], site: Site, label: str, known: frozenset[str], used: set[str]
    ) -> MappingValue:
        items: list[tuple[str, ValueSpec]] = []
        for key, member in raw.items():
            if not isinstance(key, str):
                self.problems.append(site.problem(f"key {key!r} must be a string"))
                continue
            member_label = f"{label}.{key}" if label else key
            where = _field_where(site.where, member_label)
            spec = self.value(member, site.at(key, where), member_label, known, used)
            if spec is not None:
                items.append((key, spec))
        return MappingValue(items, label)

    def loop(
        self, raw: dict[str, Any], site: Site, label: str, known: frozenset[str], used: set[str]
    ) -> LoopValue | None:
        """A value-level `for_each`: the list it builds, one `value` per (kept) item."""
        for_each = raw["for_each"]
        parsed = split_for_each(for_each) if isinstance(for_each, str) else None
        if parsed is None:
            self.problems.append(site.at("for_each").problem(FOR_EACH_SHAPE))
            return None
        binding, items_source = parsed
        count = len(self.problems)
        items = self.expression(items_source, site.at("for_each"), known)
        inner_known = known | {binding}
        inner_used: set[str] = set()
        when: Expression | None = None
        if "when" in raw:
            if not isinstance(raw["when"], str):
                self.problems.append(site.at("when").problem("when must be an expression"))
            else:
                checked = self.expression(raw["when"], site.at("when"), inner_known)
                if checked is not None:
                    inner_used.update(checked[1])
                    when = self.compile(checked[0], site.at("when"))
        body = self.value(raw["value"], site.at("value"), f"{label}[]", inner_known, inner_used)
        if items is None or body is None or len(self.problems) > count:
            return None
        used.update(items[1], inner_used - {binding})
        name = f"{ENGINE_LOOP}{len(self.engine_names)}"
        loop = Loop(binding, when, body, f"field '{label}'" if label else "for_each")
        self.engine_names[name] = loop
        return LoopValue(name, items_source, loop, label)


def _finite_float(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def _field_where(where: str, label: str) -> str:
    """`rule 'x', field 'a'` -> `rule 'x', field 'a.b'`: the deepest field is the useful one."""
    head = where.split(", field '", 1)[0]
    return f"{head}, field '{label}'"


def locate_failure(spec: ValueSpec, scope: Scope, error: BaseException) -> EvaluationError:
    """Which part of a value failed on this record: re-run its parts one by one.

    The budget meter is where it was when the value started (the caller rewinds it), so each
    part runs with the steps it had the first time: the part that ran out is found again.
    """
    for part in spec.parts():
        steps = METER.steps
        try:
            check_native(part.expression(scope))
        except Exception as part_error:  # noqa: BLE001 - any failure of the analyst's expression
            METER.rewind(steps)
            return locate_failure(part, scope, part_error)
    if isinstance(error, EvaluationError):
        return error
    return EvaluationError(f"field '{spec.label}'" if spec.label else "value", error)


#: Types whose values need no further check, and count 1 in a size (texts count their length).
_LEAVES = frozenset({int, bool, type(None)})


def check_native(value: Any) -> Any:
    """Return `value` if the Singer writer can send it as JSON, else raise naming the problem.

    Catches what Jinja lets through silently: a StrictUndefined nested in a list or dict (a
    missing field inside `{{ [record.missing] }}`), a filter chain left without `| list`, and
    objects that the writer could only print as text. Nothing is copied: results may share
    parts of the input record, and checking is cheaper than rebuilding.
    """
    size = native_size(value)
    if size > LIMITS.output:
        _over_output(size)
    return value


def check_output(record: Any) -> None:
    """`check_native`, and the output's size within `LIMITS.output`, charged to the meter.

    Sharing makes values cheap to build and costly to write: `[text] * 100000` is one text
    and a list of references, and a hundred thousand copies of the text once written.
    """
    size = _check_dict(record) if type(record) is dict else native_size(record)
    if size > LIMITS.output:
        _over_output(size)
    # An output is a step, and a step per CHARS_PER_STEP characters (inline: the hot path).
    meter = METER
    meter.steps += 1 + size // CHARS_PER_STEP
    if meter.steps >= meter.next_check:
        meter.check()


def _over_output(size: int) -> None:
    msg = f"budget exceeded: an output of more than {LIMITS.output} characters and items"
    raise BudgetError(msg)


def native_size(value: Any) -> int:
    """Check `value` as `check_native` does; its size: text lengths plus one per other value.

    A walk that passes `LIMITS.output` stops there (shared members may make the tree far
    bigger than the memory it takes).
    """
    kind = type(value)
    if kind is str:
        return len(value)
    if kind in _LEAVES:
        return 1
    if kind is dict:
        return _check_dict(value)
    if kind is list or kind is tuple:
        return _check_list(value)
    if kind is CheckedList:
        return int(value.size) + 1
    return _check_other(value)


# The walk is depth first, members in order, as one recursive `check_native` per value would
# go; the common members (text, numbers, nested objects and lists) are handled in the loop.


def _check_dict(value: dict[Any, Any]) -> int:
    size = len(value) + 1
    for key, member in value.items():
        if type(key) is not str:
            msg = f"object keys must be strings, got {type(key).__name__}"
            raise TypeError(msg)
        kind = type(member)
        if kind is str:
            size += len(member)
        elif kind in _LEAVES:
            continue
        elif kind is dict:
            size += _check_dict(member)
            if size > LIMITS.output:
                return size
        elif kind is list or kind is tuple:
            size += _check_list(member)
            if size > LIMITS.output:
                return size
        elif kind is Decimal or kind is float:
            if not math.isfinite(member):
                msg = "numbers must be finite"
                raise ValueError(msg)
        elif kind is CheckedList:
            size += member.size
        else:
            size += _check_other(member)
    return size


def _check_list(value: list[Any] | tuple[Any, ...]) -> int:
    size = len(value) + 1
    for member in value:
        kind = type(member)
        if kind is str:
            size += len(member)
        elif kind in _LEAVES:
            continue
        elif kind is dict:
            size += _check_dict(member)
            if size > LIMITS.output:
                return size
        elif kind is list or kind is tuple:
            size += _check_list(member)
            if size > LIMITS.output:
                return size
        elif kind is Decimal or kind is float:
            if not math.isfinite(member):
                msg = "numbers must be finite"
                raise ValueError(msg)
        elif kind is CheckedList:
            size += member.size
        else:
            size += _check_other(member)
    return size


def _check_other(value: Any) -> int:
    if isinstance(value, (Decimal, float)):
        if not math.isfinite(value):
            msg = "numbers must be finite"
            raise ValueError(msg)
    elif isinstance(value, Undefined):
        value._fail_with_undefined_error()
    elif isinstance(value, tuple):  # a named tuple, e.g. a `groupby` group
        return native_size(list(value))
    elif isinstance(value, Iterator):
        msg = "a filter chain gives a generator here: end it with '| list'"
        raise TypeError(msg)
    elif isinstance(value, str):  # a str subclass (Markup)
        return len(value)
    elif not isinstance(value, int):  # int subclasses are fine
        msg = f"a value of type {type(value).__name__} cannot be sent (not JSON)"
        raise TypeError(msg)
    return 1
