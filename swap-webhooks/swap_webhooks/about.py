"""``swap-webhooks --about``: the receiver's settings as a Singer plugin's ``--about`` shows them.

The settings class (:class:`~swap_webhooks.settings.Settings`) is the one place a setting is
declared: its name, type, default and, in the ``#:`` comment above it, its description. This
module reads them from there, so the README's table and the project's ``meltano.yml`` are checked
against the class rather than kept by hand.
"""

from __future__ import annotations

import ast
import inspect
import json
import shlex
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from swap_webhooks import __version__
from swap_webhooks import settings as settings_module
from swap_webhooks.settings import Settings

NAME = "swap-webhooks"
DESCRIPTION = "Receives Swap's signed return webhooks and triggers the pipeline on each."
#: JSON Schema types of the settings' annotations (as strings: the module uses
#: ``from __future__ import annotations``).
TYPES = {
    "Secret": ["string"],
    "Secret | None": ["string", "null"],
    "str": ["string"],
    "str | None": ["string", "null"],
    "int": ["integer"],
    "float": ["number"],
    "Path": ["string"],
    "Path | None": ["string", "null"],
    "tuple[str, ...]": ["string"],
}


def settings_schema() -> dict[str, Any]:
    """The settings as a JSON Schema, with ``secret`` flags as singer-sdk writes them."""
    comments = _comments()
    properties: dict[str, Any] = {}
    required = []
    for item in fields(Settings):
        kind = str(item.type)
        spec: dict[str, Any] = {"type": TYPES[kind], "description": comments[item.name]}
        if kind.startswith("Secret"):
            spec["secret"] = True
        if item.default is not MISSING:
            spec["default"] = _plain(item.default)
        elif item.default_factory is MISSING:
            required.append(item.name)
        properties[item.name] = spec
    return {"type": "object", "properties": properties, "required": required}


def _plain(value: Any) -> Any:
    """A default as a setting's value is written (a command as one shell-quoted string)."""
    if isinstance(value, tuple):
        return shlex.join(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _comments() -> dict[str, str]:
    """Each field's ``#:`` comment lines, joined: the description the class's source gives it."""
    source = inspect.getsource(settings_module)
    lines = source.splitlines()
    tree = ast.parse(source)
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == Settings.__name__:
            for statement in node.body:
                if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                    found[statement.target.id] = _comment_above(lines, statement.lineno - 1)
    return found


def _comment_above(lines: list[str], index: int) -> str:
    parts: list[str] = []
    while index > 0 and lines[index - 1].strip().startswith("#:"):
        index -= 1
        parts.insert(0, lines[index].strip()[2:].strip())
    return " ".join(parts)


def about(output_format: str) -> str:
    """What ``--about`` prints: JSON (as singer-sdk's) or a Markdown page with a settings table."""
    schema = settings_schema()
    if output_format == "json":
        info = {"name": NAME, "description": DESCRIPTION, "version": __version__}
        return json.dumps({**info, "settings": schema}, indent=2)
    rows = [
        f"| {name} | {name in schema['required']} | {spec.get('default')} | {spec['description']} |"
        for name, spec in schema["properties"].items()
    ]
    return "\n".join(
        [
            f"# `{NAME}`",
            "",
            DESCRIPTION,
            "",
            "## Settings",
            "",
            "| Setting | Required | Default | Description |",
            "|:--------|:--------:|:-------:|:------------|",
            *rows,
            "",
            f"A full list of supported settings is available by running: `{NAME} --about`",
        ]
    )
