"""Budgets of mapping evaluation: how big a value may get, and how much work a rule may do.

Jinja's sandbox keeps expressions away from Python internals, but not from spending memory or
time: `'%0999999999d' % 1` asks for a gigabyte, `(((10**64)**64)**64)**64` for minutes of big
integer arithmetic, a nested `for_each` over `range(100000)` for ten billion items. Mapping files
are written by analysts, so a slip must cost one record a `mapping_error`, never the process.

Two kinds of budget, both checked *before* the costly operation runs:

* sizes, per value: no text longer than `LIMITS.text` characters, no list longer than
  `LIMITS.items` items, no integer with more than `LIMITS.digits` digits, no output record
  bigger than `LIMITS.output` (characters of text plus items), and no text made from a list or
  an object (`~`, `string`, `join`, `format`, ...) that would be longer than `LIMITS.text`;
* work, per rule and record (`METER`): every call, operator, `for_each` item and every 128
  characters or items built by a guarded operation is a step, at most `LIMITS.steps`; the
  record's wall time is checked every `CLOCK_EVERY` steps against `LIMITS.seconds`, a generous
  backstop for what steps do not count.

A breach raises `BudgetError` (a Jinja `SecurityError`): the engine turns it into the rule's
`mapping_error`, naming the field, like any failing expression. Messages give sizes only, never
values. The meter is module state: the mapper maps one record at a time, in one thread.
"""

from __future__ import annotations

import re
from time import monotonic
from typing import Any

from jinja2.exceptions import SecurityError

#: One step per this many characters or items built by a guarded operation (a power of two).
CHARS_PER_STEP = 128
#: The wall clock is read once per this many steps.
CLOCK_EVERY = 256
#: log2(10): bits per decimal digit, to bound integers by their bit length (no str() needed).
_BITS_PER_DIGIT = 3.3219280948873626


class Limits:
    """The budgets (see the module docstring); tests lower them, nothing else changes them.

    `text` and `items` stay at or above `CHARS_PER_STEP`: sizes below it are not checked.
    """

    __slots__ = ("digits", "items", "output", "seconds", "steps", "text")

    def __init__(self) -> None:
        self.text = 1_000_000  # characters in one text
        self.items = 100_000  # items in one list (Jinja's own cap on `range`)
        self.digits = 1_000  # decimal digits of one integer
        self.output = 10_000_000  # characters plus items in one output record
        self.steps = 100_000  # evaluation steps per rule and record
        self.seconds = 10.0  # wall time per record (the backstop)

    @property
    def bits(self) -> int:
        return int(self.digits * _BITS_PER_DIGIT) + 1


LIMITS = Limits()


class BudgetError(SecurityError):
    """A mapping expression went over one of its budgets; the message says which, no values."""


