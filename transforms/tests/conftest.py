"""Fixtures of tests/transforms; the helpers live in ``tests.support.mapping``."""

from __future__ import annotations

from tests.support.mapping import (
    DEFAULT_MAPPING,
    FIXED_NOW,
    OUTPUTS,
    TARGET_SCHEMAS,
    TRANSFORMS,
    MappingWriter,
    a_return,
    as_sdk_record,
    clock,
    default_engine,
    emulator_returns,
    engine_for,
    items_of,
    with_items,
    write_mapping,
)

#: Fixtures, and the helpers for tests still importing them from here.
__all__ = [
    "DEFAULT_MAPPING",
    "FIXED_NOW",
    "OUTPUTS",
    "TARGET_SCHEMAS",
    "TRANSFORMS",
    "MappingWriter",
    "a_return",
    "as_sdk_record",
    "clock",
    "default_engine",
    "emulator_returns",
    "engine_for",
    "items_of",
    "with_items",
    "write_mapping",
]
