"""meltano.yml declares each plugin's settings exactly as the plugin's config_jsonschema does."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest
import yaml

from swap_transforms.mapper import SwapTransformsMapper
from swap_webhooks.settings import Settings as WebhookSettings
from tap_swapcommerce.tap import TapSwapCommerce
from target_klaviyo.target import TargetKlaviyo
from tests.support.shared import REPO

PROJECT = yaml.safe_load((REPO / "meltano.yml").read_text())
PLUGINS = {
    plugin["name"]: plugin
    for kind in PROJECT["plugins"].values()
    for plugin in kind
    if "inherit_from" not in plugin
}
#: Settings every singer-sdk plugin gets from the SDK itself; meltano.yml need not list them.
SDK_BUILTINS = {
    "stream_maps",
    "stream_map_config",
    "faker_config",
    "flattening_enabled",
    "flattening_max_depth",
    "flattening_max_key_length",
    "flattening_separator",
    "add_record_metadata",
    "load_method",
    "validate_records",
    "batch_config",
}


@pytest.mark.parametrize(
    ("name", "plugin_class"),
    [
        ("tap-swapcommerce", TapSwapCommerce),
        ("swap-transforms", SwapTransformsMapper),
        ("target-klaviyo", TargetKlaviyo),
    ],
)
def test_settings_match_config_jsonschema(name: str, plugin_class: Any) -> None:
    declared = {s["name"]: s for s in PLUGINS[name]["settings"]}
    schema = plugin_class.config_jsonschema["properties"]
    assert set(declared) == set(schema) - SDK_BUILTINS
    for key, setting in declared.items():
        secret = bool(schema[key].get("secret") or schema[key].get("writeOnly"))
        assert bool(setting.get("sensitive")) == secret, f"{name}.{key}: sensitive flag"
        default = schema[key].get("default")
        if default is not None and "value" in setting and "$" not in str(setting["value"]):
            assert setting["value"] == default, f"{name}.{key}: default differs"


def test_every_secret_comes_from_the_environment() -> None:
    for environment in PROJECT["environments"]:
        for kind in environment.get("config", {}).get("plugins", {}).values():
            for plugin in kind:
                sensitive = {
                    s["name"] for s in PLUGINS[plugin["name"]]["settings"] if s.get("sensitive")
                }
                for key, value in (plugin.get("config") or {}).items():
                    if key in sensitive:
                        assert str(value).startswith("${"), f"{plugin['name']}.{key} in meltano.yml"


def test_pipeline_names_are_the_public_contract() -> None:
    mapper = PLUGINS["swap-transforms"]
    assert [m["name"] for m in mapper["mappings"]] == ["swap-to-klaviyo"]
    jobs = {job["name"]: job["tasks"] for job in PROJECT["jobs"]}
    assert jobs["returns-to-klaviyo"] == ["tap-swapcommerce swap-to-klaviyo target-klaviyo"]
    schedule = next(s for s in PROJECT["schedules"] if s["job"] == "returns-to-klaviyo")
    assert schedule["interval"] == "*/5 * * * *"
    assert PROJECT["default_environment"] == "sandbox"
    assert {e["name"] for e in PROJECT["environments"]} == {"sandbox", "prod"}


def test_webhook_receiver_settings_match_its_settings_class() -> None:
    declared = {s["name"]: s for s in PLUGINS["swap-webhooks"]["settings"]}
    assert set(declared) == {f.name for f in fields(WebhookSettings)}
    assert declared["webhook_secret"].get("sensitive") is True
    sensitive = [n for n, s in declared.items() if s.get("sensitive")]
    assert sensitive == ["webhook_secret", "alert_webhook_url"]
    # The receiver's runs go through the launcher (README, "Several commands at once").
    assert declared["run_command"]["value"] == "swap-meltano run returns-to-klaviyo"
