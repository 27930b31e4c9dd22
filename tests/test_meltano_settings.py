"""meltano.yml's settings say what each plugin declares: name, kind, label, description, default.

The plugins are the one source (``config_jsonschema``; swap-webhooks' settings class). A setting
added to a plugin, or a kind, default or description changed there, fails here until meltano.yml
follows: ``python -m tests.support.meltano_settings --write`` regenerates its settings.
"""

from __future__ import annotations

from tests.support import meltano_settings
from tests.support.meltano_settings import (
    REPO,
    differences,
    expected_setting,
    rewrite,
    schema_errors,
)


def test_meltano_yml_settings_agree_with_the_plugins() -> None:
    problems = differences()
    assert not problems, "\n".join(problems)


def test_meltano_yml_is_valid_for_meltano() -> None:
    problems = schema_errors()
    assert not problems, "\n".join(problems)


def test_regenerating_changes_nothing() -> None:
    text = (REPO / "meltano.yml").read_text(encoding="utf-8")
    assert rewrite(text) == text


def test_a_number_setting_is_a_decimal_in_meltano() -> None:
    spec = {"type": ["number", "null"], "default": 30, "description": "d", "title": "T"}
    assert expected_setting("request_timeout", spec) == {
        "name": "request_timeout",
        "kind": "decimal",
        "label": "T",
        "description": "d",
        "value": 30,
    }


def test_a_drifted_kind_or_missing_description_is_named(monkeypatch) -> None:
    declared = meltano_settings.declared_settings()
    target = declared["target-klaviyo"]
    timeout = next(s for s in target if s["name"] == "request_timeout")
    timeout["kind"] = "integer"
    del timeout["description"]
    monkeypatch.setattr(meltano_settings, "declared_settings", lambda: declared)
    problems = differences()
    assert "target-klaviyo: request_timeout: kind 'integer', the plugin says 'decimal'" in problems
    assert any(p.startswith("target-klaviyo: request_timeout: description None") for p in problems)
