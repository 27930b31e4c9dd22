"""Helpers of the mapper's tests: where the plugin's files are, records shaped like Swap's.

Everything is found relative to this file (the plugin's folder), so the tests run from a copy of
`transforms/` alone (scripts/test-plugins.sh). Fixtures are in conftest.py.
"""

from __future__ import annotations

import copy
import io
import json
import os
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from singer_sdk.contrib.msgspec import encoder

from emulators.pytest_plugin import SWAP_NOW
from swap_transforms.mapper import SwapTransformsMapper

#: The plugin's folder: its mapping files, schemas, samples and the tap's source schemas.
TRANSFORMS = Path(__file__).resolve().parents[1]
DEFAULT_MAPPING = TRANSFORMS / "swap_to_klaviyo.yml"
#: The target's input contract as the mapper ships it: byte-identical copies of target-klaviyo's
#: schemas (the project's tests/test_contract_copies.py checks that they are).
CONTRACT_SCHEMAS = TRANSFORMS / "schemas"
#: The tap's discovered schemas as the mapper ships them (the project's tests check them current).
SOURCE_SCHEMAS = TRANSFORMS / "sources" / "tap-swapcommerce"
FIXED_NOW = "2026-06-01T12:00:00Z"
#: Swap's API contract: SWAP_KLAVIYO_SHARED, else ../shared beside the repository holding the
#: plugin (absent when the plugin's folder is tested alone: then set the variable).
SHARED = Path(os.environ.get("SWAP_KLAVIYO_SHARED") or TRANSFORMS.parent.parent / "shared")

#: ``SWAP_NOW``: the fixed end of the Swap data set's history (the emulators' ``swap`` fixture).
__all__ = [
    "CONTRACT_SCHEMAS",
    "DEFAULT_MAPPING",
    "FIXED_NOW",
    "OUTPUTS",
    "SHARED",
    "SOURCE_SCHEMAS",
    "SWAP_NOW",
    "SWAP_TRANSFORMS",
    "TRANSFORMS",
    "MappingWriter",
    "a_return",
    "as_sdk_record",
    "bookmark",
    "clock",
    "exceptions",
    "items_of",
    "lines",
    "record",
    "run",
    "schema",
    "shared_file",
    "started",
    "state",
    "states",
    "with_items",
]

MappingWriter = Callable[..., Path]


