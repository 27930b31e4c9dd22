"""The brands file: checked with file and line, each brand's settings and nothing of another's."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from swap_brands.config import BrandsFileError, load_brands
from swap_brands.ledgers import ledger_url, summarize
from swap_brands.runs import brand_env, run_command
from target_klaviyo.ledger import Outcome
from tests.support.ledger import migrated_ledger
from tests.support.shared import REPO

GOOD = """\
version: 1
defaults:
  environment: prod
  ledger: {kind: postgres, url_env: LEDGERS_URL}
brands:
- name: acme
  store_id: store_acme
  swap_api_key_env: ACME_SWAP_KEY
  klaviyo_api_key_env: ACME_KLAVIYO_KEY
  alert_webhook_url_env: ACME_ALERTS
  overrides:
    mapping_files: [transforms/swap_to_klaviyo.yml, brands/acme.yml]
    backfill_after_hours: 48
    schedule: '*/15 * * * *'
- name: globex
  store_id: store_globex
  swap_api_key_env: GLOBEX_SWAP_KEY
  klaviyo_api_key_env: GLOBEX_KLAVIYO_KEY
"""

ENV = {
    "ACME_SWAP_KEY": "swap-acme",
    "ACME_KLAVIYO_KEY": "pk_acme",
    "ACME_ALERTS": "http://127.0.0.1:9/acme",
    "GLOBEX_SWAP_KEY": "swap-globex",
    "GLOBEX_KLAVIYO_KEY": "pk_globex",
    "LEDGERS_URL": "postgresql+psycopg://agency:pw@db.internal:5432/ledgers",
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "brands.yml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(BrandsFileError) as caught:
        load_brands(write(tmp_path, text))
    return caught.value.problems


def test_the_projects_example_file_is_valid() -> None:
    brands = load_brands(REPO / "brands.yml")
    assert [b.name for b in brands.brands] == ["acme", "globex"]
    assert brands.brand("globex").schedule == "*/10 * * * *"


def test_each_brand_has_its_own_state_id_schema_and_schedule(tmp_path: Path) -> None:
    brands = load_brands(write(tmp_path, GOOD))
    acme, globex = brands.brands
    assert acme.state_id == "prod:tap-swapcommerce-to-target-klaviyo:acme"
    assert globex.state_id == "prod:tap-swapcommerce-to-target-klaviyo:globex"
    assert (acme.schedule, globex.schedule) == ("*/15 * * * *", "*/5 * * * *")
    assert ledger_url(acme, tmp_path, ENV).endswith("ledgers?options=-csearch_path%3Dbrand_acme")
    assert "brand_globex" in ledger_url(globex, tmp_path, ENV)
    assert run_command(acme)[1:] == [
        "--environment=prod",
        "run",
        "--state-id-suffix=acme",
        "returns-to-klaviyo",
    ]


@pytest.mark.parametrize(
    ("change", "line", "needle"),
    [
        ("  store_id: store_globex\n", 15, "'store_id' is a required property"),
        ("  swap_api_key_env: GLOBEX_SWAP_KEY\n", 15, "'swap_api_key_env' is a required"),
    ],
)
def test_a_missing_field_names_file_and_line(
    tmp_path: Path, change: str, line: int, needle: str
) -> None:
    found = problems(tmp_path, GOOD.replace(change, ""))
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'brands.yml'}:{line}: brands.1: ")
    assert needle in found[0]


def test_a_secret_written_instead_of_its_variable_name_is_refused(tmp_path: Path) -> None:
    [found] = problems(tmp_path, GOOD.replace("ACME_KLAVIYO_KEY", "pk_live_abc123"))
    assert found.startswith(f"{tmp_path / 'brands.yml'}:9: brands.0.klaviyo_api_key_env:")
    assert "must name an environment variable" in found
    assert "pk_live_abc123" not in found


def test_unknown_keys_bad_names_duplicates_and_syntax_errors_name_their_line(
    tmp_path: Path,
) -> None:
    [typo] = problems(tmp_path, GOOD.replace("    backfill_after_hours", "    backfil_after_hours"))
    assert ":13: brands.0.overrides:" in typo
    assert "'backfil_after_hours' was unexpected" in typo
    [name] = problems(tmp_path, GOOD.replace("name: globex", "name: Globex Inc"))
    assert ":15: brands.1.name:" in name
    [twice] = problems(tmp_path, GOOD.replace("store_id: store_globex", "store_id: store_acme"))
    assert ":16: store_id 'store_acme' is already brand 1's (line 7)" in twice
    [same_name] = problems(tmp_path, GOOD.replace("name: globex", "name: acme"))
    assert ":15: name 'acme' is already brand 1's (line 6)" in same_name
    twice_key = GOOD.replace("  store_id: store_globex\n", "  store_id: a\n  store_id: b\n")
    [repeated] = problems(tmp_path, twice_key)
    assert ":17: duplicate key 'store_id' (first at line 16)" in repeated
    [syntax] = problems(tmp_path, GOOD.replace("  store_id: store_globex", "  store_id: [x"))
    assert "YAML syntax error" in syntax
    [postgres] = problems(tmp_path, GOOD.replace(", url_env: LEDGERS_URL", ""))
    assert ":4: defaults.ledger: 'url_env' is a required property" in postgres


def test_a_brands_run_gets_its_own_settings_and_none_of_anothers(tmp_path: Path) -> None:
    brands = load_brands(write(tmp_path, GOOD))
    acme, globex = brands.brands
    # The caller's environment holds another brand's settings (or the single-store set-up's).
    inherited = {
        **ENV,
        "TARGET_KLAVIYO_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/someone-else",
        "SWAP_TRANSFORMS_MAPPING_FILES": '["other.yml"]',
        "TAP_SWAPCOMMERCE_STORE_ID": "store_other",
        "TARGET_KLAVIYO_LOCK_TIMEOUT_SECONDS": "60",
    }
    env = brand_env(globex, tmp_path, inherited, ledger_url(globex, tmp_path, inherited))
    assert env["TAP_SWAPCOMMERCE_API_KEY"] == env["SWAP_API_KEY"] == "swap-globex"
    assert env["TAP_SWAPCOMMERCE_STORE_ID"] == env["SWAP_STORE_ID"] == "store_globex"
    assert env["TARGET_KLAVIYO_API_KEY"] == "pk_globex"
    assert env["TARGET_KLAVIYO_ALERT_NAME"] == "globex"
    assert "brand_globex" in env["TARGET_KLAVIYO_LEDGER_URL"]
    for leaked in ("TARGET_KLAVIYO_ALERT_WEBHOOK_URL", "SWAP_TRANSFORMS_MAPPING_FILES"):
        assert leaked not in env, leaked
    assert env["TARGET_KLAVIYO_LOCK_TIMEOUT_SECONDS"] == "60", "deployment-wide settings stay"
    env = brand_env(acme, tmp_path, inherited, ledger_url(acme, tmp_path, inherited))
    assert env["TARGET_KLAVIYO_ALERT_WEBHOOK_URL"] == "http://127.0.0.1:9/acme"
    assert json.loads(env["SWAP_TRANSFORMS_MAPPING_FILES"]) == [
        str(tmp_path / "transforms/swap_to_klaviyo.yml"),
        str(tmp_path / "brands/acme.yml"),
    ]
    assert env["TARGET_KLAVIYO_BACKFILL_AFTER_HOURS"] == "48"


def test_a_missing_secret_stops_the_run_before_anything_starts(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    (tmp_path / "meltano.yml").write_text((REPO / "meltano.yml").read_text())
    env = {k: v for k, v in ENV.items() if k != "GLOBEX_KLAVIYO_KEY"}
    done = subprocess.run(
        [str(REPO / ".venv/bin/swap-brands"), "--brands-file", str(path), "run", "globex"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "brand globex: GLOBEX_KLAVIYO_KEY (Klaviyo private key) is not set" in done.stderr
    assert "run outcome" not in done.stdout


def test_summary_reads_last_outcome_lag_and_set_asides_from_the_ledger(tmp_path: Path) -> None:
    text = GOOD.replace("{kind: postgres, url_env: LEDGERS_URL}", "{kind: sqlite, folder: ledgers}")
    acme, globex = load_brands(write(tmp_path, text)).brands
    (tmp_path / "ledgers" / "acme").mkdir(parents=True)
    ledger = migrated_ledger(ledger_url(acme, tmp_path, {}))
    try:
        ledger.start_run()
        ledger.record(
            [
                Outcome("klaviyo_events", "e1", "accepted", metric="Return Started"),
                Outcome("klaviyo_events", "e2", "mapper_exception", reason="missing_email"),
                Outcome("klaviyo_events", "e3", "mapper_exception", reason="missing_email"),
                Outcome("klaviyo_events", "e4", "invalid_record", reason="out_of_bounds"),
            ]
        )
        ledger.finish_run("succeeded", {})
        second = migrated_ledger(ledger_url(acme, tmp_path, {}))
        second.start_run()
        second.record([Outcome("klaviyo_events", "e2", "mapper_exception", reason="missing_email")])
        second.finish_run("auth_failed", {})
        second.close()
    finally:
        ledger.close()
    found = summarize(acme, tmp_path, {})
    assert found.last_outcome == "auth_failed"
    assert found.lag_minutes is not None
    assert found.lag_minutes >= 0
    assert found.set_aside == {"missing_email": 2, "out_of_bounds": 1}
    assert summarize(globex, tmp_path, {}).problem == "no run yet (no ledger)"
