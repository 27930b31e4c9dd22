"""One receiver for every brand: each Swap store routed to its brand's secret and run.

An agency lists its brands in a brands file (``brands.yml``, the project's ``swap-brands``
checks it against its schema). With ``brands_file`` set, the receiver reads each entry's
``name``, ``store_id``, ``webhook_secret_env`` (the *name* of the variable holding that store's
``whsk_`` secret) and ``alert_webhook_url_env``, verifies a delivery with the secret of the store
its token names, and runs that brand's pipeline (``swap-brands run <brand>``; a changed
``run_command`` gets the brand's name as its last argument) with a queue, state db and run logs of
the brand's own, so a burst for one brand never delays another's run. A store not in the file is
refused as any other store is (403). The brand's alerts go to its own destination (the variable
``alert_webhook_url_env`` names; the receiver's ``alert_webhook_url`` for a brand without one), so
one brand's trouble reaches the people who look after that brand.
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


@dataclass(frozen=True)
class _Entry:
    """What the receiver reads of a brand's entry: its name, store and variables' names."""

    name: str
    store: str
    secret_env: str | None
    alert_env: str | None


def load_brands(settings: Settings, env: Mapping[str, str]) -> dict[str, Brand]:
    """The brands of ``settings.brands_file`` by store id, each with its secret and run."""
    assert settings.brands_file is not None
    entries = _entries(settings.brands_file)
    brands: dict[str, Brand] = {}
    for entry in entries:
        found = _fields(entry, settings.brands_file)
        if found.secret_env is None:
            continue  # a brand on its schedule only: no webhooks configured
        secret = _variable(env, found.secret_env, found.name, "its webhook secret")
        alert_url = settings.alert_webhook_url
        if found.alert_env is not None:
            alert_url = _variable(env, found.alert_env, found.name, "its alert webhook URL")
        brands[found.store] = Brand(found.name, _brand_settings(settings, found, secret, alert_url))
    if not brands:
        raise SettingsError(f"{settings.brands_file}: no brand has a webhook_secret_env")
    return brands


def brand_command(settings: Settings, name: str) -> tuple[str, ...]:
    """``swap-brands --brands-file <file> run <brand>``; a changed ``run_command`` gets the name."""
    if settings.run_command != DEFAULT_RUN_COMMAND:
        return (*settings.run_command, name)
    return (BRANDS_COMMAND, "--brands-file", str(settings.brands_file), "run", name)


def _variable(env: Mapping[str, str], variable: str, name: str, what: str) -> Secret:
    """The value of a variable a brand's entry names; an error names it, never a value."""
    value = env.get(variable)
    if not value:
        raise SettingsError(f"brand {name}: {variable} ({what}) is not set")
    return Secret(value)


def _brand_settings(
    settings: Settings, entry: _Entry, secret: Secret, alert_url: Secret | None
) -> Settings:
    """The receiver's settings for the brand's runner: its store, secret, run, files and alerts."""
    name, db = entry.name, settings.state_db
    return settings.with_changes(
        store_id=entry.store,
        webhook_secret=secret,
        alert_webhook_url=alert_url,
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


def _fields(entry: Any, path: Path) -> _Entry:
    if not isinstance(entry, dict) or not entry.get("name") or not entry.get("store_id"):
        raise SettingsError(f"{path}: a brand without name or store_id (`swap-brands list`)")
    secret_env, alert_env = entry.get("webhook_secret_env"), entry.get("alert_webhook_url_env")
    return _Entry(
        str(entry["name"]),
        str(entry["store_id"]),
        str(secret_env) if secret_env else None,
        str(alert_env) if alert_env else None,
    )
