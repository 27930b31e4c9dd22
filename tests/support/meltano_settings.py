"""meltano.yml's ``settings:`` derived from each plugin's own declaration, and checked against it.

Each plugin declares its settings once: the Singer plugins in their ``config_jsonschema``, the
webhook receiver in its settings class (``swap-webhooks --about``). Meltano needs them again in
``meltano.yml`` (kind, label, description, default, sensitive), so ``expected_settings`` derives
that list and ``differences`` names every place the file says something else. Run
``python -m tests.support.meltano_settings`` to see them.

A project may set its own value where the plugin's default does not fit a Meltano project
(``PROJECT_VALUES``: paths under ``${MELTANO_PROJECT_ROOT}``, the default mapping file).
"""

from __future__ import annotations

import copy
import json
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from swap_transforms.mapper import SwapTransformsMapper
from swap_webhooks.about import settings_schema
from tap_swapcommerce.tap import TapSwapCommerce
from target_klaviyo.target import TargetKlaviyo

REPO = Path(__file__).resolve().parents[2]

#: The plugins whose settings meltano.yml declares.
PLUGINS = ("tap-swapcommerce", "swap-transforms", "target-klaviyo", "swap-webhooks")
#: Settings whose value in meltano.yml is the project's own, not the plugin's default.
PROJECT_VALUES = {
    ("swap-transforms", "mapping_files"),
    ("target-klaviyo", "ledger_url"),
    ("target-klaviyo", "dry_run_path"),
    ("swap-webhooks", "project_dir"),
    ("swap-webhooks", "state_db"),
    ("swap-webhooks", "run_log_dir"),
}
#: JSON Schema types as Meltano's setting kinds.
KINDS = {
    "string": "string",
    "integer": "integer",
    "number": "decimal",
    "boolean": "boolean",
    "array": "array",
    "object": "object",
}


def plugin_schemas() -> dict[str, dict[str, Any]]:
    """Each plugin's settings as a JSON Schema, from the plugin's own declaration."""
    schemas = {"swap-webhooks": settings_schema()}
    for plugin in (TapSwapCommerce, SwapTransformsMapper, TargetKlaviyo):
        schema = copy.deepcopy(plugin.config_jsonschema)
        builtin: dict[str, Any] = {"properties": {}}
        plugin.append_builtin_config(builtin)
        schema["builtin"] = set(builtin["properties"])
        schemas[plugin.name] = schema
    return schemas


