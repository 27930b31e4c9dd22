"""The default mapping (swap_to_klaviyo.yml): every rule, on emulator data and edge cases.

Expectations are computed from the Swap records with plain Python written from the mapping's
contract (metric names, ids, times, amounts), not from the mapping itself.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter, defaultdict
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from email_validator import EmailNotValidError, validate_email

from emulators.swap import SwapEmulator
from swap_transforms.engine import MappingEngine
from tests.conftest import SWAP_NOW, shared_file
from tests.transforms.conftest import a_return, as_sdk_record, items_of, with_items

Outputs = list[tuple[str, dict[str, Any]]]
OPEN = {"Open", "Needs Review", "On Hold"}
DONE = {"Closed", "Cancelled", "Expired"}


def instant(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def cents(value: Any) -> Decimal | None:
    if value is None:
        return None
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def events(outputs: Outputs, metric: str | None = None) -> list[dict[str, Any]]:
    found = [record for stream, record in outputs if stream == "klaviyo_events"]
    return [event for event in found if metric is None or event["metric"] == metric]


def of(outputs: Outputs, stream: str) -> list[dict[str, Any]]:
    return [record for name, record in outputs if name == stream]


def usable_email(record: dict[str, Any]) -> str | None:
    email = (record.get("customer_email") or "").strip().lower()
    if not email:
        return None
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError:
        return None
    return email


# -- the emulator's data set -----------------------------------------------------------------------


def expected_metrics(record: dict[str, Any]) -> Counter[str]:
    items = items_of(record)
    expected = Counter({"Return Started": 1})
    if record["delivery_status"] == "Delivered":
        expected["Return Received"] = 1
    if record["quality_control_status"] in {"passed", "failed", "partial"}:
        expected["Return Inspected"] = 1
    if record["rma_processed"] or record["return_status"] == "Closed":
        expected["Return Processed"] = 1
    if record["return_status"] in {"Cancelled", "Expired"}:
        expected["Return Cancelled"] = 1
    refunds = {item["refunded_at"] for item in items if item.get("refunded_at")}
    if refunds:
        expected["Refunded Order"] = len(refunds)
    restocks = sum(1 for item in items if (item.get("restock_quantity") or 0) > 0)
    if restocks:
        expected["Item Restocked"] = restocks
    return expected


def test_every_rule_on_the_emulator_data(
    default_engine: MappingEngine, emulator_returns: list[dict[str, Any]]
) -> None:
    seen_metrics: Counter[str] = Counter()
    for record in emulator_returns:
        outputs = default_engine.map_record("returns", record)
        email = usable_email(record)
        if email is None:
            [(stream, rejected)] = outputs
            assert stream == "integration_exceptions"
            assert rejected["reason"] in {"missing_email", "invalid_email"}
            blank = not (record["customer_email"] or "").strip()
            assert (rejected["reason"] == "missing_email") == blank
            continue
        assert of(outputs, "integration_exceptions") == []
        produced = Counter(event["metric"] for event in events(outputs))
        assert produced == expected_metrics(record), record["return_id"]
        seen_metrics.update(produced)
        check_events(record, email, outputs)
        check_restocks(record, outputs)
        check_profile_update(record, email, outputs)
    # The data set has returns in every stage, so every rule ran on real shapes.
    assert set(seen_metrics) == {
        "Return Started",
        "Return Received",
        "Return Inspected",
        "Return Processed",
        "Return Cancelled",
        "Refunded Order",
        "Item Restocked",
    }


def check_events(record: dict[str, Any], email: str, outputs: Outputs) -> None:
    return_id = record["return_id"]
    updated = instant(record["date_updated"])
    for event in events(outputs):
        assert event["profile"] == {"email": email}
        assert event["source_id"] == return_id
        assert instant(event["source_updated_at"]) == updated
        assert event["value_currency"] == record["customer_currency"]
        assert event["properties"]["ReturnId"] == return_id
        assert event["properties"]["RMA"] == record["rma_number"]
        assert event["properties"]["OrderId"] == record["order_id"]
        assert event["properties"]["OrderName"] == record["shopify_order_name"]
    [started] = events(outputs, "Return Started")
    assert started["unique_id"] == f"swap:{return_id}:started"
    assert instant(started["time"]) == instant(record["submission_date"] or record["date_updated"])
    assert started["value"] == cents(record["total"])
    assert started["properties"]["SKUs"] == [item["sku"] for item in items_of(record)]
    for event in events(outputs, "Return Received"):
        assert event["unique_id"] == f"swap:{return_id}:received"
        assert instant(event["time"]) == instant(record["delivered_date"] or record["date_updated"])
    for metric, stage in (("Return Processed", "processed"), ("Return Cancelled", "cancelled")):
        for event in events(outputs, metric):
            assert event["unique_id"] == f"swap:{return_id}:{stage}"
            closed = record["date_closed"] or record["date_updated"]
            assert instant(event["time"]) == instant(closed)
    for event in events(outputs, "Return Processed"):
        refund = record["total_refund_value_customer_currency"]
        assert event["properties"]["RefundAmount"] == cents(refund)
        assert event["properties"]["ExchangeAmount"] == cents(record["total_credit_exchange_value"])
    lines_by_time: dict[datetime | None, list[dict[str, Any]]] = defaultdict(list)
    for item in items_of(record):
        if item.get("refunded_at"):
            lines_by_time[instant(item["refunded_at"])].append(item)
    for event in events(outputs, "Refunded Order"):
        lines = lines_by_time.pop(instant(event["time"]))
        assert event["value"] == cents(sum(line["refund_amount"] for line in lines))
        assert event["properties"]["RefundedSKUs"] == [line["sku"] for line in lines]
        assert event["unique_id"].startswith(f"swap:{return_id}:refund:")
    assert lines_by_time == {}


def check_restocks(record: dict[str, Any], outputs: Outputs) -> None:
    restocked = [item for item in items_of(record) if (item.get("restock_quantity") or 0) > 0]
    variants = of(outputs, "klaviyo_catalog_variants")
    assert [v["variant_id"] for v in variants] == [
        f"$custom:::$default:::{item['sku']}" for item in restocked
    ]
    assert [v["inventory_delta"] for v in variants] == [i["restock_quantity"] for i in restocked]
    for variant, item, event in zip(
        variants, restocked, events(outputs, "Item Restocked"), strict=True
    ):
        assert (
            variant["restock_key"] == f"swap:{record['return_id']}:{item['shopify_line_item_id']}"
        )
        assert instant(variant["time"]) == instant(item["restocked_at"] or record["date_updated"])
        assert event["time"] == variant["time"]
        assert event["properties"]["SKU"] == item["sku"]
        assert event["properties"]["Quantity"] == item["restock_quantity"]
        assert event["properties"]["VariantId"] == item["shopify_variant_id"]


def check_profile_update(record: dict[str, Any], email: str, outputs: Outputs) -> None:
    [update] = of(outputs, "klaviyo_profile_updates")
    rma = record["rma_number"]
    assert update["update_id"].startswith(f"swap:{record['return_id']}:profile:")
    assert instant(update["update_id"].split(":profile:")[1]) == instant(record["date_updated"])
    assert update["email"] == email
    assert instant(update["as_of"]) == instant(record["submission_date"] or record["date_updated"])
    assert update["append"] == (
        {"swap_open_returns": [rma]} if record["return_status"] in OPEN else {}
    )
    assert update["unappend"] == (
        {"swap_open_returns": [rma]} if record["return_status"] in DONE else {}
    )
    properties = update["properties"]
    assert properties["swap_last_returned_skus"] == [item["sku"] for item in items_of(record)]
    assert properties["swap_last_refund_amount"] == cents(
        record["total_refund_value_customer_currency"]
    )
    assert properties["swap_last_return_status"] in {
        "requested",
        "in transit",
        "received",
        "inspected",
        "completed",
        "cancelled",
    }


def test_ids_are_unique_and_stable_over_the_data_set(
    default_engine: MappingEngine, emulator_returns: list[dict[str, Any]]
) -> None:
    first = [default_engine.map_record("returns", r) for r in emulator_returns]
    second = [default_engine.map_record("returns", r) for r in emulator_returns]
    assert first == second
    outputs = [output for outputs in first for output in outputs]
    for stream, key in (
        ("klaviyo_events", "unique_id"),
        ("klaviyo_catalog_variants", "restock_key"),
        ("klaviyo_profile_updates", "update_id"),
        ("integration_exceptions", "exception_id"),
    ):
        ids = [record[key] for record in of(outputs, stream)]
        assert ids, stream
        assert len(ids) == len(set(ids)), stream


def test_a_return_synced_again_later_keeps_its_event_ids(default_engine: MappingEngine) -> None:
    with SwapEmulator(returns=60, seed=3, now=SWAP_NOW, rate_limit_per_minute=None) as swap:
        before = {r["return_id"]: as_sdk_record(r) for r in swap.all_returns()}
        changed = swap.advance(fraction=1.0)
        after = {r["return_id"]: as_sdk_record(r) for r in swap.all_returns()}
    assert changed
    for return_id in changed:
        old = {
            e["unique_id"] for e in events(default_engine.map_record("returns", before[return_id]))
        }
        new = {
            e["unique_id"] for e in events(default_engine.map_record("returns", after[return_id]))
        }
        # Every event sent for the earlier version is sent again with the same id (Klaviyo
        # keeps one), and the later stage only adds events.
        assert old <= new


def test_malformed_records_fail_only_the_rules_that_read_the_broken_fields(
    default_engine: MappingEngine,
) -> None:
    with SwapEmulator(
        returns=40, seed=5, now=SWAP_NOW, rate_limit_per_minute=None, malformed_every=10
    ) as swap:
        records = [as_sdk_record(r) for r in swap.all_returns()]
    broken = [r for r in records if isinstance(r["total"], str) and usable_email(r)]
    assert broken
    for record in broken:
        outputs = default_engine.map_record("returns", record)
        failures = {e["rule"]: e for e in of(outputs, "integration_exceptions")}
        assert failures["return_started"]["reason"] == "mapping_error"
        assert "money expects a number" in failures["return_started"]["detail"]
        assert record["total"] not in failures["return_started"]["detail"]
        assert len(of(outputs, "klaviyo_profile_updates")) == 1
        assert events(outputs, "Return Started") == []


# -- hand-written edge cases ----------------------------------------------------------------------


def test_partial_refund_in_two_goes(default_engine: MappingEngine) -> None:
    record = with_items(
        a_return(),
        {"refund_amount": 50.25, "refunded_at": "2026-03-06T15:00:00.000Z"},
        {"refund_amount": 20.0, "refunded_at": "2026-03-08T10:00:00.000Z", "item_count": 1},
    )
    first, second = events(default_engine.map_record("returns", record), "Refunded Order")
    assert first["unique_id"] == "swap:ret_100:refund:2026-03-06T15:00:00Z"
    assert second["unique_id"] == "swap:ret_100:refund:2026-03-08T10:00:00Z"
    assert (first["time"], second["time"]) == ("2026-03-06T15:00:00Z", "2026-03-08T10:00:00Z")
    assert (first["value"], second["value"]) == (Decimal("50.25"), Decimal("20.00"))
    assert first["properties"]["Items"] == [
        {"SKU": "JKT-M-NAV", "Quantity": 1, "Amount": Decimal("50.25")}
    ]
    assert second["properties"]["RefundedSKUs"] == ["CAP-OS-RED"]
    assert first["properties"]["IsPartial"] is False  # in full, and every line got refunded
    assert second["properties"]["IsPartial"] is True  # 20.00 of 30.25
    assert first["properties"]["Reason"] == "Too big"
    assert second["value_currency"] == "EUR"
    # A line still waiting for its refund makes every refund so far partial.
    waiting = with_items(record, {}, {"refund_amount": None, "refunded_at": None})
    [only] = events(default_engine.map_record("returns", waiting), "Refunded Order")
    assert only["properties"]["IsPartial"] is True


def test_two_lines_refunded_together_are_one_refund(default_engine: MappingEngine) -> None:
    record = with_items(a_return(), {"item_count": 2, "refund_amount": 100.5}, {})
    [refund] = events(default_engine.map_record("returns", record), "Refunded Order")
    assert refund["value"] == Decimal("130.75")
    assert refund["properties"]["RefundedSKUs"] == ["JKT-M-NAV", "CAP-OS-RED"]
    assert refund["properties"]["IsPartial"] is False
    assert refund["properties"]["Reason"] == "Too big, Changed my mind"


def suppression(updates: list[dict[str, Any]]) -> set[str]:
    """What Klaviyo's list property becomes after these updates (append/unappend as sets)."""
    values: set[str] = set()
    for update in updates:
        values |= set(update["append"].get("swap_open_returns", []))
        values -= set(update["unappend"].get("swap_open_returns", []))
    return values


