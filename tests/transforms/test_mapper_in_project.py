"""The mapper in this project: with the real tap, under Meltano, and the project's own files.

The mapper's own tests are in transforms/tests (they travel with the plugin). These need what a
plugin alone does not have: the tap's executable, the `meltano` CLI and meltano.yml, the
repository's editor settings (tests/test_readme_contract.py checks the READMEs' tables).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from emulators.swap import SwapEmulator
from swap_transforms.history import main as history_main
from swap_transforms.source_check import load_sources
from tests.support.shared import REPO, SWAP_NOW
from tests.webhooks.support import emulator_env, isolated_meltano

BIN = Path(sys.executable).parent
TRANSFORMS = REPO / "transforms"
DEFAULT_MAPPING = TRANSFORMS / "swap_to_klaviyo.yml"
SOURCES = TRANSFORMS / "sources" / "tap-swapcommerce"


@pytest.mark.slow
def test_the_shipped_source_schemas_are_what_the_tap_discovers(tmp_path: Path) -> None:
    config = tmp_path / "tap.json"
    config.write_text(json.dumps({"api_key": "k", "store_id": "s"}))
    result = subprocess.run(
        [str(BIN / "tap-swapcommerce"), "--config", str(config), "--discover"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    discovered = {
        entry["tap_stream_id"]: entry["schema"]
        for entry in json.loads(result.stdout)["streams"]
        if entry["tap_stream_id"] != "integration_exceptions"  # the target's contract, passed on
    }
    shipped = load_sources(SOURCES)
    fix = f"write the tap's discovered schemas to {SOURCES}"
    assert shipped.keys() == discovered.keys(), fix
    for stream, found in discovered.items():
        assert shipped[stream] == found, f"{stream}: {fix}"


@pytest.mark.slow
def test_preview_piped_from_the_real_tap(tmp_path: Path) -> None:
    with SwapEmulator(
        returns=25, seed=13, now=SWAP_NOW, api_key="k", store_id="s", rate_limit_per_minute=None
    ) as swap:
        config = tmp_path / "tap.json"
        config.write_text(
            json.dumps(
                {
                    "api_url": swap.url,
                    "api_key": "k",
                    "store_id": "s",
                    "start_date": "2020-01-01T00:00:00Z",
                }
            )
        )
        with subprocess.Popen(
            [str(BIN / "tap-swapcommerce"), "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        ) as tap:
            assert tap.stdout is not None
            result = subprocess.run(
                [str(BIN / "swap-transforms-preview"), "--mapping", str(DEFAULT_MAPPING), "-"],
                stdin=tap.stdout,
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
            tap.stdout.close()
            assert tap.wait(timeout=120) == 0
    assert result.returncode == 0, result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("Summary: 25 source record(s); ")
    assert result.stdout.count("  event     Return Started ") >= 20


def changed_copy(into: Path) -> Path:
    """A copy of transforms/ whose mapping renames a metric and breaks Return Started."""
    copy = into / "transforms"
    shutil.copytree(TRANSFORMS, copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    mapping = copy / "swap_to_klaviyo.yml"
    text = mapping.read_text()
    text = text.replace("metric: Return Received", "metric: Return Arrived")
    text = text.replace(
        '              PortalLink: "{{ record.portal_quick_link | default(none) }}"\n',
        '              PortalLink: "{{ record.portal_quick_link | default(none) }}"\n'
        '              Share: "{{ record.total / 0 }}"\n',
    )
    mapping.write_text(text)
    return mapping


@pytest.mark.slow
def test_history_reads_the_window_from_the_tap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = changed_copy(tmp_path)
    with SwapEmulator(
        returns=60, seed=11, now=SWAP_NOW, api_key="k", store_id="s", rate_limit_per_minute=None
    ) as swap:
        since = "2026-05-01T00:00:00Z"
        expected = sum(1 for r in swap.all_returns() if r["date_updated"] >= since)
        config = tmp_path / "tap.json"
        config.write_text(json.dumps({"api_url": swap.url, "api_key": "k", "store_id": "s"}))
        tap = f"{BIN / 'tap-swapcommerce'} --config {config} --config ENV"
        status = history_main(
            [
                *("--mapping", str(mine), "--base", str(DEFAULT_MAPPING)),
                *("--since", since, "--tap-command", tap),
            ]
        )
        captured = capsys.readouterr()
    out = captured.out + captured.err
    assert status == 0, out
    assert 0 < expected < 60
    assert f".. now: {expected} mapped\n" in out
    assert "  removed: Return Started " in out


@pytest.mark.meltano
@pytest.mark.slow
def test_history_under_meltano_without_bookmark_lock_or_ledger(tmp_path: Path) -> None:
    mine = changed_copy(tmp_path)
    with (
        SwapEmulator(returns=30, seed=11, now=SWAP_NOW, rate_limit_per_minute=None) as swap,
        isolated_meltano(tmp_path) as meltano_env,
    ):
        env = {**os.environ, **emulator_env(swap, "http://127.0.0.1:9", "pk_unused"), **meltano_env}
        result = subprocess.run(
            [
                str(BIN / "meltano"),
                "invoke",
                "swap-transforms:history",
                "--mapping",
                str(mine),
                "--since",
                "2026-01-01",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert ".. now: 30 mapped\n" in result.stdout
        assert "  changed fields: metric " in result.stdout
        database = Path(meltano_env["MELTANO_SYS_DIR_ROOT"]) / "meltano.db"
        with sqlite3.connect(database) as db:
            assert db.execute("SELECT count(*) FROM state").fetchone() == (0,)
            assert db.execute("SELECT count(*) FROM runs").fetchone() == (0,)
        assert not (tmp_path / "ledger.sqlite").exists()


def mapper_under_meltano(mapping_files: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SWAP_TRANSFORMS_MAPPING_FILES"}
    if mapping_files is not None:
        env["SWAP_TRANSFORMS_MAPPING_FILES"] = mapping_files
    return subprocess.run(
        [str(BIN / "meltano"), "invoke", "swap-to-klaviyo"],
        cwd=REPO,
        input="",
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )


@pytest.mark.meltano
@pytest.mark.slow
def test_under_meltano_the_variable_chooses_the_mapping_files(tmp_path: Path) -> None:
    committed = mapper_under_meltano(None)
    assert committed.returncode == 0, committed.stderr[-2000:]
    absent = tmp_path / "absent.yml"
    overridden = mapper_under_meltano(json.dumps([str(absent)]))
    assert overridden.returncode != 0
    assert f"{absent}: file not found" in overridden.stderr


@pytest.mark.parametrize(
    "path",
    [
        DEFAULT_MAPPING,
        TRANSFORMS / "definitions" / "swap_returns.yml",
        TRANSFORMS / "swap_to_klaviyo.tests.yml",
        TRANSFORMS / "contract.yml",
    ],
    ids=lambda p: p.name,
)
def test_the_editor_settings_give_each_file_its_schema(path: Path) -> None:
    """.vscode/settings.json maps the file to the schema its modeline names (one schema)."""
    first = path.read_text().splitlines()[0]
    modeline = re.match(r"^# yaml-language-server: \$schema=(\S+)$", first)
    assert modeline, f"{path} does not start with a yaml-language-server line"
    schema = (path.parent / modeline.group(1)).resolve()
    settings = json.loads((REPO / ".vscode" / "settings.json").read_text())
    patterns = {(REPO / name).resolve(): globs for name, globs in settings["yaml.schemas"].items()}
    assert any(path.relative_to(REPO).match(glob) for glob in patterns[schema]), path
