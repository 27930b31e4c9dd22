"""Writes transforms/samples/returns.jsonl: a small sample of Swap returns for preview and tests.

Analysts preview and test a mapping without running the tap. The sample is drawn from the Swap
emulator's data set (the same generator the project's tests use, seed 7, clock 2026-06-01), so
it has Swap's real shapes: from the first returns in API order, each one kept adds something not
yet covered (a lifecycle stage, a way the e-mail was typed, a partial refund, two refunds, a
restock, several shipments, an exchange). Then, because Swap may leave fields out, two returns
are edited and say so in this docstring:

* the first kept `Closed` return loses the optional fields the default mapping reads with
  `default(none)` (portal link, carrier, tracking number, refund/credit/payment totals);
* the first kept `Cancelled` return has null dates (submission, delivery, closing).

Run from the project root: `.venv/bin/python transforms/samples/generate.py` (a test checks
that the committed file is what this writes).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from emulators.swap.dataset import ReturnDataset

SAMPLE = Path(__file__).resolve().parent / "returns.jsonl"
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
OPTIONAL = (
    "portal_quick_link",
    "shipping_carrier",
    "tracking_number",
    "total_refund_value_customer_currency",
    "total_store_credit_value_customer_currency",
    "total_credit_exchange_value",
    "total_additional_payment",
)


def _items(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [item for shipment in record["return_shipments"] or [] for item in shipment["items"]]


def _email_kind(email: str | None) -> str:
    if email is None:
        return "null"
    if not email.strip():
        return "empty"
    if "@" not in email:
        return "no @"
    domain = email.partition("@")[2]
    if not domain or "." not in domain:
        return "no domain"
    if email != email.strip():
        return "padded"
    return "mixed case" if email != email.lower() else "clean"


def features(record: dict[str, Any]) -> Iterator[str]:
    """What this return shows that a sample should cover."""
    yield "stage " + " / ".join(
        str(record[name])
        for name in ("return_status", "delivery_status", "quality_control_status", "rma_processed")
    )
    yield "email " + _email_kind(record["customer_email"])
    items = _items(record)
    refunds = {item["refunded_at"] for item in items if item["refunded_at"]}
    if len(refunds) > 1:
        yield "two refunds"
    for item in items:
        if (
            item["refund_amount"] is not None
            and item["refund_amount"] < item["cost"] * item["item_count"]
        ):
            yield "partial refund"
        if refunds and item["refunded_at"] is None:
            yield "line waiting for its refund"
        if (item["restock_quantity"] or 0) > 0:
            yield "restock"
        if item["is_faulty"]:
            yield "faulty item"
    if len(record["return_shipments"] or []) > 1:
        yield "several shipments"
    if record["exchange_items"]:
        yield "exchange"


def select(records: Iterator[dict[str, Any]]) -> list[dict[str, Any]]:
    covered: set[str] = set()
    kept: list[dict[str, Any]] = []
    for record in records:
        new = set(features(record)) - covered
        if new:
            covered |= new
            kept.append(record)
    return kept


def _first(records: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return next(
        r for r in records if r["return_status"] == status and "@" in (r["customer_email"] or "")
    )


def dirty(records: list[dict[str, Any]]) -> None:
    """Swap may leave optional fields out and dates null: two returns show it."""
    closed = next(
        r for r in records if r["return_status"] == "Closed" and "@" in (r["customer_email"] or "")
    )
    for name in OPTIONAL:
        del closed[name]
    cancelled = next(
        r
        for r in records
        if r["return_status"] == "Cancelled" and "@" in (r["customer_email"] or "")
    )
    for name in ("submission_date", "delivered_date", "date_closed"):
        cancelled[name] = None


def sample_text() -> str:
    data = ReturnDataset(returns=400, seed=7, now=NOW, store_id="store_test")
    records = select(data.iter_returns())
    dirty(records)
    return "".join(json.dumps(record) + "\n" for record in records)


def main() -> int:
    SAMPLE.write_text(sample_text(), encoding="utf-8")
    sys.stdout.write(f"wrote {SAMPLE}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