def shared_file(name: str) -> Path:
    """A file of the shared reference material: in CI a missing one fails, elsewhere it skips.

    A developer testing the plugin alone may not have the project's reference files; CI has
    them, so there the test must not pass by skipping.
    """
    path = SHARED / name
    if not path.exists():
        message = (
            f"{path} is missing: set SWAP_KLAVIYO_SHARED to the folder of the shared reference "
            "material (the Swap API contract)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def as_sdk_record(record: Any) -> Any:
    """A record as a Singer mapper receives it: JSON numbers with a fraction become Decimal."""
    return json.loads(json.dumps(record), parse_float=Decimal)


def clock() -> str:
    return FIXED_NOW


def a_return(**overrides: Any) -> dict[str, Any]:
    """A closed, refunded and restocked Swap V2 return of two items; fields can be overridden."""
    record: dict[str, Any] = {
        "return_id": "ret_100",
        "rma_number": "SW-100",
        "shopify_return_id": "9900000100",
        "order_id": "5500000000100",
        "shopify_order_name": "#2100",
        "customer_email": "  Maria.Lopez@Example.org ",
        "customer_name": "Maria Lopez",
        "customer_currency": "EUR",
        "type": ["Refund"],
        "type_string": "Refund",
        "return_status": "Closed",
        "delivery_status": "Delivered",
        "rma_processed": True,
        "processed_by": "Warehouse A",
        "quality_control_status": "passed",
        "date_created": "2026-03-01T09:00:00.000Z",
        "submission_date": "2026-03-01T09:00:00.000Z",
        "intention_date": "2026-03-01T08:55:00.000Z",
        "delivered_date": "2026-03-04T11:30:00.000Z",
        "date_closed": "2026-03-06T16:00:00.000Z",
        "date_updated": "2026-03-06T16:00:00.000Z",
        "total": 80.5,
        "handling_fee": 0.0,
        "total_refund_value_customer_currency": 80.5,
        "total_store_credit_value_customer_currency": 0.0,
        "total_credit_exchange_value": 0.0,
        "total_additional_payment": 0.0,
        "total_refunded_taxes": 13.42,
        "total_refunded_duties": 0.0,
        "shipping_carrier": "DHL",
        "tracking_number": "JD000100",
        "portal_quick_link": "https://returns.example.org/r/ret_100",
        "return_shipments": [
            {
                "shipment_id": "shp_100",
                "tracking_number": "JD000100",
                "items": [
                    _item("l1", "v1", "JKT-M-NAV", "Jacket", "M / Navy", 50.25, "Too big"),
                    _item("l2", "v2", "CAP-OS-RED", "Cap", "One size", 30.25, "Changed my mind"),
                ],
            }
        ],
        "exchange_items": [],
    }
    record.update(overrides)
    converted: dict[str, Any] = as_sdk_record(record)
    return converted


def _item(
    line: str, variant: str, sku: str, product: str, variant_name: str, cost: float, reason: str
) -> dict[str, Any]:
    return {
        "shopify_line_item_id": line,
        "shopify_variant_id": variant,
        "sku": sku,
        "product_name": product,
        "variant_name": variant_name,
        "main_reason_text": reason,
        "sub_reason_text": None,
        "item_count": 1,
        "cost": cost,
        "currency": "EUR",
        "return_type": "Refund",
        "is_faulty": False,
        "refund_amount": cost,
        "refunded_at": "2026-03-06T15:00:00.000Z",
        "qc_status": "passed",
        "restock_quantity": 1,
        "restocked_at": "2026-03-05T10:00:00.000Z",
    }


def items_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [item for shipment in record["return_shipments"] for item in shipment["items"]]


def with_items(record: dict[str, Any], *changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of `record` whose n-th item is updated with the n-th change."""
    changed = copy.deepcopy(record)
    for item, change in zip(items_of(changed), changes, strict=False):
        item.update(as_sdk_record(change))
    return changed


OUTPUTS = """\
    version: 1
    outputs:
      klaviyo_events: {key_properties: [unique_id], schema: schemas/klaviyo_events.json}
      klaviyo_profile_updates:
        key_properties: [update_id]
        schema: schemas/klaviyo_profile_updates.json
      integration_exceptions:
        key_properties: [exception_id]
        schema: schemas/integration_exceptions.json
      plain: {key_properties: [id], schema: schemas/plain.json}
"""


# Singer messages, and the mapper run on them.

#: The installed console script (beside the interpreter running the tests).
SWAP_TRANSFORMS = Path(sys.executable).parent / "swap-transforms"


def schema(stream: str) -> dict[str, Any]:
    return {"type": "SCHEMA", "stream": stream, "schema": {"type": "object"}, "key_properties": []}


def record(stream: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "RECORD", "stream": stream, "record": data}


def state(value: dict[str, Any]) -> dict[str, Any]:
    return {"type": "STATE", "value": value}


def lines(*messages: dict[str, Any]) -> str:
    """Singer lines as a tap writes them (Decimal amounts as JSON numbers)."""
    return "".join(encoder.encode(message).decode() + "\n" for message in messages)


def run(
    capsysbinary: pytest.CaptureFixture[bytes], text: str, **config: Any
) -> list[dict[str, Any]]:
    """The default mapping run in this process over Singer `text`: the messages it writes."""
    mapper = SwapTransformsMapper(config={"mapping_files": [str(DEFAULT_MAPPING)], **config})
    capsysbinary.readouterr()
    mapper.listen(io.StringIO(text))
    out = capsysbinary.readouterr().out.decode()
    return [json.loads(line, parse_float=Decimal) for line in out.splitlines()]


def bookmark(value: str) -> dict[str, Any]:
    return state({"bookmarks": {"returns": {"replication_key_value": value}}})


def started(out: list[dict[str, Any]]) -> list[str]:
    return [
        m["record"]["source_id"]
        for m in out
        if m["type"] == "RECORD" and m["record"].get("metric") == "Return Started"
    ]


def exceptions(out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        m["record"]
        for m in out
        if m["type"] == "RECORD" and m["stream"] == "integration_exceptions"
    ]


def states(out: list[dict[str, Any]]) -> list[str]:
    return [
        m["value"]["bookmarks"]["returns"]["replication_key_value"]
        for m in out
        if m["type"] == "STATE"
    ]
