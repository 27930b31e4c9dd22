"""A quick first look at output records: True only for records the JSON Schema validator accepts.

Every output record is validated against its output's JSON Schema (fastjsonschema) and most of
them are valid. For the keywords the mapper's schemas use, `compile_quick_check` writes a
plain Python function that answers "certainly valid" with fewer steps than the full validator.
It is conservative: anything it is not sure about (an unusual type, a subclass, a failed
check) answers False, and the engine then runs the full validator, which decides and names the
problem. So a record is accepted exactly when the full validator accepts it.

A schema using any other keyword gets no quick check (None).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

#: Keywords that only annotate a schema.
_ANNOTATIONS = frozenset({"$comment", "description", "title", "examples"})
_KEYWORDS = _ANNOTATIONS | {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "anyOf",
    "minLength",
    "maxLength",
    "format",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
    "maxProperties",
}
#: Bounds on numbers, as the comparison a valid value passes.
_NUMBER_BOUNDS = (
    ("minimum", ">="),
    ("maximum", "<="),
    ("exclusiveMinimum", ">"),
    ("exclusiveMaximum", "<"),
)
#: A plain number (not bool, not a subclass): the values the validator bounds.
_NUMBER = "(type({v}) is int or type({v}) is float or type({v}) is Decimal)"
#: Conditions under which a value has the JSON type: exact Python types (a subclass answers
#: False and the full validator decides), and any list (the validator takes lists and tuples).
_TYPES = {
    "string": "type({v}) is str",
    "number": "(type({v}) is int or type({v}) is float or type({v}) is Decimal)",
    "integer": "type({v}) is int",
    "boolean": "type({v}) is bool",
    "null": "{v} is None",
    "object": "type({v}) is dict",
    "array": "isinstance({v}, list)",
}


class _UnsupportedError(Exception):
    pass


class _Writer:
    def __init__(self, regexes: Mapping[str, Any]) -> None:
        self.regexes = regexes
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {"Decimal": Decimal}
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def constant(self, prefix: str, value: Any) -> str:
        name = self.name(prefix)
        self.constants[name] = value
        return name

    def function(self, schema: Any) -> str:
        """A function `name(v) -> bool` for `schema`, written into `lines`; returns its name."""
        name = self.name("check")
        body: list[str] = []
        self.checks(schema, "v", body, "    ")
        self.lines.append(f"def {name}(v):")
        self.lines.extend(body)
        self.lines.append("    return True")
        return name

    def checks(self, schema: Any, v: str, out: list[str], pad: str) -> None:
        """Lines that `return False` unless `v` certainly satisfies `schema`."""
        if not isinstance(schema, dict) or not set(schema) <= _KEYWORDS:
            raise _UnsupportedError
        if "type" in schema:
            kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not kinds or not all(isinstance(k, str) and k in _TYPES for k in kinds):
                raise _UnsupportedError
            condition = " or ".join(_TYPES[kind].format(v=v) for kind in kinds)
            out.append(f"{pad}if not ({condition}): return False")
        self.text_checks(schema, v, out, pad)
        self.bound_checks(schema, v, out, pad)
        if {"properties", "required", "additionalProperties"} & set(schema):
            # The validator applies these to any dict; here only to plain dicts.
            out.append(f"{pad}if isinstance({v}, dict):")
            inner = pad + "    "
            out.append(f"{inner}if type({v}) is not dict: return False")
            self.object_checks(schema, v, out, inner)
        if "items" in schema:
            if not isinstance(schema["items"], dict):
                raise _UnsupportedError
            item = self.name("i")
            out.append(f"{pad}if isinstance({v}, (list, tuple)):")
            out.append(f"{pad}    for {item} in {v}:")
            self.checks(schema["items"], item, out, pad + "        ")
        if "anyOf" in schema:
            branches = schema["anyOf"]
            if not isinstance(branches, list) or not branches:
                raise _UnsupportedError
            names = [self.function(branch) for branch in branches]
            out.append(f"{pad}if not ({' or '.join(f'{name}({v})' for name in names)}):")
            out.append(f"{pad}    return False")

    def text_checks(self, schema: dict[str, Any], v: str, out: list[str], pad: str) -> None:
        tests = []
        for keyword, operator in (("minLength", ">="), ("maxLength", "<=")):
            if keyword in schema:
                bound = schema[keyword]
                if not isinstance(bound, int) or isinstance(bound, bool):
                    raise _UnsupportedError
                tests.append(f"len({v}) {operator} {bound}")
        if "format" in schema:
            # The validator's own pattern for the format (others: no quick check).
            regex = self.regexes.get(f"{schema['format']}_re_pattern")
            if schema["format"] != "date-time" or regex is None:
                raise _UnsupportedError
            tests.append(f"{self.constant('format', regex)}.match({v}) is not None")
        if "pattern" in schema:
            regex = self.regexes.get(schema["pattern"])
            if regex is None:
                raise _UnsupportedError
            tests.append(f"{self.constant('pattern', regex)}.search({v}) is not None")
        if tests:
            out.append(f"{pad}if isinstance({v}, str) and not ({' and '.join(tests)}):")
            out.append(f"{pad}    return False")

    def bound_checks(self, schema: dict[str, Any], v: str, out: list[str], pad: str) -> None:
        """Number ranges and list or object sizes (other types pass these keywords)."""
        numbers = [
            f"{v} {operator} {self.bound(schema[keyword])}"
            for keyword, operator in _NUMBER_BOUNDS
            if keyword in schema
        ]
        if numbers:
            out.append(f"{pad}if {_NUMBER.format(v=v)} and not ({' and '.join(numbers)}):")
            out.append(f"{pad}    return False")
        sizes = [
            (kind, f"len({v}) {operator} {self.bound(schema[keyword], integer=True)}")
            for keyword, kind, operator in (
                ("minItems", "(list, tuple)", ">="),
                ("maxItems", "(list, tuple)", "<="),
                ("maxProperties", "dict", "<="),
            )
            if keyword in schema
        ]
        for kind, test in sizes:
            out.append(f"{pad}if isinstance({v}, {kind}) and not ({test}): return False")

    def bound(self, value: Any, *, integer: bool = False) -> str:
        """A bound written into the check's code; anything but a plain number is unsupported."""
        allowed = (int,) if integer else (int, float)
        if type(value) not in allowed or (type(value) is float and not math.isfinite(value)):
            raise _UnsupportedError
        return repr(value)

    def object_checks(self, schema: dict[str, Any], v: str, out: list[str], pad: str) -> None:
        required = schema.get("required", [])
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        if not (isinstance(required, list) and all(isinstance(k, str) for k in required)):
            raise _UnsupportedError
        if not isinstance(properties, dict) or not (
            extra is True or extra is False or isinstance(extra, dict)
        ):
            raise _UnsupportedError
        if required:
            keys = self.constant("required", frozenset(required))
            out.append(f"{pad}if not {keys} <= {v}.keys(): return False")
        for key, subschema in properties.items():
            member = self.name("p")
            out.append(f"{pad}if {key!r} in {v}:")
            out.append(f"{pad}    {member} = {v}[{key!r}]")
            self.checks(subschema, member, out, pad + "    ")
        if extra is False:  # a closed object: no other field
            declared = self.constant("declared", frozenset(properties))
            out.append(f"{pad}if not {v}.keys() <= {declared}: return False")
        if isinstance(extra, dict):
            declared = self.constant("declared", frozenset(properties))
            key, member = self.name("k"), self.name("p")
            out.append(f"{pad}for {key}, {member} in {v}.items():")
            out.append(f"{pad}    if {key} not in {declared}:")
            self.checks(extra, member, out, pad + "        ")


def compile_quick_check(schema: Any, regexes: Mapping[str, Any]) -> Callable[[Any], bool] | None:
    """A function that is True only for values the schema's validator accepts, or None.

    `regexes` are the compiled patterns of that validator (its `REGEX_PATTERNS`), so that
    formats and patterns are matched exactly as it matches them.
    """
    writer = _Writer(regexes)
    try:
        top = writer.function(schema)
    except _UnsupportedError:
        return None
    namespace = dict(writer.constants)
    exec("\n".join(writer.lines), namespace)  # noqa: S102 - code written above from the schema
    check: Callable[[Any], bool] = namespace[top]
    return check


def validator_regexes(validate: Callable[..., Any]) -> Mapping[str, Any]:
    """The compiled patterns a fastjsonschema validator uses (none if it has no such table)."""
    table = getattr(validate, "__globals__", {}).get("REGEX_PATTERNS", {})
    return table if isinstance(table, dict) else {}
