"""``swap-webhooks --about``: every setting of the settings class, described by its comment."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from swap_webhooks import __version__
from swap_webhooks.about import about, settings_schema
from swap_webhooks.cli import main
from swap_webhooks.settings import Settings


def test_every_setting_has_a_description_type_and_default() -> None:
    schema = settings_schema()
    assert list(schema["properties"]) == [f.name for f in fields(Settings)]
    for name, spec in schema["properties"].items():
        assert spec["description"], f"{name} has no #: comment in settings.py"
    # webhook_secret and store_id are required unless brands_file routes every brand's store
    # (Settings checks it; a schema cannot say "one or the other" to Meltano).
    assert schema["required"] == []
    assert schema["properties"]["port"] == {
        "type": ["integer"],
        "description": "Port to listen on.",
        "default": 8765,
    }
    assert schema["properties"]["retention_days"]["type"] == ["number"]
    assert schema["properties"]["webhook_secret"]["secret"] is True
    assert schema["properties"]["run_command"]["default"] == "swap-meltano run returns-to-klaviyo"


def test_about_prints_json_and_a_markdown_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--about"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["version"] == __version__
    assert info["settings"] == settings_schema()
    table = about("markdown")
    assert "| max_connections | False | 256 |" in table


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["--version"])
    assert ended.value.code == 0
    assert capsys.readouterr().out.strip() == f"swap-webhooks {__version__}"
