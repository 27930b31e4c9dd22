"""The Jinja environment mapping expressions run in, and how they are checked and evaluated.

Mapping files are written by analysts, not engineers, so expressions run in Jinja's immutable
sandbox: no access to Python internals (`__class__`, `mro`, `__globals__`), no mutation of the
record, no files or network (nothing that could reach them is exposed). On top of the sandbox,
every expression is checked when the mapping is loaded, so that a typo or an escape attempt stops
the mapper before it reads a message instead of failing on every record:

* every name must be known (`record`, a definition, a `for_each` binding or a helper function),
* filters and tests must exist,
* attributes and constant subscripts starting with `_` are refused.

At run time, `StrictUndefined` turns a missing field into an error, arithmetic mixing the
`Decimal` numbers of Singer records with float literals is made exact, and every operation that
can build a big value or spend long (operators, calls, format strings, filters such as `center`,
`~`) is held to the budgets of `budgets` before it runs.
"""

from __future__ import annotations

import difflib
import io
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any, TypeVar, cast

from jinja2 import Environment, StrictUndefined, TemplateSyntaxError, nodes, pass_environment
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from swap_transforms import guarded, helpers
from swap_transforms._compat import (
    CodeGenerator,
    Frame,
    Parser,
    _GroupTuple,
    exported,
    missing,
    optimizeconst,
)
from swap_transforms._compat import sync_do_unique as _jinja_unique
from swap_transforms.budgets import (
    CHARS_PER_STEP,
    LIMITS,
    METER,
    check_bits,
    check_items,
    check_printf,
    check_result,
    check_text,
    deep_items,
)
from swap_transforms.errors import EvaluationError

#: Jinja's default globals that mappings do not need and that can be abused (`lipsum` builds
#: large texts, `namespace` is the one mutable object templates can create).
_DROPPED_GLOBALS = ("lipsum", "cycler", "joiner", "namespace")

#: Owners of the built-in methods whose arguments `guarded.check_method` checks.
_CHECKED_OWNERS = (str, bytes, bytearray, int)

#: Largest exponent `**` accepts (the result's digits are checked too, see `budgets`).
MAX_EXPONENT = 64

#: Fields of the groups Jinja's `groupby` returns, and their positions in the tuple.
_GROUP_FIELDS = {name: index for index, name in enumerate(_GroupTuple._fields)}

#: Prefix of names the engine itself adds to compiled expressions (loops); refused in mappings.
ENGINE_PREFIX = "_"
#: Prefix of the engine's value-level `for_each` functions (`_loop0`, `_loop1`, ...).
ENGINE_LOOP = f"{ENGINE_PREFIX}loop"


