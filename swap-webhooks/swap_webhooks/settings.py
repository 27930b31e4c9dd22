"""The receiver's settings: defaults, then a JSON config file, then ``SWAP_WEBHOOKS_*`` variables.

Meltano hands a utility's settings to it as ``SWAP_WEBHOOKS_<SETTING>`` environment variables, so
the same names work under ``meltano invoke swap-webhooks:serve`` and on their own. The webhook
secret is wrapped in :class:`Secret` as soon as it is read, so no ``repr``, log line or error
message built from the settings can ever show it.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

ENV_PREFIX = "SWAP_WEBHOOKS_"
#: The project's launcher: run files of its own, and an atomic claim on the pipeline (README).
DEFAULT_RUN_COMMAND = ("swap-meltano", "run", "returns-to-klaviyo")
DEFAULT_STATE_DB = "runtime/swap-webhooks.sqlite"
DEFAULT_RUN_LOG_DIR = "runtime/swap-webhooks-runs"
SECRET_PREFIX = "whsk_"  # noqa: S105 - a prefix to check, not a secret


class SettingsError(ValueError):
    """A setting is missing or has a value the receiver cannot use; the message names it."""


class Secret:
    """A string that never shows itself: ``str``, ``repr`` and f-strings all give ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class Settings:
    """Everything the receiver needs; build it with :func:`load_settings`.

    Relative ``state_db`` paths are taken from ``project_dir``, where the pipeline runs too.
    """

    # Each setting's `#:` comment is its description (`swap-webhooks --about`, meltano.yml).
    #: The store's whsk_ secret (Swap dashboard), which signs each delivery.
    webhook_secret: Secret = field(default_factory=lambda: Secret(""))
    #: Only deliveries for this Swap store are accepted.
    store_id: str = field(default_factory=str)
    #: Address to listen on (keep 127.0.0.1 behind a TLS proxy).
    host: str = "127.0.0.1"
    #: Port to listen on.
    port: int = 8765
    #: The Meltano project the pipeline runs in (default: the working directory).
    project_dir: Path = field(default_factory=Path.cwd)
    #: The pipeline run each delivery triggers (through the launcher, which claims the pipeline
    #: atomically).
    run_command: tuple[str, ...] = DEFAULT_RUN_COMMAND
    #: The receiver's SQLite state db: deliveries, runs, counters (relative to project_dir).
    state_db: Path = Path(DEFAULT_STATE_DB)
    #: A larger request body is refused (413).
    max_body_bytes: int = 1_048_576
    #: Deliveries arriving within this long of each other share one run.
    coalesce_seconds: float = 0.5
    #: First wait after a failed run (then doubling).
    retry_seconds: float = 5.0
    #: Wait between tries while another run of the pipeline holds its claim (no back-off: a
    #: refused try starts no Meltano, so the run follows right after the other one).
    claim_retry_seconds: float = 1.0
    #: Cap of the doubling wait after failed runs (a broken pipeline is not hammered).
    max_retry_seconds: float = 300.0
    #: A run still going after this long is stopped and counted as failed.
    run_timeout_seconds: float = 1800.0
    #: Handled deliveries older than this are deleted (their latencies with them).
    retention_days: float = 30.0
    #: A token issued longer ago than this (plus 10 s of leeway) is refused, whatever its ``exp``.
    max_token_age_seconds: float = 300.0
    #: A connection that has not sent a request's headers within this long is closed.
    header_timeout_seconds: float = 5.0
    #: A request whose body has not arrived within this long after its headers is refused (408).
    body_timeout_seconds: float = 10.0
    #: An idle keep-alive connection is closed after this long.
    keep_alive_seconds: float = 5.0
    #: Open connections beyond this are closed at once (503): slow clients cannot take every
    #: file descriptor. Lowered at start-up to what the open-file limit allows.
    max_connections: int = 256
    #: Each run's whole output goes to ``run-<id>.log`` here (relative to ``project_dir``).
    run_log_dir: Path = Path(DEFAULT_RUN_LOG_DIR)
    #: Alert when no run has succeeded for this long while deliveries wait.
    stale_after_minutes: float = 30.0
    #: Slack-compatible webhook for the staleness alert (none: the alert is only logged).
    alert_webhook_url: Secret | None = None
    #: A brands file (brands.yml): every brand's store is received, verified with its own secret
    #: (webhook_secret_env) and runs `swap-brands run <brand>`; store_id and webhook_secret unused.
    brands_file: Path | None = None
    #: A Dagster webserver (http://host:3000) serving the brands' code location: each brand's
    #: run is then launched there as its partition of the returns_to_klaviyo job and waited for,
    #: instead of run_command (needs brands_file).
    dagster_url: str | None = None

    def __post_init__(self) -> None:
        self._check_store()
        if not self.run_command:
            raise SettingsError("run_command must name a command")
        if not 0 <= self.port <= 65535:
            raise SettingsError("port must be between 0 and 65535")
        if self.max_body_bytes < 1024:
            raise SettingsError("max_body_bytes must be at least 1024")
        for name in (
            "coalesce_seconds",
            "retry_seconds",
            "claim_retry_seconds",
            "max_retry_seconds",
            "retention_days",
        ):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must not be negative")
        if self.run_timeout_seconds <= 0:
            raise SettingsError("run_timeout_seconds must be positive")
        self._check_request_limits()
        if self.stale_after_minutes <= 0:
            raise SettingsError("stale_after_minutes must be positive")
        if not self.run_log_dir.is_absolute():
            object.__setattr__(self, "run_log_dir", self.project_dir / self.run_log_dir)
        if not self.state_db.is_absolute():
            object.__setattr__(self, "state_db", self.project_dir / self.state_db)

    def _check_store(self) -> None:
        """One store and its secret, unless a brands file gives each brand's store and secret."""
        if self.dagster_url is not None and not self.dagster_url.startswith(
            ("http://", "https://")
        ):
            raise SettingsError("dagster_url must be an http:// or https:// URL")
        if self.brands_file is not None:
            if not self.brands_file.is_absolute():
                object.__setattr__(self, "brands_file", self.project_dir / self.brands_file)
            return
        if not self.webhook_secret:
            raise SettingsError("webhook_secret is required (SWAP_WEBHOOKS_WEBHOOK_SECRET)")
        if not self.store_id:
            raise SettingsError("store_id is required (SWAP_WEBHOOKS_STORE_ID)")

    def _check_request_limits(self) -> None:
        """The hardening limits: a zero timeout or cap would refuse every delivery."""
        for name in (
            "max_token_age_seconds",
            "header_timeout_seconds",
            "body_timeout_seconds",
            "keep_alive_seconds",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be positive")
        if self.max_connections < 1:
            raise SettingsError("max_connections must be at least 1")

    @property
    def secret_looks_right(self) -> bool:
        """Swap's webhook secrets start ``whsk_``: anything else is likely a mistaken API key."""
        return self.webhook_secret.reveal().startswith(SECRET_PREFIX)

    def with_changes(self, **changes: Any) -> Settings:
        return replace(self, **changes)


_FIELDS = {f.name: f for f in fields(Settings)}


def load_settings(
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Settings from defaults < ``config_file`` (a JSON object) < ``SWAP_WEBHOOKS_*`` < overrides.

    The environment wins over the file, as with Meltano's own settings, so a deployment can keep
    the file in version control and the secret in the environment.

    Raises:
        SettingsError: an unknown setting, a value of the wrong kind, or a required one missing.
    """
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    if config_file is not None:
        try:
            loaded = json.loads(Path(config_file).read_text())
        except (OSError, ValueError) as exc:
            raise SettingsError(f"cannot read config file {config_file}: {exc}") from None
        if not isinstance(loaded, dict):
            raise SettingsError(f"config file {config_file} must hold a JSON object")
        unknown = sorted(set(loaded) - set(_FIELDS))
        if unknown:
            raise SettingsError(f"unknown settings in {config_file}: {unknown}")
        raw.update(loaded)
    for name in _FIELDS:
        value = env.get(ENV_PREFIX + name.upper())
        if value is not None and value != "":
            raw[name] = value
    raw.update({k: v for k, v in overrides.items() if v is not None})
    if "project_dir" not in raw and env.get("MELTANO_PROJECT_ROOT"):
        raw["project_dir"] = env["MELTANO_PROJECT_ROOT"]
    settings = Settings(**{name: _coerce(name, value) for name, value in raw.items()})
    if settings.dagster_url is not None and settings.brands_file is None:
        # A Dagster run is a brand's partition; a brand's own settings drop brands_file later.
        raise SettingsError("dagster_url needs brands_file (each brand is a partition)")
    return settings


def _coerce(name: str, value: Any) -> Any:
    """Turn a file or environment value into the field's type, naming the setting on failure."""
    if name not in _FIELDS:
        raise SettingsError(f"unknown setting {name!r}")
    try:
        if name in ("webhook_secret", "alert_webhook_url"):
            if not isinstance(value, Secret | str):
                raise TypeError(name)
            return value if isinstance(value, Secret) else Secret(value)
        if name in ("project_dir", "state_db", "run_log_dir", "brands_file"):
            return Path(value).expanduser()
        if name == "run_command":
            return _command(value)
        if name in ("port", "max_body_bytes", "max_connections"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if name in ("host", "store_id", "dagster_url"):
            return str(value)
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)
    except (TypeError, ValueError):
        secret = name in ("webhook_secret", "alert_webhook_url")
        kind = "a secret" if secret else f"{value!r}"
        raise SettingsError(f"setting {name} has a value of the wrong kind: {kind}") from None


def _command(value: Any) -> tuple[str, ...]:
    """A command line as a list, a JSON array in a string, or a shell-quoted string."""
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text) if text.startswith("[") else shlex.split(text)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise TypeError(value)
    return tuple(value)