def test_a_customer_with_two_open_returns_stays_suppressed_until_both_are_done(
    default_engine: MappingEngine,
) -> None:
    def update(return_id: str, rma: str, status: str) -> dict[str, Any]:
        record = a_return(return_id=return_id, rma_number=rma, return_status=status)
        [profile] = of(default_engine.map_record("returns", record), "klaviyo_profile_updates")
        return profile

    history = [
        update("ret_1", "SW-1", "Open"),
        update("ret_2", "SW-2", "Needs Review"),
        update("ret_1", "SW-1", "Closed"),
    ]
    assert history[0]["append"] == {"swap_open_returns": ["SW-1"]}
    assert history[0]["unappend"] == {}
    assert suppression(history) == {"SW-2"}
    history.append(update("ret_2", "SW-2", "On Hold"))
    assert suppression(history) == {"SW-2"}
    history.append(update("ret_2", "SW-2", "Cancelled"))
    assert suppression(history) == set()
    assert {h["email"] for h in history} == {"maria.lopez@example.org"}


@pytest.mark.parametrize("email", [None, "", "   ", "\t\n"])
def test_missing_email(default_engine: MappingEngine, email: str | None) -> None:
    [(stream, rejected)] = default_engine.map_record("returns", a_return(customer_email=email))
    assert stream == "integration_exceptions"
    assert rejected["reason"] == "missing_email"
    assert rejected["source_key"] == "ret_100"
    assert rejected["rule"] is None
    assert rejected["source_updated_at"] == "2026-03-06T16:00:00Z"