class Meter:
    """Steps spent by the current rule, and the current record's deadline."""

    __slots__ = ("deadline", "first_check", "next_check", "steps")

    def __init__(self) -> None:
        self.steps = 0
        self.first_check = self.next_check = CLOCK_EVERY
        self.deadline = monotonic() + LIMITS.seconds

    def start_record(self) -> None:
        """A new source record: a new deadline, and a new rule budget."""
        self.deadline = monotonic() + LIMITS.seconds
        self.first_check = min(CLOCK_EVERY, LIMITS.steps + 1)
        self.steps = 0
        self.next_check = self.first_check

    def start_rule(self) -> None:
        """A new rule (or the stream's checks) of the current record: steps start again."""
        self.steps = 0
        self.next_check = self.first_check

    def rewind(self, steps: int) -> None:
        """Back to an earlier count, to re-run a part exactly as it ran (locating a failure)."""
        self.steps = steps
        self.next_check = min(steps + CLOCK_EVERY, LIMITS.steps + 1)

    def step(self, count: int = 1) -> None:
        self.steps += count
        if self.steps >= self.next_check:
            self.check()

    def charge(self, size: int) -> None:
        """Steps for building `size` characters or items (nothing for small values)."""
        if size >= CHARS_PER_STEP:
            self.step(size // CHARS_PER_STEP)

    def check(self) -> None:
        """Over the steps budget, or past the deadline (read every `CLOCK_EVERY` steps)?"""
        if self.steps > LIMITS.steps:
            msg = f"budget exceeded: more than {LIMITS.steps} evaluation steps in one rule"
            raise BudgetError(msg)
        if monotonic() > self.deadline:
            msg = f"budget exceeded: the record took more than {LIMITS.seconds:g} s to map"
            raise BudgetError(msg)
        self.next_check = min(self.steps + CLOCK_EVERY, LIMITS.steps + 1)


METER = Meter()


# -- sizes ---------------------------------------------------------------------------------------


def check_text(length: int, what: str = "a text") -> None:
    """Refuse building a text of `length` characters if over budget; charge it otherwise."""
    if length > LIMITS.text:
        msg = f"budget exceeded: {what} of {length} characters (limit {LIMITS.text})"
        raise BudgetError(msg)
    if length >= CHARS_PER_STEP:
        METER.step(length // CHARS_PER_STEP)


def check_items(length: int, what: str = "a list") -> None:
    """Refuse building a list of `length` items if over budget; charge it otherwise."""
    if length > LIMITS.items:
        msg = f"budget exceeded: {what} of {length} items (limit {LIMITS.items})"
        raise BudgetError(msg)
    if length >= CHARS_PER_STEP:
        METER.step(length // CHARS_PER_STEP)


def check_bits(bits: int) -> None:
    """Refuse an integer of `bits` bits if it has more digits than the budget allows."""
    if bits > LIMITS.bits:
        digits = int(bits / _BITS_PER_DIGIT) + 1
        msg = f"budget exceeded: a number of about {digits} digits (limit {LIMITS.digits})"
        raise BudgetError(msg)


#: Results whose size needs no check (a call's usual results, tested first).
_SMALL = frozenset({bool, float, type(None)})


def check_result(value: Any) -> Any:
    """After an operation whose size could not be known before: refuse what is over budget.

    Only for operations that grow their input by a bounded factor (escaping, splitting, a
    format with several fields): the allocation happened, but it was bounded.
    """
    kind = type(value)
    if kind in _SMALL:
        return value
    if kind is str or kind is bytes or isinstance(value, (str, bytes)):
        if len(value) >= CHARS_PER_STEP:
            check_text(len(value))
    elif kind is list or kind is tuple or kind is dict or isinstance(value, (list, tuple, dict)):
        if len(value) >= CHARS_PER_STEP:
            check_items(len(value))
    elif kind is int:
        check_bits(value.bit_length())
    return value


#: Types whose text (`str()`) is short and cheap: no walk needed before converting them.
_SCALARS = frozenset({str, int, float, bool, type(None)})


def guard_text(value: Any, indent: int = 0) -> None:
    """Refuse converting `value` to text (`str`, JSON) when the text would be over budget.

    A list of a hundred thousand references to one long text is cheap to build and costs
    gigabytes as text; the walk counts the text it would make and stops at the budget, so it
    costs at most the budget. `indent` is JSON's, added per member and level.
    """
    kind = type(value)
    if kind in _SCALARS:
        if kind is str:
            check_text(len(value))
        return
    size = _text_size(value, LIMITS.text, indent)
    if size > LIMITS.text:
        msg = f"budget exceeded: a value whose text is over {LIMITS.text} characters"
        raise BudgetError(msg)
    METER.charge(size)


def _text_size(value: Any, limit: int, indent: int) -> int:
    """About len(str(value)) (or of its JSON), counted until it passes `limit`."""
    size = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            size += len(item) + 2
        elif isinstance(item, dict):
            size += 2 + len(item) * (4 + depth * indent)
            stack.extend((key, depth + 1) for key in item)
            stack.extend((member, depth + 1) for member in item.values())
        elif isinstance(item, (list, tuple)):
            size += 2 + len(item) * (2 + depth * indent)
            stack.extend((member, depth + 1) for member in item)
        elif type(item) is int:
            size += item.bit_length() // 3 + 1
        else:
            size += 8  # numbers, None, booleans: short texts
        if size > limit:
            return size
    return size


def deep_items(value: Any, limit: int) -> int:
    """Items of a list counting those of the lists and objects in it, until past `limit`."""
    count = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            count += len(item)
            stack.extend(member for member in item if isinstance(member, (list, tuple, dict)))
        elif isinstance(item, dict):
            count += len(item)
            stack.extend(m for m in item.values() if isinstance(m, (list, tuple, dict)))
        if count > limit:
            return count
    return count


# -- format strings ------------------------------------------------------------------------------

#: A printf conversion (`%s`, `%-10.3f`, `%(name)05d`): its width and precision.
_PRINTF = re.compile(
    r"%(?:\([^)]*\))?[#0\- +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d*))?[hlL]?(?P<type>.?)",
    re.DOTALL,
)
_NUMBERS = re.compile(r"\d+")


def check_printf(template: str, args: Any) -> None:
    """Widths and precisions of a `%` format within budget, `*` refused, arguments' text too."""
    for match in _PRINTF.finditer(template):
        for part in ("width", "precision"):
            given = match.group(part)
            if given == "*":
                msg = "budget exceeded: '*' widths and precisions are not allowed in a % format"
                raise BudgetError(msg)
            if given:
                check_text(int(given), f"a % format {part}")
    members = args.values() if isinstance(args, dict) else args if type(args) is tuple else (args,)
    for member in members:
        guard_text(member)


def check_format_spec(spec: str) -> None:
    """Widths and precisions of a `str.format` field (`{:>10}`, `{:.3f}`) within budget."""
    for number in _NUMBERS.findall(spec):
        if len(number) > 9 or int(number) > LIMITS.text:
            check_text(int(number), "a format width or precision")
