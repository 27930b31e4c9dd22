"""The brands file: each brand of a deployment as data, checked before anything runs.

A brand is one Swap store and one Klaviyo account. Adding one is adding an entry to
``brands.yml``; nothing in ``meltano.yml`` names a brand. The file holds the *names* of the
environment variables with the secrets, never the secrets, so it can be committed and reviewed.
It is checked against ``brands.schema.json`` (the same schema editors use for completion) and every
problem names the file and line, as the mapper does for mapping files: a person fixing a typo at
03:00 should not have to bisect a YAML file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).with_name("brands.schema.json")
#: Where the brands file is looked for, relative to the project root, unless SWAP_BRANDS_FILE says.
DEFAULT_FILE = "brands.yml"
FILE_ENV = "SWAP_BRANDS_FILE"
DEFAULT_SCHEDULE = "*/5 * * * *"
DEFAULT_ENVIRONMENT = "prod"
DEFAULT_SQLITE_FOLDER = "runtime/brands"

PathKey = tuple[str | int, ...]


class BrandsFileError(Exception):
    """The brands file cannot be used; ``problems`` are ``file:line: message`` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class LedgerConfig:
    """Where brands' ledgers live: SQLite files in a folder, or one schema each in Postgres."""

    kind: str = "sqlite"
    url_env: str | None = None
    folder: str = DEFAULT_SQLITE_FOLDER


@dataclass(frozen=True)
class Brand:
    """One brand's entry, with the file's defaults applied."""

    name: str
    store_id: str
    swap_api_key_env: str
    klaviyo_api_key_env: str
    environment: str
    ledger: LedgerConfig
    schedule: str = DEFAULT_SCHEDULE
    webhook_secret_env: str | None = None
    alert_webhook_url_env: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def state_id(self) -> str:
        """Meltano's state id for this brand's runs (``meltano run --state-id-suffix``)."""
        return f"{self.environment}:tap-swapcommerce-to-target-klaviyo:{self.name}"

    @property
    def schema(self) -> str:
        """The brand's Postgres schema (its ledger, and with it its ledger lock key)."""
        return f"brand_{self.name}"


@dataclass(frozen=True)
class BrandsFile:
    """The loaded file: its brands in file order, and the defaults for brands no longer in it."""

    path: Path
    brands: tuple[Brand, ...]
    environment: str
    ledger: LedgerConfig

    def brand(self, name: str) -> Brand:
        for brand in self.brands:
            if brand.name == name:
                return brand
        known = ", ".join(b.name for b in self.brands) or "none"
        raise BrandsFileError([f"{self.path}: no brand named {name!r} (brands: {known})"])

    def removed_brand(self, name: str) -> Brand:
        """A brand no longer in the file, as the defaults place it (to purge what it left)."""
        return Brand(
            name=name,
            store_id="",
            swap_api_key_env="",
            klaviyo_api_key_env="",
            environment=self.environment,
            ledger=self.ledger,
        )