def test_absent_email_field_is_missing(default_engine: MappingEngine) -> None:
    record = a_return()
    del record["customer_email"]
    [(_, rejected)] = default_engine.map_record("returns", record)
    assert rejected["reason"] == "missing_email"


@pytest.mark.parametrize(
    "email", ["maria.example.org", "maria@", "maria lopez@example.org", "n/a", "maria@example"]
)
def test_invalid_email(default_engine: MappingEngine, email: str) -> None:
    [(_, rejected)] = default_engine.map_record("returns", a_return(customer_email=email))
    assert rejected["reason"] == "invalid_email"
    assert email.strip() not in (rejected["detail"] or "")


def test_emails_are_trimmed_and_lower_cased(default_engine: MappingEngine) -> None:
    outputs = default_engine.map_record("returns", a_return(customer_email=" MARIA@Example.ORG\n"))
    assert {e["profile"]["email"] for e in events(outputs)} == {"maria@example.org"}
    assert of(outputs, "klaviyo_profile_updates")[0]["email"] == "maria@example.org"


def test_null_dates_fall_back_to_date_updated(default_engine: MappingEngine) -> None:
    record = a_return(
        submission_date=None,
        delivered_date=None,
        date_closed=None,
        date_updated="2026-03-09T08:00:00.000Z",
    )
    record = with_items(
        record,
        {"restocked_at": None, "refunded_at": None},
        {"refunded_at": None, "restock_quantity": 0},
    )
    outputs = default_engine.map_record("returns", record)
    assert of(outputs, "integration_exceptions") == []
    times = {e["metric"]: e["time"] for e in events(outputs)}
    assert times == {
        "Return Started": "2026-03-09T08:00:00Z",
        "Return Received": "2026-03-09T08:00:00Z",
        "Return Inspected": "2026-03-09T08:00:00Z",
        "Return Processed": "2026-03-09T08:00:00Z",
        "Item Restocked": "2026-03-09T08:00:00Z",
    }
    [profile] = of(outputs, "klaviyo_profile_updates")
    assert profile["as_of"] == "2026-03-09T08:00:00Z"
    assert profile["properties"]["swap_last_return_at"] == "2026-03-09T08:00:00Z"
    # The key names the line, not the restock time: when Swap fills restocked_at in later, a
    # resync must not apply the same delta again under a new key.
    [variant] = of(outputs, "klaviyo_catalog_variants")
    assert variant["restock_key"] == "swap:ret_100:l1"
    assert variant["time"] == "2026-03-09T08:00:00Z"


