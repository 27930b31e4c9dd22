"""Renders a return as Swap's V2 API returns it (``ExternalReturnV2Dto``), from its skeleton.

Rendering is where the detail lives: items, money, shipments, addresses. All of it is drawn from
the return's detail stream *before* looking at how far the return has got, so a return keeps the
same items and amounts as it moves through its life; the step it has reached only decides which
dates, refunds, restocks and QC results are visible yet.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from emulators.swap.catalog import Product, Variant, catalog
from emulators.swap.lifecycle import (
    DETAIL_STREAM,
    RETURN_TYPES,
    Skeleton,
    Stage,
    delivery_status,
    return_status,
)
from emulators.swap.people import Customer
from emulators.swap.timestamps import SECOND_MS, to_iso


@dataclass(frozen=True)
class _Reason:
    id: str
    text: str
    faulty: bool = False
    sub_reasons: tuple[tuple[str, str], ...] = ()


_REASONS = (
    _Reason("rsn_too_small", "Too small", sub_reasons=(("sub_chest", "Tight on the chest"),
                                                       ("sub_length", "Too short"))),
    _Reason("rsn_too_large", "Too large", sub_reasons=(("sub_waist", "Loose at the waist"),)),
    _Reason("rsn_changed_mind", "Changed my mind"),
    _Reason("rsn_not_as_described", "Not as described",
            sub_reasons=(("sub_colour", "Colour differs from the photos"),)),
    _Reason("rsn_quality", "Quality not as expected"),
    _Reason("rsn_wrong_item", "Wrong item received"),
    _Reason("rsn_late", "Arrived too late"),
    _Reason("rsn_faulty", "Faulty or damaged", faulty=True,
            sub_reasons=(("sub_seam", "Seam came apart"), ("sub_stain", "Stained on arrival"),
                         ("sub_zip", "Broken zip"))),
)  # fmt: skip
_REASON_WEIGHTS = (24, 14, 20, 10, 10, 6, 4, 12)
_FAULTY_REASON = _REASONS[-1]
_COMMENTS = (
    None, None, None, None, "", "Trop petit 😕", "サイズが合わない",
    "Colour was different from the photos", "Gift, not needed", "Zip broke after one wear!!", "  ",
    "Ordered two sizes, keeping the M",
)  # fmt: skip
_INTAKE_FAILED = ("Worn", "Damaged", "Missing tags", "Wrong item returned", "Washed")
_PROCESSORS = ("Swap Automation", "warehouse@brand.example", "Priya (CX team)", "Tomás R.")

# carrier id: display name, tracking number format, tracking URL format
_CARRIERS: dict[str, tuple[str, str, str]] = {
    "royal_mail": ("Royal Mail", "RM{:09d}GB",
                   "https://www.royalmail.com/track-your-item#/tracking-results/{}"),
    "evri": ("Evri", "H01HYA{:010d}", "https://www.evri.com/track/parcel/{}"),
    "dpd": ("DPD", "15{:012d}", "https://track.dpd.co.uk/parcels/{}"),
    "dhl": ("DHL", "JD{:016d}", "https://www.dhl.com/track?tracking-id={}"),
    "ups": ("UPS", "1Z{:016d}", "https://www.ups.com/track?tracknum={}"),
    "usps": ("USPS", "9400{:018d}", "https://tools.usps.com/go/TrackConfirmAction?tLabels={}"),
}  # fmt: skip
_CARRIERS_BY_COUNTRY = {"GB": ("royal_mail", "evri", "dpd", "dhl"), "US": ("usps", "ups")}
_CARRIERS_ELSEWHERE = ("dhl", "ups", "dpd")
_LOCATIONS = {"US": "loc_us_newark", "CA": "loc_us_newark", "GB": "loc_uk_northampton"}
_EU_LOCATION = "loc_eu_venlo"
_LABEL_TYPES = ("prepaid_label", "qr_code", "self_ship")

_FX = {"GBP": 1.0, "EUR": 1.17, "USD": 1.27, "CAD": 1.74, "AUD": 1.93}
_TAX_RATE = {"GBP": 0.2, "EUR": 0.2, "USD": 0.0, "CAD": 0.13, "AUD": 0.1}
_NULLABLE_MONEY = (
    "handling_fee",
    "total_refund_value_customer_currency",
    "total_store_credit_value_customer_currency",
    "total_credit_exchange_value",
    "total_additional_payment",
    "total_refunded_taxes",
    "total_refunded_duties",
)
_NUMBER_WORDS = ("zero", "one", "two", "three", "four")


@dataclass(frozen=True, slots=True)
class _Line:
    """One returned line as drawn: what it will become, whatever the return's progress."""

    kind: str
    passes_qc: bool
    variant: Variant
    exchange_variant: Variant
    count: int
    price: float
    cost: float
    reason: _Reason
    sub_reason: tuple[str, str] | None
    refund_amount: float
    duty: float
    duty_missing: bool
    restock: int
    intake_if_failed: str
    comments: str | None

    @property
    def value(self) -> float:
        return round(self.cost * self.count, 2)