class MappingEnvironment(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment with the mapping helpers and exact, bounded arithmetic."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False)
        for name in _DROPPED_GLOBALS:
            self.globals.pop(name, None)
        # Jinja's filters with an async variant (map, select, list, unique, sum, ...) are
        # wrappers choosing a variant on each call: this environment is never async, so it
        # holds the sync functions themselves.
        assert not self.is_async
        for name, function in list(self.filters.items()):
            if getattr(function, "jinja_async_variant", False):
                self.filters[name] = function.__wrapped__
        self.filters["unique"] = sync_do_unique
        self.filters.update(guarded.FILTERS)
        self.filters.update(helpers.FILTERS)
        self.filters[f"{ENGINE_PREFIX}text"] = guarded.text
        self.tests.update(helpers.TESTS)
        self.globals.update(helpers.FUNCTIONS)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # `record.total` on a JSON object: look the key up first. Jinja tries the Python
        # attribute first (an AttributeError per field access, the costliest step of a
        # mapping) and would return dict methods for keys named `items`, `keys` or `values`.
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                pass
        elif type(obj) is _GroupTuple and attribute in _GROUP_FIELDS:
            # A `groupby` group's `grouper` and `list`: fields of a tuple, which the sandbox
            # would find safe to read after its checks.
            return obj[_GROUP_FIELDS[attribute]]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        # Singer numbers arrive as Decimal; `record.total * 0.9` would raise TypeError.
        if isinstance(left, Decimal) and isinstance(right, float):
            right = Decimal(repr(right))
        elif isinstance(right, Decimal) and isinstance(left, float):
            left = Decimal(repr(left))
        meter = METER  # a step (inline: operators are the hot path)
        meter.steps += 1
        if meter.steps >= meter.next_check:
            meter.check()
        if operator == "*":
            _check_product(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "+":
            _check_sum(left, right)
        elif operator == "%" and isinstance(left, str):
            check_printf(left, right)
            return check_result(left % right)
        return self.binop_table[operator](left, right)

    def call(self, __context: Context, __obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        """A call from an expression: a step, and a built-in method's result size first."""
        meter = METER  # a step (inline: calls are the hot path)
        meter.steps += 1
        if meter.steps >= meter.next_check:
            meter.check()
        if type(__obj) is types.BuiltinMethodType and isinstance(__obj.__self__, _CHECKED_OWNERS):
            guarded.check_method(__obj, args, kwargs)
        return check_result(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`text.format(...)` and `format_map`: Jinja's sandboxed formatter, within budgets."""
        if not isinstance(value, (types.MethodType, types.BuiltinMethodType)) or (
            value.__name__ not in ("format", "format_map")
        ):
            return None
        template = value.__self__
        if not isinstance(template, str):
            return None
        formatter: guarded.BudgetFormatter
        if isinstance(template, Markup):
            formatter = guarded.BudgetEscapeFormatter(self, escape=template.escape)
        else:
            formatter = guarded.BudgetFormatter(self)
        text_type = type(template)
        is_format_map = value.__name__ == "format_map"

        def format_text(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    msg = "format_map() takes exactly one argument"
                    raise TypeError(msg)
                text = formatter.vformat(template, (), args[0])
            else:
                text = formatter.vformat(template, args, kwargs)
            return str(check_result(text_type(text)))

        return format_text


@pass_environment
def sync_do_unique(
    environment: Environment, value: Any, case_sensitive: bool = False, attribute: Any = None
) -> Iterator[Any]:
    """Jinja's `unique` filter, without an attribute getter call per item when there is none.

    Named as Jinja's function, so that a wrong call fails with the same message.
    """
    if attribute is not None:
        return _jinja_unique(environment, value, case_sensitive, attribute)
    return _unique_items(value, case_sensitive)


def _unique_items(value: Any, case_sensitive: bool) -> Iterator[Any]:
    # What sync_do_unique does with no attribute: text compared lower-cased unless asked not to.
    seen = set()
    for item in value:
        key = item.lower() if not case_sensitive and isinstance(item, str) else item
        if key not in seen:
            seen.add(key)
            yield item


def _check_product(left: Any, right: Any) -> None:
    """`*`: a repeated text or list, or a product of integers, within budget before it exists."""
    if type(left) is int and type(right) is int:
        check_bits(left.bit_length() + right.bit_length())
        return
    for sequence, count in ((left, right), (right, left)):
        if not isinstance(count, int) or count <= 0:
            continue
        if isinstance(sequence, (str, bytes)):
            check_text(len(sequence) * count, "'*' would build a text")
        elif isinstance(sequence, (list, tuple)):
            # Counting the items of nested lists: `[[x] * n] * n` holds n * n references.
            items = deep_items(sequence, LIMITS.items)
            check_items(items * count, "'*' would build a list")


def _check_power(base: Any, exponent: Any) -> None:
    """`**`: a bounded exponent, and for integers a result within the digits budget."""
    if isinstance(exponent, (int, Decimal)) and not -MAX_EXPONENT <= exponent <= MAX_EXPONENT:
        msg = f"exponents above {MAX_EXPONENT} are not allowed"
        raise SecurityError(msg)
    if type(base) is int and type(exponent) is int and exponent > 1:
        check_bits(base.bit_length() * exponent)


def _check_sum(left: Any, right: Any) -> None:
    """`+` of texts or lists: the joined length within budget (one `+` at most doubles it)."""
    if isinstance(left, str) and isinstance(right, str):
        size = len(left) + len(right)
        if type(left) is not str or type(right) is not str:
            size *= 6  # Markup (from `escape`): `+` escapes the other side, 6 times longer at most
        if size >= CHARS_PER_STEP:
            check_text(size)
    elif (
        isinstance(left, (list, tuple))
        and isinstance(right, (list, tuple))
        and len(left) + len(right) >= CHARS_PER_STEP
    ):
        check_items(len(left) + len(right))


ENVIRONMENT = MappingEnvironment()
_N = TypeVar("_N", bound=nodes.Node)
GLOBAL_NAMES: frozenset[str] = frozenset(ENVIRONMENT.globals)


class ExpressionError(Exception):
    """An expression cannot be used; `line` is relative to the expression text (1-based)."""

    def __init__(self, message: str, line: int = 1) -> None:
        self.message = message
        self.line = line
        super().__init__(message)


def parse_expression(source: str) -> nodes.Expr:
    """Parse a bare Jinja expression (a condition, a definition); `{{ }}` around it is allowed."""
    text = source.strip()
    if text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1:
        text = text[2:-2]
    try:
        parser = Parser(ENVIRONMENT, text, state="variable")
        expression = parser.parse_expression()
        if not parser.stream.eos:
            token = parser.stream.current
            msg = f"unexpected {token.value!r} after the expression"
            raise ExpressionError(msg, token.lineno)
    except TemplateSyntaxError as error:
        raise ExpressionError(error.message or "syntax error", error.lineno) from None
    return expression


def parse_template(source: str, *, strict_text: bool = True) -> nodes.Expr:
    """Parse a value string containing `{{ }}`.

    One expression alone keeps its native type; text mixed with expressions becomes a string,
    in which (with `strict_text`) a null value is an error rather than the text 'None'.
    """
    try:
        template = ENVIRONMENT.parse(source)
    except TemplateSyntaxError as error:
        raise ExpressionError(error.message or "syntax error", error.lineno) from None
    parts: list[nodes.Node] = []
    for statement in template.body:
        if not isinstance(statement, nodes.Output):
            msg = "only {{ expressions }} are allowed in values, not {% statements %}"
            raise ExpressionError(msg, statement.lineno)
        parts.extend(statement.nodes)
    expressions = [part for part in parts if not isinstance(part, nodes.TemplateData)]
    if len(parts) == 1 and len(expressions) == 1:
        return cast("nodes.Expr", expressions[0])
    pieces: list[nodes.Expr] = []
    for part in parts:
        if isinstance(part, nodes.TemplateData):
            pieces.append(nodes.Const(part.data, lineno=part.lineno))
        elif strict_text:
            text = f"{ENGINE_PREFIX}text"
            pieces.append(nodes.Filter(part, text, [], [], None, None, lineno=part.lineno))
        else:
            pieces.append(cast("nodes.Expr", part))
    return nodes.Concat(pieces, lineno=1)


def check_expression(expression: nodes.Expr, known: Iterable[str]) -> list[ExpressionError]:
    """Problems with names, filters, tests and private attributes in an analyst's expression."""
    known_names = set(known) | GLOBAL_NAMES
    problems: list[ExpressionError] = []
    for name in _walk(expression, nodes.Name):
        if name.ctx == "load" and name.name not in known_names:
            problems.append(ExpressionError(_unknown("name", name.name, known_names), name.lineno))
    for getattr_node in _walk(expression, nodes.Getattr):
        if getattr_node.attr.startswith("_"):
            msg = f"attribute '{getattr_node.attr}' is not allowed ('_' names are private)"
            problems.append(ExpressionError(msg, getattr_node.lineno))
    for getitem in _walk(expression, nodes.Getitem):
        key = getitem.arg
        if (
            isinstance(key, nodes.Const)
            and isinstance(key.value, str)
            and key.value.startswith("_")
        ):
            msg = f"key '{key.value}' is not allowed ('_' names are private)"
            problems.append(ExpressionError(msg, getitem.lineno))
    for node in _walk(expression, (nodes.Filter, nodes.Test)):
        kind = "filter" if isinstance(node, nodes.Filter) else "test"
        table = ENVIRONMENT.filters if kind == "filter" else ENVIRONMENT.tests
        if node.name not in table or node.name.startswith(ENGINE_PREFIX):
            public = {name for name in table if not name.startswith(ENGINE_PREFIX)}
            problems.append(ExpressionError(_unknown(kind, node.name, public), node.lineno))
    return problems


def referenced_names(expression: nodes.Expr) -> set[str]:
    return {name.name for name in _walk(expression, nodes.Name) if name.ctx == "load"}


def _walk(expression: nodes.Expr, kind: type[_N] | tuple[type[_N], ...]) -> Iterator[_N]:
    """The expression's nodes of a kind, itself included (`find_all` skips the root)."""
    if isinstance(expression, kind):
        yield expression
    yield from expression.find_all(kind)


def _unknown(kind: str, name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown {kind} '{name}'{hint}"


class EngineFunction:
    """A function the engine itself puts into compiled expressions (a value-level `for_each`).

    Compiled expressions call it directly, with their context; anything else is called through
    the sandbox.
    """

    __slots__ = ()

    def __call__(self, context: Context, *args: Any) -> Any:
        raise NotImplementedError


class _FunctionCodeGenerator(CodeGenerator):
    """Jinja's code generator, writing an expression as a plain function returning its value.

    Jinja compiles an expression into a template render function: a generator that stores the
    result in a fresh `Context`. Mapping expressions run several times per record, so the
    wrapping is trimmed: `root(scope)` returns the value, and the `Scope` is the context.
    Everything inside the expression (names, attributes, calls, filters, operators) is written
    by Jinja's own generator, so the sandbox checks are the same.
    """

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:  # noqa: N802
        assert frame is None, "no root frame allowed"
        self.writeline("from jinja2.runtime import " + ", ".join(sorted(exported)))
        # Filters and tests are looked up once: the environment is fixed at start-up.
        self.pull_dependencies(node.body)
        self.writeline("def root(context, missing=missing, environment=environment):", extra=1)
        self.indent()
        self.writeline("resolve = context.resolve_or_missing")
        self.writeline("undefined = environment.undefined")
        self.writeline("concat = environment.concat")
        self.writeline("cond_expr_undefined = Undefined")
        frame = Frame(EvalContext(self.environment, self.name))
        frame.symbols.analyze_node(node)
        frame.toplevel = frame.rootlevel = True
        self.enter_frame(frame)
        self.blockvisit(node.body, frame)
        self.leave_frame(frame, with_python_scope=True)
        self.outdent()

    def visit_ExprStmt(self, node: nodes.ExprStmt, frame: Frame) -> None:  # noqa: N802
        # The one statement of a compiled mapping expression (Jinja allows no custom node
        # types; `ExprStmt` is otherwise only made by the `do` extension, which is not loaded).
        self.newline(node)
        self.write("return ")
        self.visit(node.node, frame)

    @optimizeconst
    def visit_Getattr(self, node: nodes.Getattr, frame: Frame) -> None:  # noqa: N802
        # `record.total` on a JSON object that has the key: the value, as
        # `MappingEnvironment.getattr` would return it, without the call. Anything else goes to
        # the environment's getattr (the sandbox's checks) as Jinja writes it.
        obj = self.temporary_identifier()
        self.write(f"({obj}[{node.attr!r}] if type({obj} := ")
        self.visit(node.node, frame)
        self.write(f") is dict and {node.attr!r} in {obj} else environment.getattr({obj}, ")
        self.write(f"{node.attr!r}))")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:  # noqa: N802
        # `a ~ b` and text templates: Jinja's `str_join`, with the parts' and the result's
        # sizes checked (`guarded.text_join`); the environment never autoescapes. A text
        # template's parts are texts already checked by `_text`: only the whole is checked.
        text = f"{ENGINE_PREFIX}text"
        checked = all(
            (isinstance(part, nodes.Const) and type(part.value) is str)
            or (isinstance(part, nodes.Filter) and part.name == text)
            for part in node.nodes
        )
        self.write("text_concat((" if checked else "text_join((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_Call(  # noqa: N802
        self, node: nodes.Call, frame: Frame, forward_caller: bool = False
    ) -> None:
        # The engine's own `for_each` functions (names mappings cannot write) are called
        # directly with the context, once checked to be one; every other call goes through the
        # sandbox as Jinja writes it.
        callee = node.node
        if (
            isinstance(callee, nodes.Name)
            and callee.name.startswith(ENGINE_LOOP)
            and not (node.kwargs or node.dyn_args or node.dyn_kwargs or forward_caller)
        ):
            function = self.temporary_identifier()
            self.write(f"({function}(context")
            self.signature(node, frame)
            self.write(f") if isinstance({function} := ")
            self.visit(callee, frame)
            self.write(f", EngineFunction) else environment.call(context, {function}")
            self.signature(node, frame)
            self.write("))")
            return
        super().visit_Call(node, frame, forward_caller=forward_caller)


def compile_function(expression: nodes.Expr) -> Callable[[Scope], Any]:
    """Compile an expression into `root(scope) -> value` (see `_FunctionCodeGenerator`)."""
    template = nodes.Template([nodes.ExprStmt(expression, lineno=1)], lineno=1)
    template.set_environment(ENVIRONMENT)
    source = io.StringIO()
    _FunctionCodeGenerator(ENVIRONMENT, None, "<mapping>", stream=source).visit(template)
    code = compile(source.getvalue(), "<mapping>", "exec")
    namespace: dict[str, Any] = {
        "environment": ENVIRONMENT,
        "EngineFunction": EngineFunction,
        "text_join": guarded.text_join,
        "text_concat": guarded.text_concat,
        "__file__": "<mapping>",
    }
    exec(code, namespace)  # noqa: S102 - code Jinja's generator wrote for a checked expression
    return cast("Callable[[Scope], Any]", namespace["root"])


class Expression:
    """A compiled expression, evaluated against a `Scope` (compiled once, run per record)."""

    __slots__ = ("function",)

    def __init__(self, expression: nodes.Expr) -> None:
        #: The compiled function; a caller using it directly fails on an Undefined result.
        self.function = compile_function(expression)

    def __call__(self, scope: Scope) -> Any:
        result = self.function(scope)
        if isinstance(result, Undefined):
            result._fail_with_undefined_error()
        return result


_EVAL_CONTEXT = EvalContext(ENVIRONMENT, None)


class Scope(Context):
    """The variables of one evaluation: bindings, then lazily computed definitions, then helpers.

    It is also the Jinja context of the compiled expressions (`resolve_or_missing` is the only
    lookup they make), so evaluating an expression creates no object. A definition is computed
    the first time an expression of this record refers to it and kept for the rest of the
    record; a failure is kept too, so every rule that uses a broken definition reports the same
    error.
    """

    # What Jinja's Context sets per instance and compiled expressions read, shared: they cannot
    # change it (statements such as `{% autoescape %}` are refused when the mapping loads).
    environment = ENVIRONMENT
    eval_ctx = _EVAL_CONTEXT
    name = None

    def __init__(  # Context.__init__ is not called: it builds what is shared above
        self,
        values: dict[str, Any],
        definitions: Mapping[str, Expression],
        names: Mapping[str, Any],
        parent: Scope | None = None,
    ) -> None:
        self._values = values
        self._definitions = definitions
        self._names = names
        self._parent = parent

    def child(self, name: str, value: Any) -> Scope:
        """A scope for one `for_each` item: the binding on top of this scope."""
        return Scope({name: value}, self._definitions, self._names, self)

    def resolve_or_missing(self, key: str) -> Any:
        scope = self
        while True:
            values = scope._values
            if key in values:
                value = values[key]
                if type(value) is _Failure:
                    raise value.error()
                return value
            parent = scope._parent
            if parent is None:
                return scope._define(key)
            scope = parent

    def _define(self, key: str) -> Any:
        definition = self._definitions.get(key)
        if definition is None:
            return self._names.get(key, missing)
        try:
            value = definition.function(self)
            if isinstance(value, Undefined):
                value._fail_with_undefined_error()
        except Exception as error:
            failure = _Failure(key, error)
            self._values[key] = failure
            raise failure.error() from error
        self._values[key] = value
        return value

    def __getitem__(self, key: str) -> Any:
        value = self.resolve_or_missing(key)
        if value is missing:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        scope: Scope | None = self
        while scope is not None:
            if key in scope._values:
                return True
            scope = scope._parent
        return key in self._definitions or key in self._names

    def get_all(self) -> dict[str, Any]:
        # Listing would force every definition: list the bindings only.
        bindings: dict[str, Any] = {}
        scope: Scope | None = self
        while scope is not None:
            for key, value in scope._values.items():
                bindings.setdefault(key, value)
            scope = scope._parent
        return bindings


class _Failure:
    __slots__ = ("cause", "name")

    def __init__(self, name: str, cause: Exception) -> None:
        self.name = name
        self.cause = cause

    def error(self) -> Exception:
        return EvaluationError(f"definition '{self.name}'", self.cause)
