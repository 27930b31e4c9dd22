"""``vars:``: named values a mapping file declares and its rules test, set per deployment.

A mapping file may declare ``vars: {send_customer_block: true}``; its expressions read them as
``vars.send_customer_block``. The mapper's ``vars`` setting overrides them for one deployment (a
brand keeping Shopify as the owner of names and addresses sets ``send_customer_block: false``),
without editing the file. Everything is checked before the first record: a name an expression
reads that the file does not declare, an override of a name no mapping declares, an override of
another type than the declared value (``"false"`` for a boolean would be true).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from swap_transforms.errors import Problem

#: The name expressions use to read the file's vars.
VARS_NAME = "vars"
#: ``vars.name`` or ``vars['name']`` in an expression's text.
_READ = re.compile(r"\bvars\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*['\"]([^'\"]+)['\"]\s*\])")


def names_read(value: Any) -> Iterable[str]:
    """The var names the expressions in ``value`` (a field, a rule, a whole stream) read."""
    if isinstance(value, str):
        for match in _READ.finditer(value):
            yield match.group(1) or match.group(2)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from names_read(item)
    elif isinstance(value, list):
        for item in value:
            yield from names_read(item)


def undeclared(value: Any, declared: Mapping[str, Any]) -> list[str]:
    """Messages for each var ``value`` reads that is not declared (with a did-you-mean)."""
    messages = []
    for name in sorted(set(names_read(value)) - set(declared)):
        close = difflib.get_close_matches(name, sorted(declared), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        known = ", ".join(sorted(declared)) or "none"
        messages.append(f"'vars.{name}' is not declared in vars: (declared: {known}){hint}")
    return messages


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    return type(value).__name__


def apply_overrides(
    declared: Iterable[tuple[str, dict[str, Any]]], overrides: Mapping[str, Any]
) -> list[Problem]:
    """Set ``overrides`` in each file's vars (``(file, vars)`` pairs) that declares them.

    The dicts are changed in place: they are the ones the compiled expressions read. Returns
    the problems: a name no file declares, a value of another type than the declared one.
    """
    files = list(declared)
    problems: list[Problem] = []
    for name, value in overrides.items():
        holders = [(path, variables) for path, variables in files if name in variables]
        if not holders:
            every = sorted({n for _, variables in files for n in variables})
            close = difflib.get_close_matches(name, every, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            message = f"setting vars: '{name}' is not declared by any mapping file{hint}"
            problems.append(Problem("swap-transforms config", None, "", message))
            continue
        for path, variables in holders:
            default = variables[name]
            if default is not None and _kind(default) != _kind(value):
                message = (
                    f"setting vars: '{name}' must be a {_kind(default)} like the declared "
                    f"value, not a {_kind(value)}"
                )
                problems.append(Problem(path, None, "vars", message))
                continue
            variables[name] = value
    return problems