def test_cancelled_return_time_falls_back_too(default_engine: MappingEngine) -> None:
    record = a_return(return_status="Expired", rma_processed=False, date_closed=None)
    [cancelled] = events(default_engine.map_record("returns", record), "Return Cancelled")
    assert cancelled["time"] == "2026-03-06T16:00:00Z"
    assert cancelled["unique_id"] == "swap:ret_100:cancelled"
    assert cancelled["properties"]["ReturnStatus"] == "Expired"


def test_null_money(default_engine: MappingEngine) -> None:
    record = a_return(total=None, total_refund_value_customer_currency=None)
    del record["total_store_credit_value_customer_currency"]
    record = with_items(record, {"cost": None}, {})
    outputs = default_engine.map_record("returns", record)
    assert of(outputs, "integration_exceptions") == []
    [started] = events(outputs, "Return Started")
    assert started["value"] is None
    assert started["properties"]["Items"][0]["Price"] is None
    [processed] = events(outputs, "Return Processed")
    assert processed["properties"]["RefundAmount"] is None
    assert processed["properties"]["StoreCreditAmount"] is None
    assert processed["properties"]["ExchangeAmount"] == Decimal("0.00")
    [profile] = of(outputs, "klaviyo_profile_updates")
    assert profile["properties"]["swap_last_refund_amount"] is None