def _draw_line(
    rng: random.Random,
    products: tuple[Product, ...],
    kind: str,
    *,
    passes: bool,
    fx: float,
    abroad: bool,
) -> _Line:
    product = rng.choice(products)
    variant = rng.choice(product.variants)
    count = rng.choices((1, 2, 3), weights=(85, 12, 3))[0]
    price = max(round(variant.price_gbp * fx) - 0.01, 0.99)
    cost = round(price * (1 - rng.choices((0.0, 0.1, 0.2, 0.3), weights=(70, 12, 12, 6))[0]), 2)
    reason = _FAULTY_REASON if kind == "Warranty" else rng.choices(_REASONS, _REASON_WEIGHTS)[0]
    sub_reason = (
        rng.choice(reason.sub_reasons) if reason.sub_reasons and rng.random() < 0.6 else None
    )
    # Most refunds are in full; some lose a restocking fee, failed QC loses half.
    deduction = 0.0 if passes and rng.random() < 0.8 else (0.1 if passes else 0.5)
    refund_amount = round(cost * count * (1 - deduction), 2)
    duty = round(refund_amount * 0.04, 2) if abroad and rng.random() < 0.3 else 0.0
    return _Line(
        kind=kind,
        passes_qc=passes,
        variant=variant,
        exchange_variant=rng.choice(product.variants),
        count=count,
        price=price,
        cost=cost,
        reason=reason,
        sub_reason=sub_reason,
        refund_amount=refund_amount,
        duty=duty,
        duty_missing=rng.random() < 0.05,
        restock=count if count == 1 or rng.random() < 0.7 else count - 1,
        intake_if_failed=rng.choice(_INTAKE_FAILED),
        comments=rng.choice(_COMMENTS),
    )


@dataclass
class _Totals:
    """The return-level money, summed from its lines as far as the return has got."""

    total: float = 0.0
    refund_quoted: float = 0.0
    refunded: float = 0.0
    refunds_issued: bool = False
    credit: float = 0.0
    exchange: float = 0.0
    taxes: float = 0.0
    duties: float = 0.0
    exchange_items: list[dict[str, Any]] = field(default_factory=list)


