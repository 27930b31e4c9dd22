"""Each plugin's Meltano definition and README settings table say what the plugin declares.

Both are generated from the plugin (``python -m tests.support.plugin_definitions --write``); a
setting added or changed in a plugin fails here until they follow. The slow test adds every
plugin from its definition to a new Meltano project, as another project would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.plugin_definitions import (
    DEFINITIONS,
    path_of,
    readme_of,
    readme_with_table,
    rendered,
    settings_table,
)


@pytest.mark.parametrize("plugin", DEFINITIONS)
def test_plugin_definition_is_current(plugin: str) -> None:
    assert path_of(plugin).read_text(encoding="utf-8") == rendered(plugin), (
        f"{path_of(plugin)} is stale: python -m tests.support.plugin_definitions --write"
    )


@pytest.mark.parametrize("plugin", DEFINITIONS)
def test_readme_settings_table_is_current(plugin: str) -> None:
    readme = readme_of(plugin).read_text(encoding="utf-8")
    assert readme_with_table(plugin, readme) == readme, (
        f"{readme_of(plugin)}'s settings table is stale: "
        "python -m tests.support.plugin_definitions --write"
    )


def test_the_table_lists_every_setting_of_the_plugin() -> None:
    table = settings_table("target-klaviyo")
    for name in ("api_key", "request_timeout", "lock_timeout_seconds", "max_set_aside_ratio"):
        assert f"\n| {name} |" in table


@pytest.mark.slow
@pytest.mark.meltano
def test_another_project_adds_each_plugin_from_its_definition(tmp_path: Path) -> None:
    (tmp_path / "meltano.yml").write_text(
        "version: 1\nproject_id: elsewhere\ndefault_environment: dev\nenvironments:\n- name: dev\n"
    )
    meltano = Path(sys.executable).with_name("meltano")
    env = {
        **os.environ,
        "SWAP_KLAVIYO_GIT": "file:///nowhere",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    for plugin, (kind, *_) in DEFINITIONS.items():
        subprocess.run(
            [
                str(meltano),
                "add",
                kind[:-1],
                plugin,
                "--from-ref",
                str(path_of(plugin)),
                "--no-install",
            ],
            cwd=tmp_path,
            env=env,
            check=True,
            capture_output=True,
        )
    project = yaml.safe_load((tmp_path / "meltano.yml").read_text())
    added = {p["name"]: p for plugins in project["plugins"].values() for p in plugins}
    assert set(added) == set(DEFINITIONS)
    assert added["target-klaviyo"]["pip_url"].endswith("#subdirectory=target-klaviyo")
    settings = {s["name"]: s for s in added["target-klaviyo"]["settings"]}
    assert settings["request_timeout"]["kind"] == "decimal"
    assert settings["api_key"]["sensitive"] is True