def test_return_started_properties(default_engine: MappingEngine) -> None:
    record = with_items(
        a_return(type=["Refund", "Exchange"]),
        {"sub_reason_text": "Sleeves", "is_faulty": True, "item_count": 2},
        {"main_reason_text": "Too big"},
    )
    [started] = events(default_engine.map_record("returns", record), "Return Started")
    properties = started["properties"]
    assert properties["ReturnTypes"] == ["Refund", "Exchange"]
    assert properties["Reasons"] == ["Too big"]
    assert properties["SKUs"] == ["JKT-M-NAV", "CAP-OS-RED"]
    assert properties["ReturnStatus"] == "Closed"
    assert properties["PortalLink"] == "https://returns.example.org/r/ret_100"
    assert properties["Items"][0] == {
        "SKU": "JKT-M-NAV",
        "ProductName": "Jacket",
        "VariantName": "M / Navy",
        "Quantity": 2,
        "Price": Decimal("50.25"),
        "Reason": "Too big",
        "SubReason": "Sleeves",
        "IsFaulty": True,
    }
    assert started["value"] == Decimal("80.50")
    assert started["value_currency"] == "EUR"


def test_return_inspected_reports_each_item(default_engine: MappingEngine) -> None:
    record = with_items(
        a_return(quality_control_status="partial"),
        {"qc_status": "failed", "is_faulty": True},
        {"qc_status": "passed"},
    )
    [inspected] = events(default_engine.map_record("returns", record), "Return Inspected")
    assert inspected["properties"]["QualityControlStatus"] == "partial"
    assert inspected["properties"]["Items"] == [
        {"SKU": "JKT-M-NAV", "QCStatus": "failed", "IsFaulty": True},
        {"SKU": "CAP-OS-RED", "QCStatus": "passed", "IsFaulty": False},
    ]
    assert inspected["properties"]["FaultySKUs"] == ["JKT-M-NAV"]
    pending = a_return(quality_control_status="pending")
    assert events(default_engine.map_record("returns", pending), "Return Inspected") == []


def test_return_processed_reports_the_outcome(default_engine: MappingEngine) -> None:
    record = a_return(
        rma_processed=True,
        return_status="Open",
        total_refund_value_customer_currency=40.005,
        total_store_credit_value_customer_currency=10,
        total_credit_exchange_value=30.25,
        total_additional_payment=4.5,
    )
    [processed] = events(default_engine.map_record("returns", record), "Return Processed")
    assert processed["time"] == "2026-03-06T16:00:00Z"
    assert {
        k: processed["properties"][k]
        for k in ("RefundAmount", "StoreCreditAmount", "ExchangeAmount", "AdditionalPayment")
    } == {
        "RefundAmount": Decimal("40.01"),
        "StoreCreditAmount": Decimal("10.00"),
        "ExchangeAmount": Decimal("30.25"),
        "AdditionalPayment": Decimal("4.50"),
    }
    not_processed = a_return(rma_processed=False, return_status="Open")
    assert events(default_engine.map_record("returns", not_processed), "Return Processed") == []


