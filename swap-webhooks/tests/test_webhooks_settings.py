"""Settings: where they come from, in which order, and that the secret never shows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from swap_webhooks import Secret, SettingsError, load_settings
from swap_webhooks.runner import check_command, resolve_command

SECRET = "whsk_settings_test_0123456789abcdef0123"


def test_environment_wins_over_the_file_which_wins_over_defaults(tmp_path: Path) -> None:
    config = tmp_path / "webhooks.json"
    config.write_text(
        json.dumps(
            {"store_id": "from_file", "port": 9000, "coalesce_seconds": 2, "host": "0.0.0.0"}
        )
    )
    env = {
        "SWAP_WEBHOOKS_WEBHOOK_SECRET": SECRET,
        "SWAP_WEBHOOKS_STORE_ID": "from_env",
        "SWAP_WEBHOOKS_RUN_COMMAND": "meltano --environment=prod run returns-to-klaviyo",
        "SWAP_WEBHOOKS_PROJECT_DIR": str(tmp_path),
    }

    settings = load_settings(config, env=env, port=9100)

    assert settings.store_id == "from_env"
    assert settings.host == "0.0.0.0"
    assert settings.port == 9100
    assert settings.coalesce_seconds == 2.0
    assert settings.run_command == ("meltano", "--environment=prod", "run", "returns-to-klaviyo")
    assert settings.state_db == tmp_path / "runtime" / "swap-webhooks.sqlite"
    assert settings.max_body_bytes == 1_048_576
    assert settings.webhook_secret.reveal() == SECRET


def test_project_dir_defaults_to_meltanos_project_root(tmp_path: Path) -> None:
    env = {
        "SWAP_WEBHOOKS_WEBHOOK_SECRET": SECRET,
        "SWAP_WEBHOOKS_STORE_ID": "s",
        "MELTANO_PROJECT_ROOT": str(tmp_path),
        "SWAP_WEBHOOKS_RUN_COMMAND": '["/opt/x/meltano", "run", "a job"]',
    }
    settings = load_settings(env=env)
    assert settings.project_dir == tmp_path
    assert settings.run_command == ("/opt/x/meltano", "run", "a job")


def test_the_secret_never_shows_in_repr_str_or_errors() -> None:
    settings = load_settings(env={}, webhook_secret=SECRET, store_id="s")
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)
    assert str(settings.webhook_secret) == "***"
    assert settings.webhook_secret == Secret(SECRET)
    with pytest.raises(SettingsError) as caught:
        load_settings(env={}, webhook_secret=["not", "a", SECRET], store_id="s")
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"webhook_secret": ""}, "webhook_secret is required"),
        ({"store_id": ""}, "store_id is required"),
        ({"port": "eighty"}, "port"),
        ({"port": 70000}, "port"),
        ({"max_body_bytes": 10}, "max_body_bytes"),
        ({"coalesce_seconds": -1}, "coalesce_seconds"),
        ({"run_command": ""}, "run_command"),
        ({"run_command": "[1, 2]"}, "run_command"),
    ],
)
def test_bad_values_are_refused_with_the_setting_named(
    changes: dict[str, Any], message: str
) -> None:
    values: dict[str, Any] = {"webhook_secret": SECRET, "store_id": "s", **changes}
    with pytest.raises(SettingsError, match=message):
        load_settings(env={}, **values)


def test_unknown_settings_in_the_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "webhooks.json"
    config.write_text(json.dumps({"webhook_secret": SECRET, "store_id": "s", "colaesce": 1}))
    with pytest.raises(SettingsError, match="colaesce"):
        load_settings(config, env={})


def test_the_run_command_is_the_launcher_by_default() -> None:
    settings = load_settings(env={}, webhook_secret=SECRET, store_id="s")
    assert settings.run_command == ("swap-meltano", "run", "returns-to-klaviyo")


def test_the_launcher_is_found_on_path_or_beside_meltanos_own_link(tmp_path: Path) -> None:
    """Under ``meltano invoke`` the project's venv need not be on PATH, but Meltano links its
    executable at run/bin, and the launcher is installed beside it."""
    settings = load_settings(env={}, webhook_secret=SECRET, store_id="s", project_dir=tmp_path)
    empty_path = {"PATH": str(tmp_path / "nothing-here")}
    assert check_command(settings, empty_path) is not None

    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    for name in ("meltano", "swap-meltano"):
        (venv_bin / name).write_text("#!/bin/sh\n")
        (venv_bin / name).chmod(0o755)
    link = tmp_path / "sys" / "run" / "bin"
    link.parent.mkdir(parents=True)
    link.symlink_to(venv_bin / "meltano")
    env = {**empty_path, "MELTANO_SYS_DIR_ROOT": str(tmp_path / "sys")}
    launcher = str(venv_bin / "swap-meltano")
    assert resolve_command(settings, env) == (launcher, "run", "returns-to-klaviyo")
    assert check_command(settings, env) is None
    bare = settings.with_changes(run_command=("meltano", "run", "returns-to-klaviyo"))
    assert resolve_command(bare, env)[0] == str(link)

    on_path = tmp_path / "bin"
    on_path.mkdir()
    (on_path / "swap-meltano").write_text("#!/bin/sh\n")
    (on_path / "swap-meltano").chmod(0o755)
    found = resolve_command(settings, {**env, "PATH": str(on_path)})[0]
    assert found == str(on_path / "swap-meltano")
