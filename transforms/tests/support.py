"""Fixtures of the mapper tests: mapping files written on the fly, records shaped like Swap's."""

from __future__ import annotations

import copy
import json
import textwrap
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from emulators.swap import SwapEmulator
from swap_transforms.engine import MappingEngine
from swap_transforms.source_check import load_sources
from tests.support.shared import REPO, SWAP_NOW

TRANSFORMS = REPO / "transforms"
DEFAULT_MAPPING = TRANSFORMS / "swap_to_klaviyo.yml"
TARGET_SCHEMAS = REPO / "target-klaviyo" / "target_klaviyo" / "schemas"
FIXED_NOW = "2026-06-01T12:00:00Z"


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


@pytest.fixture(scope="session")
def default_engine() -> MappingEngine:
    # With the tap's schemas, as preview and the mapping tests load it.
    return MappingEngine.from_files([str(DEFAULT_MAPPING)], clock=clock, sources=load_sources())


@pytest.fixture(scope="session")
def emulator_returns() -> list[dict[str, Any]]:
    """Realistic returns in every lifecycle stage, from the Swap emulator's data set."""
    with SwapEmulator(
        returns=400, seed=7, now=SWAP_NOW, api_key="k", store_id="s", rate_limit_per_minute=None
    ) as swap:
        return [as_sdk_record(record) for record in swap.all_returns()]


MappingWriter = Callable[..., Path]


@pytest.fixture
def write_mapping(tmp_path: Path) -> MappingWriter:
    """Writes a mapping file (dedented) beside copies of the default output schemas."""
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    for schema in (TRANSFORMS / "schemas").glob("*.json"):
        (schemas / schema.name).write_text(schema.read_text())

    def write(text: str, name: str = "mapping.yml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write


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