def expected_setting(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The ``settings:`` entry Meltano needs for one JSON Schema property."""
    types = spec.get("type", "string")
    types = [t for t in (types if isinstance(types, list) else [types]) if t != "null"]
    kind = KINDS[types[0]]
    if spec.get("format") == "date-time":
        kind = "date_iso8601"
    if "enum" in spec:
        kind = "options"
    entry: dict[str, Any] = {"name": name, "kind": kind}
    if "title" in spec:
        entry["label"] = spec["title"]
    entry["description"] = spec.get("description")
    if spec.get("secret"):
        entry["sensitive"] = True
    if spec.get("default") is not None:
        entry["value"] = spec["default"]
    if "enum" in spec:
        entry["options"] = [v for v in spec["enum"] if v is not None]
    return entry


def declared_settings() -> dict[str, list[dict[str, Any]]]:
    project = yaml.safe_load((REPO / "meltano.yml").read_text(encoding="utf-8"))
    return {
        plugin["name"]: plugin.get("settings", [])
        for plugins in project["plugins"].values()
        for plugin in plugins
        if plugin["name"] in PLUGINS
    }


def schema_errors() -> list[str]:
    """Where meltano.yml breaks Meltano's own JSON Schema for project files."""
    schema = json.loads(files("meltano.schemas").joinpath("meltano.schema.json").read_text())
    project = yaml.safe_load((REPO / "meltano.yml").read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"meltano.yml: {'/'.join(map(str, e.path))}: {e.message}"
        for e in validator.iter_errors(project)
    ]


def differences() -> list[str]:
    """Every disagreement between meltano.yml's settings and the plugins' declarations."""
    schemas = plugin_schemas()
    found: list[str] = []
    for plugin, settings in declared_settings().items():
        schema = schemas[plugin]
        builtin = schema.get("builtin", set())
        by_name = {s["name"]: s for s in settings}
        for name, spec in schema["properties"].items():
            if name in builtin and name not in by_name:
                continue
            expected = expected_setting(name, spec)
            if name not in by_name:
                found.append(f"{plugin}: {name} is not in meltano.yml (expected {expected})")
                continue
            found += _compare(plugin, expected, by_name[name])
        for name in sorted(set(by_name) - set(schema["properties"])):
            found.append(f"{plugin}: meltano.yml declares {name}, which the plugin does not have")
    return found


def _label(option: dict[str, Any]) -> str:
    label = option["label"]
    return label if isinstance(label, str) else str(option["value"]).title()


def _compare(plugin: str, expected: dict[str, Any], declared: dict[str, Any]) -> list[str]:
    name = expected["name"]
    problems = []
    for key in ("kind", "label", "description"):
        if key in expected and declared.get(key) != expected[key]:
            problems.append(f"{key} {declared.get(key)!r}, the plugin says {expected[key]!r}")
    if bool(declared.get("sensitive")) != bool(expected.get("sensitive")):
        problems.append(f"sensitive {declared.get('sensitive')!r}")
    if (plugin, name) not in PROJECT_VALUES and declared.get("value") != expected.get("value"):
        problems.append(
            f"value {declared.get('value')!r}, the plugin's default is {expected.get('value')!r}"
        )
    if "options" in expected:
        values = [o.get("value") for o in declared.get("options", [])]
        if values != expected["options"]:
            problems.append(f"options {values!r}, the plugin says {expected['options']!r}")
    return [f"{plugin}: {name}: {p}" for p in problems]


def rewrite(text: str) -> str:
    """meltano.yml's text with each plugin's ``settings:`` regenerated from the plugin.

    The file's order, options and project values are kept; missing settings are appended; the
    rest of the file (comments too) is untouched.
    """
    schemas = plugin_schemas()
    lines = text.splitlines(keepends=True)
    for plugin in PLUGINS:
        start, end = _settings_block(lines, plugin)
        declared = yaml.safe_load("".join(lines[start:end])) or []
        lines[start:end] = _render(plugin, schemas[plugin], declared)
    return "".join(lines)


def _settings_block(lines: list[str], plugin: str) -> tuple[int, int]:
    """The line range of a plugin's settings items (after its ``    settings:`` line)."""
    at = lines.index(f"  - name: {plugin}\n")
    while lines[at] != "    settings:\n":
        at += 1
    end = at + 1
    while end < len(lines) and lines[end].startswith(("    - ", "      ")):
        end += 1
    return at + 1, end


def _render(plugin: str, schema: dict[str, Any], declared: list[dict[str, Any]]) -> list[str]:
    builtin = schema.get("builtin", set())
    by_name = {s["name"]: s for s in declared}
    names = [s["name"] for s in declared if s["name"] in schema["properties"]]
    names += [n for n in schema["properties"] if n not in by_name and n not in builtin]
    entries = []
    for name in names:
        entry = expected_setting(name, schema["properties"][name])
        old = by_name.get(name, {})
        if "label" not in entry and "label" in old:
            entry = {"name": name, "kind": entry["kind"], "label": old["label"], **entry}
        if (plugin, name) in PROJECT_VALUES and "value" in old:
            entry["value"] = old["value"]
        if "options" in entry:
            # Labels as text: YAML reads a bare Off as false, which Meltano's schema refuses.
            entry["options"] = [
                {"label": _label(o), "value": o["value"]}
                for o in old.get("options") or [{"label": v, "value": v} for v in entry["options"]]
            ]
        entries.append(entry)
    dumped = yaml.safe_dump(entries, sort_keys=False, width=10_000, allow_unicode=True)
    return [f"    {line}\n" for line in dumped.splitlines()]


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        path = REPO / "meltano.yml"
        path.write_text(rewrite(path.read_text(encoding="utf-8")), encoding="utf-8")
    problems = schema_errors() + differences()
    print("\n".join(problems) or "meltano.yml is valid and its settings agree with the plugins")
    sys.exit(1 if problems else 0)
