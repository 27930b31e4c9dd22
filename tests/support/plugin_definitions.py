"""Each plugin's Meltano plugin definition (``<folder>/<plugin>.yml``), derived from the plugin.

Another Meltano project adds a plugin with ``meltano add <type> <plugin> --from-ref <file>``;
the file says how to install and run it and which settings it has. Its settings come from the
plugin's own declaration (``meltano_settings.expected_setting``), with the plugin's defaults (not
this project's values), so the file stays true to the plugin when the plugin changes:
``python -m tests.support.plugin_definitions --write`` regenerates them, and a test checks them.

``pip_url`` installs from a clone of this repository named by ``SWAP_KLAVIYO_GIT`` (Meltano
expands variables in ``pip_url``): ``https://github.com/<owner>/<repo>.git``, or ``file:///path``.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import sys
from pathlib import Path
from typing import Any

import yaml
from singer_sdk.plugin_base import PluginBase

from swap_transforms.mapper import SwapTransformsMapper
from swap_webhooks.about import about
from tap_swapcommerce.tap import TapSwapCommerce
from target_klaviyo.target import TargetKlaviyo
from tests.support.meltano_settings import REPO, expected_setting, plugin_schemas

#: Meltano name -> (plugin type, folder, namespace, executable, label, description).
DEFINITIONS: dict[str, tuple[str, str, str, str, str, str]] = {
    "tap-swapcommerce": (
        "extractors",
        "tap-swapcommerce",
        "tap_swapcommerce",
        "tap-swapcommerce",
        "Swap Commerce",
        "Swap Commerce Returns API: returns, returned lines, refunds and restocks",
    ),
    "swap-transforms": (
        "mappers",
        "transforms",
        "swap_transforms",
        "swap-transforms",
        "Swap transforms",
        "Singer inline mapper applying YAML/Jinja mapping files",
    ),
    "target-klaviyo": (
        "loaders",
        "target-klaviyo",
        "target_klaviyo",
        "target-klaviyo",
        "Klaviyo",
        "Klaviyo bulk events, profile imports and catalog inventory, with a delivery ledger",
    ),
    "swap-webhooks": (
        "utilities",
        "swap-webhooks",
        "swap_webhooks",
        "swap-webhooks",
        "Swap webhooks",
        "Receiver of Swap's signed return webhooks: each triggers a pipeline run",
    ),
}
#: Extras the plugin definition installs (the report's charts; a ledger on PostgreSQL).
EXTRAS = {"target-klaviyo": "[report,postgres]"}
CAPABILITIES = {
    "tap-swapcommerce": ["catalog", "discover", "state", "about", "stream-maps"],
    "swap-transforms": ["about"],
    "target-klaviyo": ["about"],
    "swap-webhooks": [],
}
#: Commands of a plugin that need nothing of this project.
COMMANDS = {
    "swap-webhooks": {
        "serve": {"args": "serve", "description": "Receive Swap webhooks and trigger the pipeline."}
    },
    "target-klaviyo": {
        name: {"executable": "klaviyo-ops", "args": f"--config ENV {name}", "description": text}
        for name, text in (
            ("summary", "What reached Klaviyo and what was set aside, and why."),
            ("dead-letters", "Export the set-aside records as JSON Lines (owner-readable only)."),
            ("replay", "Send set-aside records again once their cause is fixed."),
            ("purge", "Clear personal data older than retention_days from the ledger."),
            ("schema", "The ledger's schema revision and this release's."),
        )
    },
}


def definition(plugin: str) -> dict[str, Any]:
    kind, folder, namespace, executable, label, description = DEFINITIONS[plugin]
    schema = plugin_schemas()[plugin]
    builtin = schema.get("builtin", set())
    extras = EXTRAS.get(plugin, "")
    found: dict[str, Any] = {
        "name": plugin,
        "namespace": namespace,
        "variant": "swap-klaviyo",
        "label": label,
        "description": description,
        "pip_url": f"{plugin}{extras} @ git+${{SWAP_KLAVIYO_GIT}}#subdirectory={folder}",
        "executable": executable,
    }
    if CAPABILITIES[plugin]:
        found["capabilities"] = CAPABILITIES[plugin]
    found["settings"] = [
        expected_setting(name, spec)
        for name, spec in schema["properties"].items()
        if name not in builtin
    ]
    required = [n for n in schema.get("required", []) if n not in builtin]
    if required and kind == "extractors":
        found["settings_group_validation"] = [required]
    if plugin in COMMANDS:
        found["commands"] = COMMANDS[plugin]
    return found


def rendered(plugin: str) -> str:
    kind, folder = DEFINITIONS[plugin][:2]
    head = (
        f"# Meltano plugin definition of {plugin} ({kind[:-1]}), generated from the plugin by\n"
        "# `python -m tests.support.plugin_definitions --write` (a test checks it is current).\n"
        f"#   meltano add {kind[:-1]} {plugin} --from-ref <clone>/{folder}/{plugin}.yml\n"
        "# with SWAP_KLAVIYO_GIT set to the repository's git URL (or file:///path/to/clone).\n"
    )
    body = yaml.safe_dump(definition(plugin), sort_keys=False, width=10_000, allow_unicode=True)
    return head + body


def path_of(plugin: str) -> Path:
    return REPO / DEFINITIONS[plugin][1] / f"{plugin}.yml"


# -- the READMEs' settings tables ----------------------------------------------------------------

#: The markers around a README's generated settings table.
TABLE_START = "<!-- settings table: generated from `{exe} --about --format=markdown` -->\n"
TABLE_END = "<!-- end of the generated settings table -->\n"


def about_markdown(plugin: str) -> str:
    """What ``<executable> --about --format=markdown`` prints (in-process: no start-up cost)."""
    if plugin == "swap-webhooks":
        return about("markdown")
    classes: dict[str, type[PluginBase]] = {
        "tap-swapcommerce": TapSwapCommerce,
        "swap-transforms": SwapTransformsMapper,
        "target-klaviyo": TargetKlaviyo,
    }
    plugin_class = classes[plugin]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        plugin_class.print_about("markdown")
    return out.getvalue()


def settings_table(plugin: str) -> str:
    """The settings table of ``--about --format=markdown``, between the README's markers."""
    lines = about_markdown(plugin).splitlines()
    first = lines.index("| Setting | Required | Default | Description |")
    rows = itertools.takewhile(lambda line: line.startswith("|"), lines[first:])
    table = "\n".join(rows) + "\n"
    start = TABLE_START.format(exe=DEFINITIONS[plugin][3])
    return f"{start}\n{table}\n{TABLE_END}"


