"""The default mapping (swap_to_klaviyo.yml) over realistic data: properties that hold for any edit.

What the mapping sends (metric names, properties, ids, amounts) is the analysts' to change, and
its expectations live in YAML: transforms/swap_to_klaviyo.tests.yml, run by
`swap-transforms-test` (tests/test_mapping_tests.py runs it). These tests hold for
any mapping an analyst may write from it: on the Swap emulator's data set every rule runs without
a mapping error, ids are unique and stable, a later version of a return keeps its event ids, and
a malformed record fails only the rules that read the broken field, without quoting its value.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from typing import Any

import pytest

from emulators.swap import SwapEmulator
from swap_transforms.engine import MappingEngine
from swap_transforms.mapping_tests import map_by_rule
from tests.support import SWAP_NOW, as_sdk_record, shared_file

Outputs = list[tuple[str, dict[str, Any]]]
EVENTS = "klaviyo_events"  # the target's stream names are its contract, not the mapping's


def of(outputs: Outputs, stream: str) -> list[dict[str, Any]]:
    return [record for name, record in outputs if name == stream]


def rule_names(engine: MappingEngine) -> set[str]:
    return {rule.name for runs in engine._streams.values() for r in runs for rule in r.rules}


def test_every_rule_runs_on_the_emulator_data_without_a_mapping_error(
    default_engine: MappingEngine, emulator_returns: list[dict[str, Any]]
) -> None:
    exceptions = default_engine.exception_streams
    rules_with_output: Counter[str | None] = Counter()
    rejected_by_checks = 0
    for record in emulator_returns:
        produced = map_by_rule(default_engine, "returns", record)
        failures = [p for p in produced if p.stream in exceptions]
        if failures and failures[0].rule is None:
            # A check turns the whole record into one rejection, and nothing else.
            assert len(produced) == 1, record["return_id"]
            rejected_by_checks += 1
            continue
        assert failures == [], [f.record["detail"] for f in failures]
        rules_with_output.update(p.rule for p in produced)
    # The data set has returns in every stage and dirty e-mails: every rule ran on real shapes.
    assert set(rules_with_output) == rule_names(default_engine)
    assert 0 < rejected_by_checks < len(emulator_returns) / 4


@pytest.mark.slow
def test_ids_are_unique_and_stable_over_the_data_set(
    default_engine: MappingEngine, emulator_returns: list[dict[str, Any]]
) -> None:
    first = [default_engine.map_record("returns", r) for r in emulator_returns]
    second = [default_engine.map_record("returns", r) for r in emulator_returns]
    assert first == second
    outputs = [output for outputs in first for output in outputs]
    for stream, output in default_engine.outputs.items():
        ids = [
            tuple(record[key] for key in output.key_properties) for record in of(outputs, stream)
        ]
        assert ids, stream
        assert len(ids) == len(set(ids)), stream


def test_a_return_synced_again_later_keeps_its_event_ids(default_engine: MappingEngine) -> None:
    with SwapEmulator(returns=60, seed=3, now=SWAP_NOW, rate_limit_per_minute=None) as swap:
        before = {r["return_id"]: as_sdk_record(r) for r in swap.all_returns()}
        changed = swap.advance(fraction=1.0)
        after = {r["return_id"]: as_sdk_record(r) for r in swap.all_returns()}
    assert changed
    grew = 0
    for return_id in changed:
        old = {
            e["unique_id"]
            for e in of(default_engine.map_record("returns", before[return_id]), EVENTS)
        }
        new = {
            e["unique_id"]
            for e in of(default_engine.map_record("returns", after[return_id]), EVENTS)
        }
        # Every event sent for the earlier version is sent again with the same id (Klaviyo
        # keeps one), and the later stage only adds events.
        assert old <= new, return_id
        grew += len(new) > len(old)
    assert grew


def test_malformed_records_fail_only_the_rules_that_read_the_broken_fields(
    default_engine: MappingEngine,
) -> None:
    with SwapEmulator(
        returns=40, seed=5, now=SWAP_NOW, rate_limit_per_minute=None, malformed_every=10
    ) as swap:
        records = [as_sdk_record(r) for r in swap.all_returns()]
    broken = [r for r in records if isinstance(r["total"], str)]
    checked = 0
    for record in broken:
        produced = map_by_rule(default_engine, "returns", record)
        failures = [p.record for p in produced if p.stream in default_engine.exception_streams]
        if failures and failures[0]["rule"] is None:
            continue  # rejected by a check (its e-mail) before any rule read the total
        checked += 1
        assert failures, record["return_id"]
        for failure in failures:
            assert failure["reason"] == "mapping_error"
            assert record["total"] not in failure["detail"]
        failed_rules = {failure["rule"] for failure in failures}
        others = {p.rule for p in produced if p.stream not in default_engine.exception_streams}
        assert others, "the rules that do not read the total still send their outputs"
        # A per-line rule fails for the broken line alone: the other lines' events still go.
        assert not (failed_rules & others) - {"returned_product"}
    assert checked


def test_the_contract_example_of_the_swap_api(default_engine: MappingEngine) -> None:
    text = shared_file("swap-returns-api.md").read_text()
    example = re.search(r"## Example\s+```json\n(.*?)```", text, re.DOTALL)
    assert example, "the example return of swap-returns-api.md was not found"
    record = as_sdk_record(json.loads(example.group(1)))
    outputs = default_engine.map_record("returns", copy.deepcopy(record))
    assert [r for name, r in outputs if name in default_engine.exception_streams] == []
    assert of(outputs, EVENTS)
