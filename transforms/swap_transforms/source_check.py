"""Checking a mapping against the schema of the source stream it reads.

A typo in a field (`record.customer_emial`) is valid Jinja: without the source's schema it loads
and then fails on every record. With it (the SCHEMA message of a run, or the tap's schemas
shipped in `transforms/sources/tap-swapcommerce/` for preview and tests), every field path rooted at
`record`, at a `for_each` item or at a definition built from them is looked up, and:

* a field the schema does not declare is refused, with "did you mean";
* a field the schema lets be null is reported where a null raises: an attribute, key or method
  of it (`record.customer_name.split()`), arithmetic or an ordering comparison on it, iterating
  it (`for_each`, `| join`), text around it (`"swap:{{ record.rma_number }}"`), or the whole
  value of an output field that does not take null. Not reported when a test before it holds
  it (`x and x.y`, `x.y if x else ...`, `x is not none and ...`) or it is given a fallback
  (`x or ''`, `x | default('', true)`).

A field the schema declares but a record leaves out reads as null (see
`MappingEngine.check_source`), so the one rule covers both a null and an absent field.
The analysis is an abstract walk of each expression's Jinja AST: each node gets a `Shape` (the
part of the schema it holds, whether it may be null, which source field it reads).
"""

from __future__ import annotations

import difflib
import json
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import nodes

from swap_transforms.errors import Problem
from swap_transforms.sandbox import ExpressionError, parse_expression, parse_template
from swap_transforms.shipped_files import shipped
from swap_transforms.values import LOOP_KEYS, LOOP_OPTIONAL_KEYS, Site, split_for_each

#: The tap's schemas as `tap-swapcommerce --discover` gives them (tests keep the copies current),
#: shipped with this package.
DEFAULT_SOURCES = shipped("sources") / "tap-swapcommerce"

#: Filters that give the list they get (filtered or reordered): its items keep their shape.
_SAME_LIST = frozenset({"list", "unique", "sort", "reverse", "select", "reject"})
_SAME_LIST_BY_ATTRIBUTE = frozenset({"selectattr", "rejectattr"})
#: Filters and helpers that iterate their input: a null input raises.
_ITERATING = frozenset(
    {
        "list",
        "unique",
        "sort",
        "reverse",
        "select",
        "reject",
        "selectattr",
        "rejectattr",
        "map",
        "join",
        "sum",
        "groupby",
        "first",
        "last",
        "length",
        "count",
        "min",
        "max",
        "batch",
        "slice",
        "field_values",
    }
)
#: Filters that keep None as None (and do not raise on it).
_NULL_KEEPING = frozenset({"money", "iso", "normalize_email"})
_ARITHMETIC = (nodes.Add, nodes.Sub, nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Mod, nodes.Pow)
_ORDERING = frozenset({"lt", "gt", "lteq", "gteq"})
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "lt": operator.lt,
    "gt": operator.gt,
    "lteq": operator.le,
    "gteq": operator.ge,
    "eq": operator.eq,
    "ne": operator.ne,
}
#: Methods Jinja finds on a JSON object besides its keys (`record.get('x')`).
_DICT_METHODS = frozenset({"get", "keys", "values", "items"})


@dataclass(frozen=True)
class Shape:
    """What the checker knows of a value: its schema (None: unknown), null or not, its field."""

    schema: dict[str, Any] | None = None
    nullable: bool = False
    field: str | None = None


UNKNOWN = Shape()


