"""The default mapping reads the tap's schemas without a null-safety warning.

The mapper logs these warnings at every run (when the SCHEMA arrives): a default mapping that
warns on every normal run teaches operators to ignore the warning that one day matters. Where a
field the tap may leave null cannot be done without (a line's id, a restock's SKU), the mapping
says what happens explicitly (null, refused by the output: the return is held), which the
mapping tests (swap_to_klaviyo.tests.yml) check.
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from swap_transforms.engine import MappingEngine
from swap_transforms.mapping_tests import map_by_rule
from swap_transforms.source_check import load_sources

TRANSFORMS = Path(__file__).resolve().parents[1]
EXCEPTIONS = "integration_exceptions"


@cache
def default_engine() -> MappingEngine:
    """The default mapping, checked against the tap's schemas as the mapper checks it in a run."""
    sources = load_sources(TRANSFORMS / "sources" / "tap-swapcommerce")
    return MappingEngine.from_files([str(TRANSFORMS / "swap_to_klaviyo.yml")], sources=sources)


def test_the_default_mapping_has_no_null_safety_warning() -> None:
    engine = default_engine()
    warnings = [
        str(warning) for warnings in engine.source_warnings.values() for warning in warnings
    ]
    assert warnings == [], "the default mapping warns on every run:\n" + "\n".join(warnings)


def test_lines_without_an_id_are_held_not_merged_into_one_event() -> None:
    """A fallback id (``or ''``) would key two such lines alike: Klaviyo would keep one."""
    engine = default_engine()
    record = restocked_sample()
    for shipment in record["return_shipments"]:
        for item in shipment["items"]:
            item["shopify_line_item_id"] = None
    produced = map_by_rule(engine, "returns", record)
    per_line = {"item_restocked", "returned_product"}
    assert not [p for p in produced if p.rule in per_line and p.stream != EXCEPTIONS]
    held = {p.rule: p.record for p in produced if p.stream == EXCEPTIONS}
    assert set(held) == per_line
    for exception in held.values():
        assert exception["reason"] == "invalid_output"
        assert "output 'klaviyo_events' field 'unique_id'" in exception["detail"]


def restocked_sample() -> dict[str, Any]:
    """The first sample return with a restocked line and a valid e-mail, as the mapper reads it."""
    for line in (TRANSFORMS / "samples" / "returns.jsonl").read_text().splitlines():
        record: dict[str, Any] = json.loads(line, parse_float=Decimal)
        items = [i for s in record.get("return_shipments") or [] for i in s.get("items") or []]
        email = record.get("customer_email") or ""
        if any((i.get("restock_quantity") or 0) > 0 for i in items) and "@" in email:
            return record
    raise AssertionError("no restocked return in the samples")