def test_item_restocked_and_its_catalog_change(default_engine: MappingEngine) -> None:
    record = with_items(
        a_return(),
        {"restock_quantity": 2, "restocked_at": "2026-03-05T10:00:00.500Z"},
        {"restock_quantity": 0},
    )
    outputs = default_engine.map_record("returns", record)
    [event] = events(outputs, "Item Restocked")
    [variant] = of(outputs, "klaviyo_catalog_variants")
    assert event["unique_id"] == "swap:ret_100:restock:l1"
    assert event["time"] == "2026-03-05T10:00:00.500Z"
    assert event["properties"] == {
        "ReturnId": "ret_100",
        "RMA": "SW-100",
        "OrderId": "5500000000100",
        "OrderName": "#2100",
        "SKU": "JKT-M-NAV",
        "VariantId": "v1",
        "ProductName": "Jacket",
        "VariantName": "M / Navy",
        "Quantity": 2,
    }
    assert variant == {
        "variant_id": "$custom:::$default:::JKT-M-NAV",
        "sku": "JKT-M-NAV",
        "inventory_delta": 2,
        "restock_key": "swap:ret_100:l1",
        "time": "2026-03-05T10:00:00.500Z",
        "source_id": "ret_100",
        "source_updated_at": "2026-03-06T16:00:00Z",
    }


def test_a_restocked_line_without_sku_is_an_exception_not_a_bad_variant(
    default_engine: MappingEngine,
) -> None:
    record = with_items(a_return(), {"sku": None}, {"restock_quantity": 0})
    outputs = default_engine.map_record("returns", record)
    [failure] = [e for e in of(outputs, "integration_exceptions") if e["rule"] == "item_restocked"]
    assert failure["reason"] == "mapping_error"
    assert failure["detail"].startswith("item 0: output 'klaviyo_catalog_variants', ")
    assert of(outputs, "klaviyo_catalog_variants") == []


@pytest.mark.parametrize(
    ("status", "delivery", "qc", "processed", "expected"),
    [
        ("Open", "Pre-Transit", "pending", False, "requested"),
        ("Open", None, None, False, "requested"),
        ("Open", "In-Transit", "pending", False, "in transit"),
        ("Needs Review", "Delivered", "pending", False, "received"),
        ("On Hold", "Delivered", "failed", False, "inspected"),
        ("Open", "Delivered", "passed", True, "completed"),
        ("Closed", "Delivered", "passed", True, "completed"),
        ("Cancelled", "Pre-Transit", "pending", False, "cancelled"),
        ("Expired", "Pre-Transit", "pending", False, "cancelled"),
    ],
)
def test_customer_facing_status(
    default_engine: MappingEngine,
    status: str,
    delivery: str | None,
    qc: str | None,
    processed: bool,
    expected: str,
) -> None:
    record = a_return(
        return_status=status,
        delivery_status=delivery,
        quality_control_status=qc,
        rma_processed=processed,
    )
    [profile] = of(default_engine.map_record("returns", record), "klaviyo_profile_updates")
    assert profile["properties"]["swap_last_return_status"] == expected


def test_last_return_reason_is_none_without_reasons(default_engine: MappingEngine) -> None:
    record = with_items(a_return(), {"main_reason_text": None}, {"main_reason_text": None})
    [profile] = of(default_engine.map_record("returns", record), "klaviyo_profile_updates")
    assert profile["properties"]["swap_last_return_reason"] is None


def test_the_contract_example_of_the_swap_api(default_engine: MappingEngine) -> None:
    text = shared_file("swap-returns-api.md").read_text()
    example = re.search(r"## Example\s+```json\n(.*?)```", text, re.DOTALL)
    assert example, "the example return of swap-returns-api.md was not found"
    record = as_sdk_record(json.loads(example.group(1)))
    outputs = default_engine.map_record("returns", copy.deepcopy(record))
    assert of(outputs, "integration_exceptions") == []
    assert Counter(e["metric"] for e in events(outputs)) == expected_metrics(record)
    [profile] = of(outputs, "klaviyo_profile_updates")
    assert profile["email"] == record["customer_email"].strip().lower()