def load_sources(folder: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The shipped source schemas, per stream (`<stream>.json`); none if the folder is absent."""
    path = DEFAULT_SOURCES if folder is None else Path(folder)
    if not path.is_dir():
        return {}
    return {file.stem: json.loads(file.read_text("utf-8")) for file in sorted(path.glob("*.json"))}


def nullable(schema: Any) -> bool:
    """Whether a value of this schema may be null (an unknown or untyped schema may)."""
    if not isinstance(schema, dict):
        return True
    kinds = schema.get("type")
    if kinds is None:
        branches = schema.get("anyOf") or schema.get("oneOf")
        return not branches or any(nullable(branch) for branch in branches)
    return kinds == "null" or (isinstance(kinds, list) and "null" in kinds)


def _properties(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """The declared fields of an object schema, or None when it declares none (open)."""
    if not isinstance(schema, dict):
        return None
    properties = schema.get("properties")
    return properties if isinstance(properties, dict) and properties else None


def _items(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    items = schema.get("items") if isinstance(schema, dict) else None
    return items if isinstance(items, dict) else None


def _array(items: dict[str, Any] | None) -> dict[str, Any]:
    return {"type": "array", "items": items} if items is not None else {"type": "array"}


def _return_items(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the `return_items` helper gives for a Swap return: its shipments' items, flattened."""
    shipments = _items((_properties(record) or {}).get("return_shipments"))
    shipment_fields = _properties(shipments) or {}
    item = _items(shipment_fields.get("items"))
    fields = _properties(item)
    if fields is None:
        return None
    shipment_id = shipment_fields.get("shipment_id", {})
    flat: dict[str, Any] = {**(item or {}), "properties": {**fields, "shipment_id": shipment_id}}
    return _array(flat)


@dataclass
class _Context:
    """Where an expression is (for problems) and what its names stand for."""

    site: Site
    bindings: dict[str, Shape]
    guards: frozenset[str] = frozenset()

    def guarded(self, more: set[str]) -> _Context:
        return _Context(self.site, self.bindings, self.guards | more)


@dataclass
class SourceChecker:
    """Checks what one mapping file does with one source stream against that stream's schema."""

    definitions: dict[str, tuple[Any, Site]]
    record_schema: dict[str, Any]
    #: Each output stream's schema: an output field that does not take null is checked.
    outputs: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    #: Null-safety findings: reported with their fix, but they do not stop the mapping.
    warnings: list[Problem] = field(default_factory=list)
    _shapes: dict[str, Shape] = field(default_factory=dict)
    _seen: set[tuple[str, int | None, str]] = field(default_factory=set)

    # -- entry points ----------------------------------------------------------------------------

    def check_stream(self, raw: dict[str, Any], site: Site) -> list[Problem]:
        for index, check in enumerate(raw.get("checks") or []):
            check_site = site.at("checks").at(index, f"check '{check.get('reason')}'")
            self.expression(check.get("when"), check_site.at("when"), {})
        for index, rule in enumerate(raw.get("rules") or []):
            self.rule(rule, site.at("rules").at(index, f"rule '{rule.get('name')}'"))
        return self.problems

    def rule(self, raw: dict[str, Any], site: Site) -> None:
        bindings: dict[str, Shape] = {}
        if isinstance(raw.get("for_each"), str):
            parsed = split_for_each(raw["for_each"])
            if parsed is not None:
                context = _Context(site.at("for_each"), {})
                items = self.expression(parsed[1], context.site, {})
                item = self.element(
                    items, context, self._parse(parsed[1], context.site, template=False)
                )
                bindings[parsed[0]] = Shape(item.schema, item.nullable, parsed[0])
        guards: set[str] = set()
        if isinstance(raw.get("when"), str):
            node = self._parse(raw["when"], site.at("when"), template=False)
            if node is not None:
                context = _Context(site.at("when"), bindings)
                self.visit(node, context)
                guards = _truthy(node, context)
        for stream, fields in (raw.get("emit") or {}).items():
            context = _Context(site.at("emit").at(stream), bindings, frozenset(guards))
            self.value(fields, context, "", self.outputs.get(stream))

    # -- values ----------------------------------------------------------------------------------

    def value(self, raw: Any, context: _Context, label: str, schema: Any) -> Shape:
        """Walk one field value; `schema` is the output's schema of it, when known."""
        if isinstance(raw, str) and "{{" in raw:
            return self.template(raw, context, label, schema)
        if isinstance(raw, dict):
            if LOOP_KEYS <= set(raw) <= LOOP_KEYS | LOOP_OPTIONAL_KEYS:
                return self.loop(raw, context)
            for key, member in raw.items():
                member_label = f"{label}.{key}" if label else str(key)
                where = context.site.where.split(", field '", 1)[0] + f", field '{member_label}'"
                inner = _Context(context.site.at(key, where), context.bindings, context.guards)
                self.value(member, inner, member_label, _member_schema(schema, key))
            return Shape({"type": "object"})
        if isinstance(raw, list):
            for index, member in enumerate(raw):
                inner = _Context(context.site.at(index), context.bindings, context.guards)
                self.value(member, inner, f"{label}[{index}]", _items(schema))
            return Shape({"type": "array"})
        return Shape(None, raw is None)

    def template(self, raw: str, context: _Context, label: str, schema: Any) -> Shape:
        node = self._parse(raw, context.site, template=True)
        if node is None:
            return UNKNOWN
        if isinstance(node, nodes.Concat):  # text around expressions: a null part raises
            for part in node.nodes:
                if isinstance(part, nodes.Const):
                    continue
                shape = self.visit(part, context)
                self._null_use(shape, context, part, "is written into text", fix="{{ X or '' }}")
            return Shape({"type": "string"})
        shape = self.visit(node, context)
        if schema is not None and not nullable(schema):
            place = f"field '{label}' does not take null, and"
            self._null_use(shape, context, node, "", fix="{{ X or <a fallback> }}", place=place)
        return shape

    def loop(self, raw: dict[str, Any], context: _Context) -> Shape:
        parsed = split_for_each(raw["for_each"]) if isinstance(raw["for_each"], str) else None
        if parsed is None:
            return UNKNOWN
        items_site = context.site.at("for_each")
        items = self.expression(parsed[1], items_site, context.bindings)
        items_node = self._parse(parsed[1], items_site, template=False)
        item = self.element(items, _Context(items_site, context.bindings), items_node)
        bindings = {**context.bindings, parsed[0]: Shape(item.schema, item.nullable, parsed[0])}
        guards: set[str] = set()
        if isinstance(raw.get("when"), str):
            node = self._parse(raw["when"], context.site.at("when"), template=False)
            if node is not None:
                inner = _Context(context.site.at("when"), bindings)
                self.visit(node, inner)
                guards = _truthy(node, inner)
        inner = _Context(context.site.at("value"), bindings, context.guards | guards)
        value = self.value(raw["value"], inner, "", None)
        return Shape(_array(value.schema))

    def expression(self, source: Any, site: Site, bindings: dict[str, Shape]) -> Shape:
        if not isinstance(source, str):
            return UNKNOWN
        node = self._parse(source, site, template=False)
        return UNKNOWN if node is None else self.visit(node, _Context(site, bindings))

    # -- definitions -----------------------------------------------------------------------------

    def definition(self, name: str) -> Shape:
        if name in self._shapes:
            return self._shapes[name]
        self._shapes[name] = UNKNOWN  # a cycle (refused elsewhere) ends here
        raw, site = self.definitions[name]
        if isinstance(raw, str):
            shape = self.expression(raw, site, {})
        else:
            shape = self.value(raw, _Context(site, {}), "", None)
        self._shapes[name] = Shape(shape.schema, shape.nullable, None)
        return self._shapes[name]

    # -- expressions -----------------------------------------------------------------------------

    def visit(self, node: nodes.Node, context: _Context) -> Shape:
        """The shape of `node`, reporting what it gets wrong on the way."""
        if isinstance(node, nodes.Name):
            return self.name(node.name, context)
        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            return self.subscript(node, context)
        if isinstance(node, nodes.Filter):
            return self.filter(node, context)
        if isinstance(node, nodes.Call):
            return self.call(node, context)
        if isinstance(node, nodes.Const):
            return Shape(None, node.value is None)
        return self.operation(node, context)

    def operation(self, node: nodes.Node, context: _Context) -> Shape:
        """Logic, conditions, arithmetic and comparisons; anything else: its parts."""
        if isinstance(node, nodes.And):
            left = self.visit(node.left, context)
            self.visit(node.right, context.guarded(_truthy(node.left, context)))
            return Shape(None, left.nullable)
        if isinstance(node, nodes.Or):
            left = self.visit(node.left, context)
            right = self.visit(node.right, context.guarded(_falsy(node.left, context)))
            return Shape(left.schema if left.schema == right.schema else None, right.nullable)
        if isinstance(node, nodes.CondExpr):
            return self.condition(node, context)
        if isinstance(node, _ARITHMETIC):
            for side in (node.left, node.right):
                self._null_use(self.visit(side, context), context, side, "is used in arithmetic")
            return UNKNOWN
        if isinstance(node, nodes.Compare):
            return self.compare(node, context)
        for child in node.iter_child_nodes():
            self.visit(child, context)
        return UNKNOWN

    def subscript(self, node: nodes.Getattr | nodes.Getitem, context: _Context) -> Shape:
        """`x.key`, `x['key']` (a field) or `x[0]` (an item)."""
        if isinstance(node, nodes.Getattr):
            return self.member(node, node.node, node.attr, context)
        key = node.arg
        if isinstance(key, nodes.Const) and isinstance(key.value, str):
            return self.member(node, node.node, key.value, context)
        base = self.visit(node.node, context)
        self.visit(key, context)
        self._null_use(base, context, node, "is indexed", fix="{{ (X or []) }}")
        return self.element(base, context, None)

    def name(self, name: str, context: _Context) -> Shape:
        if name in context.bindings:
            return context.bindings[name]
        if name == "record":
            return Shape(self.record_schema, False, "record")
        if name in self.definitions:
            return self.definition(name)
        return UNKNOWN

    def member(self, node: nodes.Expr, base_node: nodes.Expr, key: str, context: _Context) -> Shape:
        """`base.key` / `base['key']`: the field must be declared; a null base raises."""
        base = self.visit(base_node, context)
        what = f"has its '{key}' read"
        self._null_use(base, context, node, what, fix="{{ X and X.KEY }}", key=key)
        fields = _properties(base.schema)
        if fields is None:
            return UNKNOWN
        if key not in fields:
            if key not in _DICT_METHODS:
                owner = f"'{base.field}' has" if base.field else "this object has"
                self._unknown_field(owner, key, fields, context, node)
            return UNKNOWN
        path = f"{base.field}.{key}" if base.field else None
        return Shape(fields[key], nullable(fields[key]), path)

    def element(self, base: Shape, context: _Context, node: nodes.Node | None) -> Shape:
        """An item of a list (a `for_each` binding, a subscript)."""
        if node is not None:
            self._null_use(base, context, node, "is iterated", fix="{{ X or [] }}")
        item = _items(base.schema)
        return Shape(item, nullable(item) if item is not None else False)

    def filter(self, node: nodes.Filter, context: _Context) -> Shape:
        name = node.name
        base = self.visit(node.node, context) if node.node is not None else UNKNOWN
        for argument in [*node.args, *(pair.value for pair in node.kwargs)]:
            self.visit(argument, context)
        if name in ("default", "d"):
            return self._defaulted(base, node)
        if name in _ITERATING:
            what = f"goes through '| {name}'"
            self._null_use(base, context, node.node or node, what, fix="{{ X or [] }}")
        attribute = _attribute_argument(node)
        if attribute is not None:
            self._check_attribute(base, attribute, context, node)
        return _filtered(name, base, attribute)

    def call(self, node: nodes.Call, context: _Context) -> Shape:
        callee = node.node
        for argument in [*node.args, *(pair.value for pair in node.kwargs)]:
            self.visit(argument, context)
        if isinstance(callee, nodes.Getattr):  # a method: of a null value, it raises
            base = self.visit(callee.node, context)
            if _properties(base.schema) is None or callee.attr in _DICT_METHODS:
                what = f"has its method '{callee.attr}' called"
                fix = "{{ (X or '')." + callee.attr + "() }}"
                self._null_use(base, context, callee, what, fix=fix)
                return UNKNOWN
        self.visit(callee, context)
        return UNKNOWN

    def condition(self, node: nodes.CondExpr, context: _Context) -> Shape:
        self.visit(node.test, context)
        then = self.visit(node.expr1, context.guarded(_truthy(node.test, context)))
        if node.expr2 is None:
            return Shape(then.schema, True)
        other = self.visit(node.expr2, context.guarded(_falsy(node.test, context)))
        schema = then.schema if then.schema == other.schema else None
        return Shape(schema, then.nullable or other.nullable)

    def compare(self, node: nodes.Compare, context: _Context) -> Shape:
        left = self.visit(node.expr, context)
        for operand in node.ops:
            right = self.visit(operand.expr, context)
            if operand.op in _ORDERING:
                self._null_use(left, context, node.expr, "is compared with '<' or '>'")
                self._null_use(right, context, operand.expr, "is compared with '<' or '>'")
            left = right
        return Shape({"type": "boolean"})

    # -- problems --------------------------------------------------------------------------------

    def _defaulted(self, base: Shape, node: nodes.Filter) -> Shape:
        fallback = node.args[0] if node.args else None
        keeps_null = not (
            isinstance(fallback, nodes.Const) and fallback.value is not None and _boolean(node)
        )
        return Shape(base.schema, base.nullable and keeps_null, base.field if keeps_null else None)

    def _check_attribute(
        self, base: Shape, attribute: str, context: _Context, node: nodes.Node
    ) -> None:
        item = _items(base.schema)
        first = attribute.split(".", 1)[0]
        fields = _properties(item)
        if fields is not None and first not in fields:
            owner = f"the items of '{base.field}' have" if base.field else "the items have"
            self._unknown_field(owner, first, fields, context, node)

    def _unknown_field(
        self, owner: str, key: str, fields: dict[str, Any], context: _Context, node: nodes.Node
    ) -> None:
        close = difflib.get_close_matches(key, sorted(fields), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        message = f"unknown field '{key}': {owner} no such field in the source schema{hint}"
        self._report(context, node, message)

    def _null_use(
        self,
        shape: Shape,
        context: _Context,
        node: nodes.Node,
        what: str,
        *,
        fix: str = "",
        place: str = "",
        key: str = "",
    ) -> None:
        """Report a field that may be null used where null raises, unless a test guards it."""
        if not shape.nullable or shape.field is None or shape.field in context.guards:
            return
        field_name = shape.field
        shown_fix = fix.replace("X", field_name).replace("KEY", key) if fix else ""
        advice = f": write {shown_fix}" if shown_fix else ""
        if place:
            message = f"{place} {field_name} may be null{advice}"
        else:
            message = f"{field_name} may be null and {what}, which fails on null{advice}"
        self._report(context, node, message, warning=True)

    def _report(
        self, context: _Context, node: nodes.Node, message: str, *, warning: bool = False
    ) -> None:
        problem = context.site.problem(message, getattr(node, "lineno", 1) or 1)
        identity = (problem.file, problem.line, problem.message)
        if identity not in self._seen:
            self._seen.add(identity)
            (self.warnings if warning else self.problems).append(problem)

    def _parse(self, source: str, site: Site, *, template: bool) -> nodes.Expr | None:
        try:
            if template:
                return parse_template(source, strict_text=False)
            return parse_expression(source)
        except ExpressionError:
            return None  # reported when the mapping loaded


def _filtered(name: str, base: Shape, attribute: str | None) -> Shape:
    """What a filter gives, from what it gets (lists keep their items' schema)."""
    item = _items(base.schema)
    if name in _SAME_LIST or name in _SAME_LIST_BY_ATTRIBUTE:
        return Shape(_array(item))
    if name in ("map", "field_values") and attribute is not None:
        return Shape(_array(_field_of(item, attribute)))
    if name in ("first", "last"):
        return Shape(item, True)
    if name == "return_items":
        return Shape(_return_items(base.schema))
    if name in _NULL_KEEPING:
        return Shape(None, base.nullable, base.field)
    return UNKNOWN


def _member_schema(schema: Any, key: str) -> Any:
    fields = _properties(schema)
    return None if fields is None else fields.get(key)


def _field_of(item: dict[str, Any] | None, attribute: str) -> dict[str, Any] | None:
    fields = _properties(item)
    return None if fields is None else fields.get(attribute.split(".", 1)[0])


def _attribute_argument(node: nodes.Filter) -> str | None:
    """The field a filter reads from each item: `map(attribute='x')`, `selectattr('x')`, ..."""
    for pair in node.kwargs:
        if pair.key == "attribute" and isinstance(pair.value, nodes.Const):
            value = pair.value.value
            return value if isinstance(value, str) else None
    if node.name in ("selectattr", "rejectattr", "groupby", "field_values") and node.args:
        first = node.args[0]
        if isinstance(first, nodes.Const) and isinstance(first.value, str):
            return first.value
    return None


def _boolean(node: nodes.Filter) -> bool:
    """`default(x, true)`: the fallback replaces null too, not only a missing value."""
    flags = [*node.args[1:2], *(pair.value for pair in node.kwargs if pair.key == "boolean")]
    return any(isinstance(flag, nodes.Const) and flag.value is True for flag in flags)


def _fields_tested(node: nodes.Node, context: _Context) -> Iterator[str]:
    """Source fields read directly by `node` (a `record.x.y` chain or a binding's field)."""
    checker_names = context.bindings
    chain: list[str] = []
    current = node
    while isinstance(current, (nodes.Getattr, nodes.Getitem)):
        if isinstance(current, nodes.Getattr):
            chain.append(current.attr)
        elif isinstance(current.arg, nodes.Const) and isinstance(current.arg.value, str):
            chain.append(current.arg.value)
        else:
            return
        current = current.node
    if isinstance(current, nodes.Name):
        root = checker_names.get(current.name)
        base = root.field if root is not None and root.field else current.name
        if current.name == "record" or root is not None:
            yield ".".join([base, *reversed(chain)]) if chain else base


def _truthy(node: nodes.Node, context: _Context) -> set[str]:
    """Fields that cannot be null when `node` holds (`x`, `x is not none`, `x > 0`, `a and b`)."""
    if isinstance(node, nodes.And):
        return _truthy(node.left, context) | _truthy(node.right, context)
    if isinstance(node, nodes.Not):
        return _falsy(node.node, context)
    if isinstance(node, nodes.Test) and node.name in ("none", "defined"):
        return set(_fields_tested(node.node, context)) if node.name == "defined" else set()
    if isinstance(node, nodes.Compare):
        return set(_fields_tested(node.expr, context)) | _fallback_fails(node, context)
    if isinstance(node, nodes.Filter):
        return set(_fields_tested(node.node, context)) if node.node is not None else set()
    return set(_fields_tested(node, context))


def _fallback_fails(node: nodes.Compare, context: _Context) -> set[str]:
    """`(x or 0) > 0`: when it holds, x is not null (the fallback alone does not satisfy it)."""
    left = node.expr
    if not (isinstance(left, nodes.Or) and isinstance(left.right, nodes.Const)):
        return set()
    if len(node.ops) != 1 or not isinstance(node.ops[0].expr, nodes.Const):
        return set()
    operand = node.ops[0]
    compare = _COMPARE.get(operand.op)
    if compare is None:
        return set()
    try:
        holds = compare(left.right.value, operand.expr.value)  # type: ignore[attr-defined]
    except TypeError:
        return set()
    return set() if holds else _truthy(left.left, context)


def _falsy(node: nodes.Node, context: _Context) -> set[str]:
    """Fields that cannot be null when `node` does not hold (`x is none`, `not x`, `a or b`)."""
    if isinstance(node, nodes.Or):
        return _falsy(node.left, context) | _falsy(node.right, context)
    if isinstance(node, nodes.Not):
        return _truthy(node.node, context)
    if isinstance(node, nodes.Test) and node.name == "none":
        return set(_fields_tested(node.node, context))
    return set()


def absent_as_null(schema: dict[str, Any]) -> dict[str, None]:
    """Top-level fields a record may leave out that then read as null (declared, nullable)."""
    required = set(schema.get("required") or ())
    return {
        name: None
        for name, member in (_properties(schema) or {}).items()
        if name not in required and nullable(member)
    }