class ReturnRenderer:
    """Turns a skeleton and its progress into the API's JSON object."""

    def __init__(
        self,
        *,
        seed: int,
        store_id: str,
        customer: Callable[[int], Customer],
        malformed_every: int | None = None,
    ) -> None:
        self.seed = seed
        self.store_id = store_id
        self.customer = customer
        self.malformed_every = malformed_every
        # The middle of an ObjectId-like id: fixed per seed, as a Mongo process id is per process.
        self._id_middle = random.Random(seed).getrandbits(40)

    def return_id(self, skeleton: Skeleton) -> str:
        """An ObjectId-shaped id: submission second, a per-seed constant, then the index.

        Sorting ids as strings thus sorts by submission then index, and the index can be read
        back from the id without a lookup table.
        """
        return f"{skeleton.submitted_ms // SECOND_MS:08x}{self._id_middle:010x}{skeleton.index:06x}"

    @staticmethod
    def index_in(return_id: str) -> int:
        """The index an id was made from (the caller checks the id really is that return's).

        Raises:
            ValueError: not an id of this emulator's shape.
        """
        if len(return_id) != 24:
            msg = "not a return id"
            raise ValueError(msg)
        return int(return_id[-6:], 16)

    @staticmethod
    def rma_number(index: int) -> str:
        return f"SW-{1001 + index}"

    def render(
        self, skeleton: Skeleton, stage: Stage, times: Mapping[Stage, int], updated_ms: int
    ) -> dict[str, Any]:
        """The return as the API shows it at ``stage``; ``times`` holds each reached step's time."""
        index = skeleton.index
        rng = random.Random((self.seed << 28) | (index << 4) | DETAIL_STREAM)
        customer = self.customer(skeleton.customer)
        currency = customer.currency
        country = customer.address["country_code"]
        fx = _FX[currency]
        products = catalog()
        lines = [
            _draw_line(rng, products, kind, passes=passes, fx=fx, abroad=country != "GB")
            for kind, passes in zip(skeleton.line_types, skeleton.line_passes_qc, strict=True)
        ]
        additional_payment = (
            round(rng.uniform(3, 30) * fx, 2)
            if "Exchange" in skeleton.line_types and rng.random() < 0.35
            else 0.0
        )
        handling_fee = rng.choice((0.0, 0.0, 0.0, round(2.95 * fx, 2), round(3.95 * fx, 2)))
        null_money = rng.sample(_NULLABLE_MONEY, rng.randint(1, 3)) if rng.random() < 0.06 else []
        shopify_return_id = None if rng.random() < 0.15 else str(9_900_000_000 + index)
        intention_ms = skeleton.submitted_ms - int(rng.uniform(2, 40) * 60_000)
        processed_by = rng.choice(_PROCESSORS)

        return_id = self.return_id(skeleton)
        totals = _Totals()
        items = self._items(skeleton, lines, times, currency, totals)
        shipments = self._shipments(rng, items, country, return_id)
        kinds = set(skeleton.line_types) | ({"Additional Payment"} if additional_payment else set())
        types = [kind for kind in RETURN_TYPES if kind in kinds]
        closed_ms = next(
            (times[s] for s in (Stage.CLOSED, Stage.CANCELLED, Stage.EXPIRED) if s in times), None
        )
        processed = stage in (Stage.REFUNDED, Stage.CLOSED)
        delivered_ms = times.get(Stage.DELIVERED)
        record: dict[str, Any] = {
            "return_id": return_id,
            "rma_number": self.rma_number(index),
            "shopify_return_id": shopify_return_id,
            "shopify_order_name": f"#{skeleton.order_number}",
            "order_id": str(5_590_000_000_000 + skeleton.order_number * 7),
            "date_created": to_iso(skeleton.submitted_ms),
            "date_updated": to_iso(updated_ms),
            "submission_date": to_iso(skeleton.submitted_ms),
            "intention_date": to_iso(intention_ms),
            "delivered_date": to_iso(delivered_ms) if delivered_ms is not None else None,
            "date_closed": to_iso(closed_ms) if closed_ms is not None else None,
            "type": types,
            "type_string": ", ".join(types),
            "return_status": return_status(
                stage, flagged=skeleton.flagged, passes_qc=skeleton.passes_qc
            ),
            "delivery_status": delivery_status(stage),
            "rma_processed": processed,
            "processed_by": processed_by if processed else None,
            "quality_control_status": _quality(skeleton, inspected=Stage.INSPECTED in times),
            "customer_email": customer.email_as_typed(skeleton.email_variant),
            "customer_name": customer.name,
            "customer_currency": currency,
            "total": round(totals.total, 2),
            "handling_fee": handling_fee,
            "total_refund_value_customer_currency": round(
                totals.refunded
                if totals.refunds_issued
                else max(totals.refund_quoted - handling_fee, 0.0),
                2,
            ),
            "total_store_credit_value_customer_currency": round(totals.credit, 2),
            "total_credit_exchange_value": round(totals.exchange, 2),
            "total_additional_payment": additional_payment,
            "total_refunded_taxes": round(totals.taxes, 2),
            "total_refunded_duties": round(totals.duties, 2),
            "shipping_carrier": _CARRIERS[shipments[0]["carrier_id"]][0],
            "tracking_number": shipments[0]["tracking_number"],
            "return_shipments": shipments,
            "exchange_items": totals.exchange_items,
            # Copies: the customer is cached and callers may change what they are given.
            "billing_address": dict(customer.other_billing_address or customer.address),
            "shipping_address": dict(customer.address),
            "portal_quick_link": f"https://returns.swap-os.com/{self.store_id}/r/{return_id}",
        }
        for name in null_money:
            record[name] = None
        if self.malformed_every and (index + 1) % self.malformed_every == 0:
            _break_types(record)
        return record

    @staticmethod
    def _items(
        skeleton: Skeleton,
        lines: list[_Line],
        times: Mapping[Stage, int],
        currency: str,
        totals: _Totals,
    ) -> list[dict[str, Any]]:
        """The lines as the API shows them now, adding their money to ``totals``."""
        tax_rate = _TAX_RATE[currency]
        inspected_at = times.get(Stage.INSPECTED)
        # Returns that refund in two goes refund the first half of their refund lines first.
        refund_positions = [k for k, line in enumerate(lines) if line.kind == "Refund"]
        early = set(refund_positions[: len(refund_positions) // 2])
        if Stage.REFUNDED_PARTLY not in skeleton.path:
            early.clear()
        items = []
        for position, line in enumerate(lines):
            totals.total += line.value
            refund_time = None
            if line.kind == "Refund":
                totals.refund_quoted += line.value
                refund_time = times.get(
                    Stage.REFUNDED_PARTLY if position in early else Stage.REFUNDED
                )
            elif line.kind in ("Shop Now Credit", "Shop Later Credit"):
                totals.credit += line.value
            elif line.kind == "Exchange":
                totals.exchange += line.value
                totals.exchange_items.append(_exchange_item(line))
            taxes = None
            if refund_time is not None:
                taxes = round(line.refund_amount * tax_rate / (1 + tax_rate), 2)
                totals.refunds_issued = True
                totals.refunded += line.refund_amount
                totals.taxes += taxes
                totals.duties += line.duty
            restocked = (
                inspected_at is not None
                and line.passes_qc
                and line.kind not in ("Recycle", "Warranty")
            )
            items.append(
                {
                    "shopify_line_item_id": str(13_900_000_000_000 + skeleton.index * 8 + position),
                    "shopify_variant_id": line.variant.variant_id,
                    "sku": line.variant.sku,
                    "barcode": line.variant.barcode,
                    "product_name": line.variant.product_name,
                    "variant_name": line.variant.variant_name,
                    "main_reason_id": line.reason.id,
                    "main_reason_text": line.reason.text,
                    "sub_reason_id": line.sub_reason[0] if line.sub_reason else None,
                    "sub_reason_text": line.sub_reason[1] if line.sub_reason else None,
                    "comments": line.comments,
                    "item_count": line.count,
                    "cost": line.cost,
                    "currency": currency,
                    "return_type": line.kind,
                    "is_faulty": line.reason.faulty,
                    "intake_reason": (
                        None
                        if inspected_at is None
                        else "As described"
                        if line.passes_qc
                        else line.intake_if_failed
                    ),
                    "refunded_taxes": taxes,
                    "refunded_duties": (
                        None if refund_time is None or line.duty_missing else line.duty
                    ),
                    "refund_amount": line.refund_amount if refund_time is not None else None,
                    "refunded_at": to_iso(refund_time) if refund_time is not None else None,
                    "qc_status": (
                        "pending"
                        if inspected_at is None
                        else "passed"
                        if line.passes_qc
                        else "failed"
                    ),
                    "restock_quantity": line.restock if restocked else 0,
                    "restocked_at": (
                        to_iso(inspected_at) if restocked and inspected_at is not None else None
                    ),
                }
            )
        return items

    @staticmethod
    def _shipments(
        rng: random.Random, items: list[dict[str, Any]], country: str, return_id: str
    ) -> list[dict[str, Any]]:
        """One parcel, or (for some multi-item returns) items split across two or three."""
        parcels = 1
        if len(items) >= 2 and rng.random() < 0.4:
            parcels = 3 if len(items) >= 4 and rng.random() < 0.5 else 2
        carriers = _CARRIERS_BY_COUNTRY.get(country, _CARRIERS_ELSEWHERE)
        location = _LOCATIONS.get(country, _EU_LOCATION)
        label_type = rng.choice(_LABEL_TYPES)
        shipments = []
        for parcel in range(parcels):
            carrier_id = rng.choice(carriers)
            _, number_format, url_format = _CARRIERS[carrier_id]
            tracking = number_format.format(rng.randrange(10**9))
            shipments.append(
                {
                    "shipment_id": f"shp_{return_id[-12:]}{parcel}",
                    "location_id": location,
                    "carrier_id": carrier_id,
                    "tracking_number": tracking,
                    "tracking_url": url_format.format(tracking),
                    "label_type": label_type,
                    "using_split_shipment": parcels > 1,
                    "items": items[parcel::parcels],
                }
            )
        return shipments


def _quality(skeleton: Skeleton, *, inspected: bool) -> str:
    if not inspected:
        return "pending"
    if skeleton.passes_qc:
        return "passed"
    return "partial" if any(skeleton.line_passes_qc) else "failed"


def _exchange_item(line: _Line) -> dict[str, Any]:
    new = line.exchange_variant
    return {
        "sku": new.sku,
        "item_count": line.count,
        "product_name": new.product_name,
        "variant_name": new.variant_name,
        "shopify_variant_id": new.variant_id,
        "price": line.price,
        "replaces_sku": line.variant.sku,
    }


def _break_types(record: dict[str, Any]) -> None:
    """Violate the contract's types the way a buggy upstream would (``malformed_every``)."""
    if isinstance(record["total"], float):
        record["total"] = f"{record['total']:.2f}".replace(".", ",")
    item = record["return_shipments"][0]["items"][0]
    item["item_count"] = _NUMBER_WORDS[min(item["item_count"], len(_NUMBER_WORDS) - 1)]