def readme_of(plugin: str) -> Path:
    return REPO / DEFINITIONS[plugin][1] / "README.md"


def readme_with_table(plugin: str, text: str) -> str:
    """The README's text with its generated settings table replaced by the current one."""
    start = TABLE_START.format(exe=DEFINITIONS[plugin][3])
    begin = text.index(start)
    end = text.index(TABLE_END, begin) + len(TABLE_END)
    return text[:begin] + settings_table(plugin) + text[end:]


def stale_files() -> dict[Path, str]:
    """Generated files that differ from what the plugins say now: path -> current text."""
    found: dict[Path, str] = {}
    for name in DEFINITIONS:
        if not path_of(name).is_file() or path_of(name).read_text(encoding="utf-8") != rendered(
            name
        ):
            found[path_of(name)] = rendered(name)
        readme = readme_of(name).read_text(encoding="utf-8")
        if readme_with_table(name, readme) != readme:
            found[readme_of(name)] = readme_with_table(name, readme)
    return found


if __name__ == "__main__":
    # --write regenerates the stale files; --check (or nothing) lists them and fails.
    write = sys.argv[1:] == ["--write"]
    for path, text in stale_files().items():
        print(f"{path}: {'regenerated' if write else 'stale (run with --write)'}")
        if write:
            path.write_text(text, encoding="utf-8")
        else:
            sys.exit(1)
