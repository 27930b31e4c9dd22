"""Jinja's filters and Python's methods that can build big values, with their budgets first.

Each wrapper computes what its operation would build (a padded width, the replacements of
`replace`, the text of a list) and refuses it through `budgets` before Jinja or Python allocates
anything; operations that grow their input by a bounded factor (escaping, `title`) are checked
after. Everything else in Jinja's filter table is left as Jinja ships it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import wraps
from typing import TYPE_CHECKING, Any, cast

from jinja2 import filters as jinja_filters
from jinja2 import pass_environment, pass_eval_context
from jinja2.nodes import EvalContext

from swap_transforms._compat import (
    SandboxedEscapeFormatter,
    SandboxedFormatter,
    make_attrgetter,
)
from swap_transforms.budgets import (
    CHARS_PER_STEP,
    LIMITS,
    BudgetError,
    check_format_spec,
    check_items,
    check_printf,
    check_result,
    check_text,
    guard_text,
)

if TYPE_CHECKING:
    from jinja2 import Environment


def _sync(name: str) -> Callable[..., Any]:
    """Jinja's filter, its sync variant where it has two (the environment is never async)."""
    function: Callable[..., Any] = jinja_filters.FILTERS[name]
    if getattr(function, "jinja_async_variant", False):
        function = cast("Callable[..., Any]", function.__wrapped__)  # type: ignore[attr-defined]
    return function


def _text_of(value: Any) -> str:
    """`value` as the filters see it (`soft_str`), its size checked before converting."""
    if type(value) is str:
        return value
    guard_text(value)
    return str(value)


def _converting(name: str) -> Callable[..., Any]:
    """A filter that turns its input into text (`upper`, `escape`, ...): input and result checked.

    Its result is at most a few times its input (escaping), so checking it after is bounded.
    """
    function = _sync(name)
    offset = 1 if hasattr(function, "jinja_pass_arg") else 0

    @wraps(function)
    def converting(*args: Any, **kwargs: Any) -> Any:
        if len(args) > offset and type(args[offset]) is not str:
            guard_text(args[offset])
        return check_result(function(*args, **kwargs))

    return converting


_center = _sync("center")


def center(value: Any, width: int = 80) -> str:
    text = _text_of(value)
    if isinstance(width, int):
        check_text(max(width, len(text)), "a centered text")
    return str(_center(text, width))


_indent = _sync("indent")


def indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = _text_of(s)
    step = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    check_text(len(text) + (text.count("\n") + 1) * max(step, 0), "an indented text")
    return str(_indent(text, width, first, blank))


_format = _sync("format")


def format_filter(value: Any, *args: Any, **kwargs: Any) -> str:
    text = _text_of(value)
    check_printf(text, kwargs or args)
    return str(check_result(_format(text, *args, **kwargs)))


_join = _sync("join")


