"""One receiver for every brand: each Swap store routed to its brand's secret and run.

An agency lists its brands in a brands file (``brands.yml``, the project's ``swap-brands``
checks it against its schema). With ``brands_file`` set, the receiver reads each entry's
``name``, ``store_id`` and ``webhook_secret_env`` (the *name* of the variable holding that store's
``whsk_`` secret), verifies a delivery with the secret of the store its token names, and runs
that brand's pipeline (``swap-brands run <brand>``; a changed ``run_command`` gets the brand's name
as its last argument) with a queue, state db and run logs of the
brand's own, so a burst for one brand never delays another's run. A store not in the file is
refused as any other store is (403).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from swap_webhooks.settings import DEFAULT_RUN_COMMAND, Secret, Settings, SettingsError

#: The project's brands command: a brand's run through the launcher, with that brand's settings.
BRANDS_COMMAND = "swap-brands"


@dataclass(frozen=True)
class Brand:
    """One brand's route: its name and the receiver settings of its own queue and run."""

    name: str
    settings: Settings


def load_brands(settings: Settings, env: Mapping[str, str]) -> dict[str, Brand]:
    """The brands of ``settings.brands_file`` by store id, each with its secret and run."""
    assert settings.brands_file is not None
    entries = _entries(settings.brands_file)
    brands: dict[str, Brand] = {}
    for entry in entries:
        name, store, variable = _fields(entry, settings.brands_file)
        if variable is None:
            continue  # a brand on its schedule only: no webhooks configured
        secret = env.get(variable)
        if not secret:
            raise SettingsError(f"brand {name}: {variable} (its webhook secret) is not set")
        brands[store] = Brand(name, _brand_settings(settings, name, store, Secret(secret)))
    if not brands:
        raise SettingsError(f"{settings.brands_file}: no brand has a webhook_secret_env")
    return brands


def brand_command(settings: Settings, name: str) -> tuple[str, ...]:
    """``swap-brands --brands-file <file> run <brand>``; a changed ``run_command`` gets the name."""
    if settings.run_command != DEFAULT_RUN_COMMAND:
        return (*settings.run_command, name)
    return (BRANDS_COMMAND, "--brands-file", str(settings.brands_file), "run", name)


def _brand_settings(settings: Settings, name: str, store: str, secret: Secret) -> Settings:
    db = settings.state_db
    return settings.with_changes(
        store_id=store,
        webhook_secret=secret,
        run_command=brand_command(settings, name),
        state_db=db.with_name(f"{db.stem}.{name}{db.suffix}"),
        run_log_dir=settings.run_log_dir / name,
        brands_file=None,
    )


def _entries(path: Path) -> list[Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise SettingsError(f"cannot read brands_file {path}: {type(error).__name__}") from None
    brands = data.get("brands") if isinstance(data, dict) else None
    if not isinstance(brands, list):
        raise SettingsError(f"{path}: no `brands:` list (check it with `swap-brands list`)")
    return brands


def _fields(entry: Any, path: Path) -> tuple[str, str, str | None]:
    if not isinstance(entry, dict) or not entry.get("name") or not entry.get("store_id"):
        raise SettingsError(f"{path}: a brand without name or store_id (`swap-brands list`)")
    name, store = str(entry["name"]), str(entry["store_id"])
    variable = entry.get("webhook_secret_env")
    return name, store, str(variable) if variable else None
