"""One brand's pipeline run: the project's launcher, with that brand's settings and nothing else's.

Every brand runs the same Meltano job (``returns-to-klaviyo``) through ``swap-meltano``, so it
gets the launcher's atomic claim and per-command run files; ``--state-id-suffix=<brand>`` gives it
its own state id (and so its own claim), and the brand's settings reach the plugins as Meltano's
environment variables. Settings of another brand (or of the single-store set-up) that happen to be
in the caller's environment are removed first: a brand without an alert destination must not post
to another's, and a brand's run must never see another's keys.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from swap_brands.config import Brand
from swap_brands.ledgers import ledger_url, prepare

JOB = "returns-to-klaviyo"

#: Per-brand variables: never inherited from the caller, only set from the brand's entry.
BRAND_VARIABLES = (
    "TAP_SWAPCOMMERCE_API_KEY",
    "TAP_SWAPCOMMERCE_STORE_ID",
    "TAP_SWAPCOMMERCE_API_URL",
    "TARGET_KLAVIYO_API_KEY",
    "TARGET_KLAVIYO_API_URL",
    "TARGET_KLAVIYO_LEDGER_URL",
    "TARGET_KLAVIYO_ALERT_WEBHOOK_URL",
    "TARGET_KLAVIYO_ALERT_NAME",
    "TARGET_KLAVIYO_BACKFILL_AFTER_HOURS",
    "TARGET_KLAVIYO_THROTTLE_DEADLINE_SECONDS",
    "SWAP_TRANSFORMS_MAPPING_FILES",
    "MELTANO_RUN_STATE_ID_SUFFIX",
    # The single-store set-up's variables, which meltano.yml's environments reference.
    "SWAP_API_KEY",
    "SWAP_STORE_ID",
    "KLAVIYO_API_KEY",
    "SWAP_WEBHOOK_SECRET",
)


class MissingSecretError(Exception):
    """A variable the brand's entry names is not set."""


def secret(env: Mapping[str, str], name: str, brand: Brand, what: str) -> str:
    value = env.get(name)
    if not value:
        raise MissingSecretError(f"brand {brand.name}: {name} ({what}) is not set")
    return value


def brand_env(brand: Brand, project_root: Path, env: Mapping[str, str], ledger_url: str) -> dict:
    """The environment of the brand's run: the caller's, less other brands', plus this one's."""
    run_env = {k: v for k, v in env.items() if k not in BRAND_VARIABLES}
    swap_key = secret(env, brand.swap_api_key_env, brand, "Swap API key")
    klaviyo_key = secret(env, brand.klaviyo_api_key_env, brand, "Klaviyo private key")
    run_env.update(
        {
            "TAP_SWAPCOMMERCE_API_KEY": swap_key,
            "TAP_SWAPCOMMERCE_STORE_ID": brand.store_id,
            "TARGET_KLAVIYO_API_KEY": klaviyo_key,
            "TARGET_KLAVIYO_LEDGER_URL": ledger_url,
            "TARGET_KLAVIYO_ALERT_NAME": brand.name,
            # What the environments of meltano.yml reference, so both readings agree.
            "SWAP_API_KEY": swap_key,
            "SWAP_STORE_ID": brand.store_id,
            "KLAVIYO_API_KEY": klaviyo_key,
        }
    )
    if brand.alert_webhook_url_env:
        run_env["TARGET_KLAVIYO_ALERT_WEBHOOK_URL"] = secret(
            env, brand.alert_webhook_url_env, brand, "alert webhook URL"
        )
    run_env.update(_overrides(brand, project_root))
    return run_env


def _overrides(brand: Brand, project_root: Path) -> dict[str, str]:
    overrides = brand.overrides
    found: dict[str, str] = {}
    if "mapping_files" in overrides:
        files = [_project_path(project_root, f) for f in overrides["mapping_files"]]
        found["SWAP_TRANSFORMS_MAPPING_FILES"] = json.dumps(files)
    if "backfill_after_hours" in overrides:
        found["TARGET_KLAVIYO_BACKFILL_AFTER_HOURS"] = str(overrides["backfill_after_hours"])
    if "throttle_deadline_seconds" in overrides:
        found["TARGET_KLAVIYO_THROTTLE_DEADLINE_SECONDS"] = str(
            overrides["throttle_deadline_seconds"]
        )
    if "swap_api_url" in overrides:
        found["TAP_SWAPCOMMERCE_API_URL"] = found["SWAP_API_URL"] = overrides["swap_api_url"]
    if "klaviyo_api_url" in overrides:
        found["TARGET_KLAVIYO_API_URL"] = found["KLAVIYO_API_URL"] = overrides["klaviyo_api_url"]
    return found


def _project_path(project_root: Path, name: str) -> str:
    path = Path(name)
    return str(path if path.is_absolute() else project_root / path)


def launcher() -> str:
    """``swap-meltano`` beside this interpreter (the project's virtualenv), else on PATH."""
    beside = Path(sys.executable).parent / "swap-meltano"
    return str(beside) if os.access(beside, os.X_OK) else "swap-meltano"


def run_command(brand: Brand) -> list[str]:
    return [
        launcher(),
        f"--environment={brand.environment}",
        "run",
        f"--state-id-suffix={brand.name}",
        JOB,
    ]


def exec_run(brand: Brand, project_root: Path, env: Mapping[str, str]) -> None:
    """Replace this process by the brand's launcher run (signals reach the launcher directly).

    The launcher prints the run's outcome line (``run outcome: ...``) and exits with its status.
    """
    run_env = brand_env(brand, project_root, env, ledger_url(brand, project_root, env))
    prepare(brand, project_root, env)
    command = run_command(brand)
    os.chdir(project_root)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0] if os.sep in command[0] else _which(command[0]), command, run_env)  # noqa: S606


def _which(name: str) -> str:
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise FileNotFoundError(name)