@pass_eval_context
def join(eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    if attribute is not None:
        value = map(make_attrgetter(eval_ctx.environment, attribute), value)
    items = list(value)
    check_items(len(items), "a joined list")
    separator = d if type(d) is str else _text_of(d)
    size = len(separator) * max(len(items) - 1, 0)
    for item in items:
        size += len(item) if type(item) is str else len(_text_of(item))
        if size > LIMITS.text:
            break
    check_text(size, "a joined text")
    return str(_join(eval_ctx, items, separator))


_replace = _sync("replace")


@pass_eval_context
def replace(eval_ctx: EvalContext, s: Any, old: Any, new: Any, count: int | None = None) -> str:
    text, old_text, new_text = _text_of(s), _text_of(old), _text_of(new)
    check_replace(text, old_text, new_text, count)
    return str(_replace(eval_ctx, text, old_text, new_text, count))


def check_replace(text: str, old: str, new: str, count: Any = None) -> None:
    """What `text.replace(old, new, count)` would build, refused if over budget."""
    if len(new) <= len(old):
        return
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    check_text(len(text) + hits * (len(new) - len(old)), "a replaced text")


_wordwrap = _sync("wordwrap")


@pass_environment
def wordwrap(  # noqa: PLR0917 - Jinja's signature: templates pass these by position
    environment: Environment,
    s: Any,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    text = _text_of(s)
    joint = environment.newline_sequence if wrapstring is None else _text_of(wrapstring)
    # At most one line per character: each line break adds `joint`.
    check_text(len(text) + (len(text) + 1) * len(joint), "a wrapped text")
    return str(_wordwrap(environment, text, width, break_long_words, joint, break_on_hyphens))


_batch = _sync("batch")


def batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> Any:
    if isinstance(linecount, int):
        check_items(linecount, "a batch")
    return _batch(value, linecount, fill_with)


_slice = _sync("slice")


def slice_filter(value: Any, slices: int, fill_with: Any = None) -> Any:
    if isinstance(slices, int):
        check_items(slices, "a slice count")
    return _slice(value, slices, fill_with)


def list_filter(value: Any) -> list[Any]:
    items = list(value)
    if len(items) >= CHARS_PER_STEP:  # smaller lists are within budget and free
        check_items(len(items))
    return items


_sum = _sync("sum")


@pass_environment
def sum_filter(
    environment: Environment, iterable: Iterable[Any], attribute: Any = None, start: Any = 0
) -> Any:
    """Jinja's `sum`; lists added in linear time (Python's `sum` copies the total each time)."""
    if type(start) is not list and type(start) is not tuple:
        return _sum(environment, iterable, attribute, start)
    if attribute is not None:
        iterable = map(make_attrgetter(environment, attribute), iterable)
    total = list(start)
    for item in iterable:
        if type(item) is not type(start):
            msg = (
                f'can only concatenate {type(start).__name__} (not "{type(item).__name__}") '
                f"to {type(start).__name__}"
            )
            raise TypeError(msg)
        if len(total) + len(item) > LIMITS.items:
            check_items(len(total) + len(item), "a summed list")
        total.extend(item)
    if len(total) >= CHARS_PER_STEP:  # charges the steps of building it, once
        check_items(len(total), "a summed list")
    return total if type(start) is list else tuple(total)


_tojson = _sync("tojson")


@pass_eval_context
def tojson(eval_ctx: EvalContext, value: Any, indent: int | None = None) -> Any:
    if indent is not None and not (isinstance(indent, int) and 0 <= indent <= 16):
        msg = "budget exceeded: tojson indents by 0 to 16 spaces"
        raise BudgetError(msg)
    guard_text(value, indent or 0)
    return check_result(_tojson(eval_ctx, value, indent))


_int = _sync("int")


def int_filter(value: Any, default: int = 0, base: int = 10) -> int:
    return int(check_result(_int(value, default, base)))


def text(value: Any) -> str:
    """Interpolation into text templates: a null would otherwise become the text 'None'."""
    if type(value) is str:
        return value
    if value is None:
        msg = "a null value was interpolated into text"
        raise TypeError(msg)
    return _text_of(value)


FILTERS: Mapping[str, Callable[..., Any]] = {
    "center": center,
    "indent": indent,
    "format": format_filter,
    "join": join,
    "replace": replace,
    "wordwrap": wordwrap,
    "batch": batch,
    "slice": slice_filter,
    "list": list_filter,
    "sum": sum_filter,
    "tojson": tojson,
    "int": int_filter,
    **{
        name: _converting(name)
        for name in (
            "string",
            "pprint",
            "truncate",
            "urlize",
            "urlencode",
            "xmlattr",
            "escape",
            "e",
            "forceescape",
            "title",
            "upper",
            "lower",
            "capitalize",
            "trim",
            "striptags",
            "wordcount",
            "filesizeformat",
        )
    },
}


def text_concat(parts: tuple[str, ...]) -> str:
    """A text template's parts, each a text `text` checked: the whole checked."""
    joined = "".join(parts)
    if len(joined) >= CHARS_PER_STEP:
        check_text(len(joined))
    return joined


def text_join(parts: tuple[Any, ...]) -> str:
    """`a ~ b` and text templates: each part's text checked, then the whole."""
    for part in parts:
        if type(part) is not str:
            guard_text(part)
    joined = "".join(map(str, parts))
    if len(joined) >= CHARS_PER_STEP:
        check_text(len(joined))
    return joined


# -- methods -------------------------------------------------------------------------------------

_TEXT_TYPES = (str, bytes, bytearray)
#: Methods whose first argument is the width of their result.
_PADDING = frozenset({"center", "ljust", "rjust", "zfill"})


def check_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Before calling a built-in method of a text or a number: what it would build."""
    owner = method.__self__
    name = method.__name__
    if isinstance(owner, _TEXT_TYPES):
        _check_text_method(owner, name, args, kwargs)
    elif type(owner) is int and name == "to_bytes":
        length = args[0] if args else kwargs.get("length", 1)
        if isinstance(length, int):
            check_text(length, "bytes")


def _check_text_method(
    owner: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    if name in _PADDING and args and isinstance(args[0], int):
        check_text(args[0], "a padded text")
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int):
            tab = "\t" if isinstance(owner, str) else b"\t"
            check_text(len(owner) + owner.count(tab) * max(size, 0), "an expanded text")
    elif name == "replace" and len(args) >= 2 and type(args[0]) is type(args[1]) is type(owner):
        check_replace(owner, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count"))
    elif name == "join" and args:
        items = args[0]
        if isinstance(items, (list, tuple)):
            sizes = sum(len(item) if isinstance(item, _TEXT_TYPES) else 0 for item in items)
            check_items(len(items), "a joined list")
            check_text(sizes + len(owner) * max(len(items) - 1, 0), "a joined text")
    elif name == "translate":
        table = args[0] if args else None
        if isinstance(table, Mapping):
            longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
            check_text(len(owner) * longest, "a translated text")


class BudgetFormatter(SandboxedFormatter):
    """`str.format` in the sandbox, with each field's width and text checked first."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        if format_spec:
            check_format_spec(format_spec)
        if type(value) is not str:
            guard_text(value)
        return super().format_field(value, format_spec)

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion is not None and type(value) is not str:
            guard_text(value)
        return super().convert_field(value, conversion)


class BudgetEscapeFormatter(BudgetFormatter, SandboxedEscapeFormatter):
    """The same for `Markup.format` (a text the `escape` filter made)."""
