"""Fixtures of the mapper's tests (helpers: tests/support.py)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from emulators.swap import SwapEmulator
from swap_transforms.engine import MappingEngine
from swap_transforms.source_check import load_sources
from tests.support import (
    CONTRACT_SCHEMAS,
    DEFAULT_MAPPING,
    OUTPUTS,
    SOURCE_SCHEMAS,
    SWAP_NOW,
    MappingWriter,
    as_sdk_record,
    clock,
)


@pytest.fixture(scope="session")
def default_engine() -> MappingEngine:
    # With the tap's schemas, as preview and the mapping tests load it (named: the package's
    # default folder is its source tree's, absent when it is installed from a wheel).
    sources = load_sources(SOURCE_SCHEMAS)
    return MappingEngine.from_files([str(DEFAULT_MAPPING)], clock=clock, sources=sources)


@pytest.fixture(scope="session")
def emulator_returns() -> list[dict[str, Any]]:
    """Realistic returns in every lifecycle stage, from the Swap emulator's data set."""
    with SwapEmulator(
        returns=400, seed=7, now=SWAP_NOW, api_key="k", store_id="s", rate_limit_per_minute=None
    ) as swap:
        return [as_sdk_record(record) for record in swap.all_returns()]


@pytest.fixture
def write_mapping(tmp_path: Path) -> MappingWriter:
    """Writes a mapping file (dedented) beside copies of the default output schemas."""
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    for schema in CONTRACT_SCHEMAS.glob("*.json"):
        (schemas / schema.name).write_text(schema.read_text())

    def write(text: str, name: str = "mapping.yml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write


@pytest.fixture
def engine_for(write_mapping: MappingWriter, tmp_path: Path) -> Callable[[str], MappingEngine]:
    """An engine for a mapping body (its `definitions`/`streams` part) with standard outputs.

    The `plain` output accepts any object with an `id`, for tests of values and types.
    """
    (tmp_path / "schemas" / "plain.json").write_text(
        json.dumps({"type": "object", "properties": {"id": {}}, "required": ["id"]})
    )

    def build(body: str) -> MappingEngine:
        path = write_mapping(textwrap.dedent(OUTPUTS) + textwrap.dedent(body))
        return MappingEngine.from_files([str(path)], clock=clock)

    return build
