"""A mapping file's ``vars:``: declared in the file, read by rules, overridden per deployment.

The default mapping's two vars are tested here (YAML tests run with the file's own values):
``send_customer_block: false`` leaves out every attribute of the customer block,
``backfill_new_metrics_only: true`` keeps the older metrics quiet for the one-off backfill.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from swap_transforms.engine import MappingEngine
from swap_transforms.errors import MappingFileError
from tests.support import DEFAULT_MAPPING, OUTPUTS, MappingWriter, a_return, clock

CUSTOMER_BLOCK = ("phone_number", "first_name", "last_name", "organization", "location")
NEW_METRICS = {"Returned Product", "Return Shipped", "Exchange Created", "Store Credit Issued"}
ADDRESS = {
    "first_name": "Maria", "last_name": "Lopez", "company": None, "address1": "1 High Street",
    "address2": None, "city": "London", "province": "England", "province_code": "ENG",
    "zip": "SW1A 1AA", "country": "United Kingdom", "country_code": "GB",
    "phone": "+44 7400 123456",
}  # fmt: skip


def outputs(engine: MappingEngine, record: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for stream, output in engine.map_record("returns", record):
        found.setdefault(stream, []).append(output)
    return found


def default(**variables: Any) -> MappingEngine:
    return MappingEngine.from_files([str(DEFAULT_MAPPING)], clock=clock, variables=variables)


@pytest.mark.slow
def test_the_customer_block_is_sent_by_default_and_switched_off_by_one_setting() -> None:
    record = a_return(shipping_address=ADDRESS, exchange_items=[{"sku": "X", "item_count": 1}])
    [on] = outputs(default(), record)["klaviyo_profile_updates"]
    assert (on["first_name"], on["phone_number"]) == ("Maria", "+44 7400 123456")
    assert on["location"]["city"] == "London"

    off_outputs = outputs(default(send_customer_block=False), record)
    [off] = off_outputs["klaviyo_profile_updates"]
    assert {name: off[name] for name in CUSTOMER_BLOCK} == dict.fromkeys(CUSTOMER_BLOCK)
    assert off["properties"] == on["properties"]  # the rest of the update is unchanged
    assert len(off_outputs["klaviyo_events"]) == len(outputs(default(), record)["klaviyo_events"])


@pytest.mark.slow
def test_the_backfill_var_sends_only_the_new_metrics_and_the_profile_update() -> None:
    record = a_return(
        exchange_items=[{"sku": "X", "item_count": 1}],
        total_store_credit_value_customer_currency=5,
    )
    usual = outputs(default(), record)["klaviyo_events"]
    assert {e["metric"] for e in usual} > NEW_METRICS
    assert {e["backfill"] for e in usual} == {None}  # by age, as the target decides
    backfill = outputs(default(backfill_new_metrics_only=True), record)
    assert {e["metric"] for e in backfill["klaviyo_events"]} == NEW_METRICS
    assert {e["backfill"] for e in backfill["klaviyo_events"]} == {True}  # no flow fires
    assert len(backfill["klaviyo_profile_updates"]) == 1
    assert "klaviyo_catalog_variants" not in backfill  # no restock is applied twice


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"send_customer_blok": False}, "'send_customer_blok' is not declared by any mapping "
         "file (did you mean 'send_customer_block'?)"),
        ({"send_customer_block": "false"}, "'send_customer_block' must be a boolean like the "
         "declared value, not a text"),
    ],
)  # fmt: skip
@pytest.mark.slow
def test_an_override_of_an_undeclared_var_or_of_another_type_stops_the_load(
    variables: dict[str, Any], message: str
) -> None:
    with pytest.raises(MappingFileError) as error:
        default(**variables)
    assert message in str(error.value)


def test_a_rule_reading_an_undeclared_var_is_refused_at_load_with_its_line(
    write_mapping: MappingWriter, tmp_path: Path
) -> None:
    (tmp_path / "schemas" / "plain.json").write_text(json.dumps({"type": "object"}))
    body = """
        vars: {send_names: true}
        streams:
          returns:
            key: return_id
            rules:
              - name: r
                when: "vars.send_name"
                emit: {plain: {id: x}}
    """
    path = write_mapping(textwrap.dedent(OUTPUTS) + textwrap.dedent(body))
    with pytest.raises(MappingFileError) as error:
        MappingEngine.from_files([str(path)], clock=clock)
    problem = str(error.value)
    assert "'vars.send_name' is not declared in vars:" in problem
    assert "(did you mean 'send_names'?)" in problem
    assert f"{path}:" in problem


@pytest.mark.slow
def test_the_mappers_vars_setting_reaches_the_rules(tmp_path: Path) -> None:
    """Through the mapper's executable, as Meltano runs it (config ``vars``)."""
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {"mapping_files": [str(DEFAULT_MAPPING)], "vars": {"send_customer_block": False}}
        )
    )
    record = a_return(shipping_address=ADDRESS)
    schema = {"type": "object", "properties": {}}
    lines = [
        {"type": "SCHEMA", "stream": "returns", "schema": schema, "key_properties": ["return_id"]},
        {
            "type": "RECORD",
            "stream": "returns",
            "record": json.loads(json.dumps(record, default=float)),
        },
    ]
    text = "".join(json.dumps(line) + "\n" for line in lines)
    executable = Path(sys.executable).parent / "swap-transforms"
    done = subprocess.run(
        [str(executable), "--config", str(config)],
        input=text, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    updates = [
        json.loads(line)["record"]
        for line in done.stdout.splitlines()
        if '"klaviyo_profile_updates"' in line and '"RECORD"' in line
    ]
    assert [u["first_name"] for u in updates] == [None]
    assert "Maria" not in done.stdout
