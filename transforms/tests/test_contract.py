"""Contract: what the default mapping emits is what target-klaviyo accepts.

The target owns its input schemas (target-klaviyo/target_klaviyo/schemas); the mapper ships
byte-identical copies in schemas/ (the project's tests/test_contract_copies.py checks them: these
tests read the copies, so that they run with the mapper alone) and refuses at load any other
output. Every record the default mapping emits over the Swap emulator's data, and over the
edge-case records of these tests, must validate against the contract's schema of its stream,
date-time formats included.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from emulators.swap import SwapEmulator
from swap_transforms.contract import Contract
from swap_transforms.engine import MappingEngine
from swap_transforms.errors import MappingFileError
from swap_transforms.mapper import SwapTransformsMapper
from tests.support import (
    CONTRACT_SCHEMAS,
    DEFAULT_MAPPING,
    SWAP_NOW,
    TRANSFORMS,
    MappingWriter,
    a_return,
    as_sdk_record,
    with_items,
)


def target_validators() -> dict[str, Any]:
    if not CONTRACT_SCHEMAS.is_dir():
        pytest.fail(f"{CONTRACT_SCHEMAS} is missing: the target's input contract is needed here")
    validators = {}
    for path in sorted(CONTRACT_SCHEMAS.glob("*.json")):
        schema = json.loads(path.read_text())
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)
        validators[path.stem] = validator_class(
            schema, format_checker=validator_class.FORMAT_CHECKER
        )
    return validators


@pytest.fixture(scope="module")
def validators() -> dict[str, Any]:
    found = target_validators()
    # Without a date-time checker installed, jsonschema would let any text pass as a date.
    checker = next(iter(found.values())).format_checker
    assert not checker.conforms("2026-13-45 noon", "date-time")
    assert checker.conforms("2026-03-06T15:00:00.120Z", "date-time")
    return found


def assert_accepted(validators: dict[str, Any], outputs: list[tuple[str, dict[str, Any]]]) -> None:
    for stream, record in outputs:
        errors = [
            f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
            for error in validators[stream].iter_errors(record)
        ]
        assert errors == [], (stream, record.get("unique_id") or record.get("update_id"))


def test_the_mapping_declares_exactly_the_target_streams(default_engine: MappingEngine) -> None:
    assert set(default_engine.outputs) == {path.stem for path in CONTRACT_SCHEMAS.glob("*.json")}


def test_declared_schemas_require_what_the_target_requires(default_engine: MappingEngine) -> None:
    for name, output in default_engine.outputs.items():
        target = json.loads((CONTRACT_SCHEMAS / f"{name}.json").read_text())
        assert set(target["properties"]) <= set(output.schema["properties"]), name
        assert set(target["required"]) <= set(output.schema["required"]), name
        assert set(output.key_properties) <= set(target["required"]), name
        assert output.schema_file == str(TRANSFORMS / "schemas" / f"{name}.json")


@pytest.mark.slow
def test_everything_emitted_over_the_emulator_data_is_accepted(
    default_engine: MappingEngine,
    emulator_returns: list[dict[str, Any]],
    validators: dict[str, Any],
) -> None:
    emitted: set[str] = set()
    for record in emulator_returns:
        outputs = default_engine.map_record("returns", record)
        assert_accepted(validators, outputs)
        emitted.update(stream for stream, _ in outputs)
    assert emitted == set(validators)


def test_rule_failures_are_accepted_as_exceptions(
    default_engine: MappingEngine, validators: dict[str, Any]
) -> None:
    with SwapEmulator(
        returns=30, seed=5, now=SWAP_NOW, rate_limit_per_minute=None, malformed_every=3
    ) as swap:
        records = [as_sdk_record(r) for r in swap.all_returns()]
    failures = 0
    for record in records:
        outputs = default_engine.map_record("returns", record)
        assert_accepted(validators, outputs)
        failures += sum(
            1
            for stream, out in outputs
            if stream == "integration_exceptions" and out["reason"] == "mapping_error"
        )
    assert failures >= 5


@pytest.mark.parametrize(
    "record",
    [
        a_return(submission_date=None, delivered_date=None, date_closed=None),
        a_return(total=None, total_refund_value_customer_currency=None),
        a_return(return_status="Open", rma_processed=False, delivery_status="In-Transit"),
        a_return(return_status="Cancelled", rma_processed=False, customer_email="maria@"),
        a_return(customer_email=None, date_updated=None),
        with_items(a_return(), {"restocked_at": None, "sku": None}, {"refunded_at": None}),
        a_return(return_shipments=[], type=None),
    ],
    ids=[
        "null dates",
        "null money",
        "in transit",
        "invalid email",
        "no email",
        "odd items",
        "empty",
    ],
)
def test_edge_cases_are_accepted(
    default_engine: MappingEngine, validators: dict[str, Any], record: dict[str, Any]
) -> None:
    outputs = default_engine.map_record("returns", record)
    assert outputs
    assert_accepted(validators, outputs)


EVENTS = "klaviyo_events.json"


def test_an_output_the_target_does_not_accept_is_refused_at_load(
    write_mapping: MappingWriter, tmp_path: Path
) -> None:
    (tmp_path / "schemas" / "klaviyo_coupons.json").write_text('{"type": "object"}')
    drifted = json.loads((tmp_path / "schemas" / "klaviyo_events.json").read_text())
    drifted["properties"]["value"] = {"type": ["number", "string", "null"]}
    (tmp_path / "schemas" / "drifted_events.json").write_text(json.dumps(drifted))
    path = write_mapping(
        """
        version: 1
        outputs:
          integration_exceptions:
            key_properties: [exception_id]
            schema: schemas/integration_exceptions.json
          klaviyo_coupons: {key_properties: [], schema: schemas/klaviyo_coupons.json}
          klaviyo_events: {key_properties: [unique_id], schema: schemas/drifted_events.json}
        streams:
          returns: {key: return_id, rules: []}
        """
    )
    with pytest.raises(MappingFileError) as caught:
        MappingEngine.from_files([str(path)], contract=Contract.load())
    shown = str(caught.value).splitlines()
    assert shown == [
        f"{path}:6: output 'klaviyo_coupons': the target does not accept a stream "
        "'klaviyo_coupons' (it accepts: integration_exceptions, klaviyo_catalog_variants, "
        "klaviyo_events, klaviyo_profile_updates)",
        f"{path}:7: output 'klaviyo_events': schema 'schemas/drifted_events.json' is not the "
        f"target's contract for 'klaviyo_events': use {TRANSFORMS / 'schemas' / EVENTS}",
    ]
    # Without a contract (the engine alone, in tests of values) any declared output loads.
    assert MappingEngine.from_files([str(path)]).outputs.keys() == {
        "integration_exceptions",
        "klaviyo_coupons",
        "klaviyo_events",
    }


def test_the_mapper_refuses_a_contract_folder_without_schemas(tmp_path: Path) -> None:
    with pytest.raises(MappingFileError, match="contract_schemas"):
        SwapTransformsMapper(
            config={"mapping_files": [str(DEFAULT_MAPPING)], "contract_schemas": str(tmp_path)}
        )