def brands_file_path(project_root: Path, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    configured = env.get(FILE_ENV)
    if configured:
        path = Path(configured)
        return path if path.is_absolute() else project_root / path
    return project_root / DEFAULT_FILE


def load_brands(path: Path) -> BrandsFile:
    """Load and check the file; :class:`BrandsFileError` lists every problem with its line."""
    data, lines = _load_yaml(path)
    problems = [
        _problem(path, lines, _where(error), _message(error))
        for error in sorted(_validator().iter_errors(data), key=lambda e: list(e.absolute_path))
    ]
    if problems:
        raise BrandsFileError(problems)
    problems = _duplicates(path, lines, data["brands"])
    if problems:
        raise BrandsFileError(problems)
    defaults = data.get("defaults") or {}
    ledger = LedgerConfig(**defaults.get("ledger", {}))
    environment = str(defaults.get("environment") or DEFAULT_ENVIRONMENT)
    schedule = str(defaults.get("schedule") or DEFAULT_SCHEDULE)
    brands = tuple(_brand(entry, environment, ledger, schedule) for entry in data["brands"])
    return BrandsFile(path, brands, environment, ledger)


def _brand(entry: dict[str, Any], environment: str, ledger: LedgerConfig, schedule: str) -> Brand:
    overrides = dict(entry.get("overrides") or {})
    return Brand(
        name=entry["name"],
        store_id=str(entry["store_id"]),
        swap_api_key_env=entry["swap_api_key_env"],
        klaviyo_api_key_env=entry["klaviyo_api_key_env"],
        webhook_secret_env=entry.get("webhook_secret_env"),
        alert_webhook_url_env=entry.get("alert_webhook_url_env"),
        environment=environment,
        ledger=ledger,
        schedule=str(overrides.get("schedule") or schedule),
        overrides=overrides,
    )


def _duplicates(path: Path, lines: dict[PathKey, int], brands: list[Any]) -> list[str]:
    """Two entries with one name or one store would share a state id, a ledger or webhooks."""
    problems = []
    for key in ("name", "store_id"):
        seen: dict[str, int] = {}
        for index, entry in enumerate(brands):
            value = str(entry[key])
            if value in seen:
                first = lines.get(("brands", seen[value], key), 0)
                problems.append(
                    _problem(
                        path,
                        lines,
                        ("brands", index, key),
                        f"{key} {value!r} is already brand {seen[value] + 1}'s (line {first})",
                    )
                )
            else:
                seen[value] = index
    return problems


def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def _where(error: jsonschema.ValidationError) -> PathKey:
    """The error's place: an unexpected key's own line rather than its parent's."""
    where = tuple(error.absolute_path)
    schema = error.schema
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(schema.get("properties", {})) if isinstance(schema, dict) else set()
        extra = sorted(str(key) for key in error.instance if key not in known)
        if extra:
            return (*where, extra[0])
    return where


def _message(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(part) for part in error.absolute_path) or "the file"
    if error.validator == "additionalProperties":
        return f"{where}: {error.message} (see swap_brands/brands.schema.json)"
    if error.validator == "pattern" and str(error.absolute_path[-1]).endswith("_env"):
        return f"{where}: must name an environment variable (A-Z, 0-9, _), not hold its value"
    return f"{where}: {error.message}"


def _problem(path: Path, lines: dict[PathKey, int], where: PathKey, message: str) -> str:
    for end in range(len(where), -1, -1):
        line = lines.get(where[:end])
        if line is not None:
            return f"{path}:{line}: {message}"
    return f"{path}: {message}"


def _load_yaml(path: Path) -> tuple[Any, dict[PathKey, int]]:
    """The file's data and the line of each key and list item (PyYAML's composed nodes)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise BrandsFileError([f"{path}: cannot read: {reason}"]) from None
    loader = yaml.SafeLoader(text)
    lines: dict[PathKey, int] = {}
    problems: list[str] = []
    try:
        node = loader.get_single_node()
        if node is None:
            raise BrandsFileError([f"{path}:1: the file is empty; it needs a `brands:` list"])
        lines[()] = node.start_mark.line + 1
        _index(node, (), lines, problems, path)
        if problems:
            raise BrandsFileError(problems)
        return loader.construct_document(node), lines
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        what = " ".join(part for part in (error.context, error.problem) if part)
        raise BrandsFileError([f"{path}{line}: YAML syntax error: {what}"]) from None
    finally:
        loader.dispose()


def _index(
    node: yaml.Node, where: PathKey, lines: dict[PathKey, int], problems: list[str], path: Path
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(f"{path}:{line}: duplicate key '{key}' (first at line {seen[key]})")
                continue
            seen[key] = line
            lines[(*where, key)] = line
            _index(value_node, (*where, key), lines, problems, path)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*where, index)] = item.start_mark.line + 1
            _index(item, (*where, index), lines, problems, path)
