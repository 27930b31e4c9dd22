"""Swap streams: ``returns`` from the API, and the lines, refunds and restocks derived from it.

Swap publishes no refund or restock endpoint: a return carries its refunded and restocked lines,
and its ``date_updated`` moves whenever they change. So the child streams are cut from the
parent's payload, with no extra request and no per-return state. They are synced once per page
of returns (not once per return, which costs a SCHEMA and a STATE message per return each), and
keep one bookmark each, on their return's ``date_updated``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta
from decimal import Decimal
from importlib import resources
from typing import Any, ClassVar

import requests
from singer_sdk.exceptions import FatalAPIError
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.types import Context, Record
from singer_sdk.schema.source import SchemaDirectory, StreamSchema
from singer_sdk.streams import Stream

from tap_swapcommerce.client import SwapStream
from tap_swapcommerce.pages import PageError, SetAside, fingerprint, has_next_page, read_page
from tap_swapcommerce.pagination import KeysetPaginator, PageToken, parse_timestamp
from tap_swapcommerce.quarantine import IntegrationExceptionsStream
from tap_swapcommerce.validation import KeyProblem, RecordValidator

#: Each stream's JSON Schema is ``schemas/<stream name>.json``.
SCHEMAS = SchemaDirectory(resources.files("tap_swapcommerce") / "schemas")

#: Swap's own format for ``last_RMA_updated_date``.
SWAP_TIMESTAMP = "%Y-%m-%dT%H:%M:%S.%f"


class ReturnsStream(SwapStream):
    """Every return updated since the bookmark, oldest update first."""

    name = "returns"
    path = "/v2/external/returns"
    primary_keys: ClassVar[list[str]] = ["return_id"]
    replication_key = "date_updated"
    is_sorted = False  # the lookback re-reads rows older than the bookmark
    records_jsonpath = "$.returns[*]"
    schema = StreamSchema(SCHEMAS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._paginator: KeysetPaginator | None = None
        self._validator = RecordValidator(self.schema, self.name, self.logger)
        self._page_number = 0
        self._flush_after: object | None = None
        self.quarantine: IntegrationExceptionsStream | None = None
        self.repaired: dict[str, int] = {}

    # -- requests ----------------------------------------------------------------------------

    def get_new_paginator(self) -> KeysetPaginator:
        self._paginator = KeysetPaginator(self._start_since())
        return self._paginator

    def get_url_params(self, context: Context | None, next_page_token: Any) -> dict[str, Any]:
        token: PageToken = next_page_token
        params: dict[str, Any] = {
            "swap_store_id": self.config["store_id"],
            "items_per_page": self.config["page_size"],
            "page": token.page,
        }
        if token.since is not None:
            params["last_RMA_updated_date"] = token.since
        return params

    def _start_since(self) -> str | None:
        """Where this sync starts: the selected streams' oldest bookmark, less the lookback.

        A child stream with a bookmark was read from the same pages as this stream, so this
        stream's bookmark stands for it; a child without one (newly selected) is read from the
        start, and when only children are selected their own bookmarks decide.
        """
        starts = []
        for stream in (self, *self.child_streams):
            if not stream.selected:
                continue
            bookmark = stream.stream_state.get("replication_key_value")
            if bookmark and stream is not self and self.selected:
                continue
            start = bookmark or self.config.get("start_date")
            if not start:
                return None
            starts.append(parse_timestamp(str(start)))
        if not starts:
            return None
        since = min(starts) - timedelta(minutes=int(self.config["lookback_minutes"]))
        return since.strftime(SWAP_TIMESTAMP)[:-3] + "Z"

    # -- responses ---------------------------------------------------------------------------

    def parse_response(self, response: requests.Response) -> Iterable[Record]:
        assert self._paginator is not None
        try:
            page = read_page(response.content, "returns")
            more = has_next_page(page.body)
        except PageError as exc:
            raise UnreadablePageError(self._where(), exc) from None
        for name, count in page.repaired.items():
            self.repaired[name] = self.repaired.get(name, 0) + count
        rows = []
        for row in page.rows:
            problem = self._validator.key_problem(row)
            if problem is None:
                rows.append(row)
            else:
                page.set_aside.append(unkeyed(row, problem))
        for aside in page.set_aside:
            self._set_aside(aside)
        fresh = self._paginator.accept(
            rows,
            has_next_page=more,
            last_updated=page.last_updated,
            items=page.items,
        )
        self._page_number += 1
        self._flush_after = self._last_kept(fresh)
        return fresh

    def _where(self) -> str:
        """The request of the page being read: its path and paging parameters, no key or store."""
        assert self._paginator is not None
        token = self._paginator.current_value
        since = f"last_RMA_updated_date={token.since}&" if token.since is not None else ""
        return f"GET {self.path}?{since}page={token.page}"

    def _set_aside(self, aside: SetAside) -> None:
        """Emitted before any record of its page, so no STATE passes it before it is recorded."""
        if self.quarantine is None:
            msg = "the returns stream needs the integration_exceptions stream to set records aside"
            raise RuntimeError(msg)
        self.quarantine.set_aside(self.name, aside)

    def log_repairs(self) -> None:
        """Say what was repaired in this run: counts per field, never a value."""
        if self.repaired:
            total = sum(self.repaired.values())
            fields = ", ".join(f"{name} ({count})" for name, count in sorted(self.repaired.items()))
            self.logger.warning(
                "Repaired %d lone surrogate(s) to U+FFFD in free text: %s", total, fields
            )

    def _last_kept(self, rows: list[Record]) -> object | None:
        """The last row of the page that stream maps keep: the child streams flush after it."""
        primary_map = self.stream_maps[0]
        for row in reversed(rows):
            if primary_map.get_filter_result(row):
                return row
        return None

    def post_process(self, row: Record, context: Context | None = None) -> Record | None:
        self._validator.report(row)
        return row

    # -- derived streams ---------------------------------------------------------------------

    def generate_child_contexts(
        self, record: Record, context: Context | None
    ) -> Iterable[Context | None]:
        children = [c for c in self.child_streams if isinstance(c, DerivedStream) and c.wanted]
        if not children:
            return
        for child in children:
            child.collect(record)
        if record is self._flush_after:
            yield {"returns_page": self._page_number}

    def finalize_state_progress_markers(self, state: dict | None = None) -> None:
        """Make sure the final STATE carries the child streams' finalized bookmarks.

        The SDK finalizes the children here but writes STATE only if this stream's own state
        changed since its last message; without one more message the children's bookmarks would
        stay progress markers, and the next run would read everything again.
        """
        super().finalize_state_progress_markers(state)
        self.log_repairs()
        if any(child.selected for child in self.child_streams):
            self.state_manager.is_flushed = False
            self._write_state_message()


class UnreadablePageError(FatalAPIError):
    """Swap's page cannot be paged past: the run stops here, before any record of that page.

    A return that cannot be read is set aside and the page goes on, but without a readable
    ``pagination`` block the tap cannot know whether, or where, a next page starts: guessing
    could end the sync early or page for ever. Stopping leaves the bookmark at the last page
    delivered, so the next run reads this page again once Swap answers it properly.
    """

    def __init__(self, where: str, error: PageError) -> None:
        super().__init__(f"Swap sent a page the tap cannot page past ({where}): {error}")
        self.field = error.field


class DerivedStream(Stream):
    """A stream cut from each return's payload. Subclasses say how in :meth:`derive`."""

    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE  # built here from JSON values
    parent_stream_type = ReturnsStream
    state_partitioning_keys: ClassVar[list[str]] = []  # one bookmark, not one per return
    replication_key = "return_updated_at"
    is_sorted = False
    schema = StreamSchema(SCHEMAS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: list[Record] = []

    @property
    def wanted(self) -> bool:
        return bool(self.selected or self.has_selected_descendents)

    def collect(self, parent: Record) -> None:
        try:
            self._pending.extend(self.derive(parent, parent_fields(parent)))
        except (TypeError, ValueError, ArithmeticError, AttributeError) as exc:
            # The parent's schema report names the bad field; this says what was not derived.
            self.logger.warning(
                "Return %s: could not derive %s records (%s)",
                parent.get("return_id"),
                self.name,
                type(exc).__name__,
            )

    def get_records(self, context: Context | None) -> Iterator[Record]:
        pending, self._pending = self._pending, []
        yield from pending

    def derive(self, parent: Record, fields: dict[str, Any]) -> Iterable[Record]:
        raise NotImplementedError


def unkeyed(row: Any, problem: KeyProblem) -> SetAside:
    """A row the sync cannot key or bookmark (no ``return_id``, no valid ``date_updated``)."""
    return_id = row.get("return_id") if isinstance(row, dict) else None
    updated = row.get("date_updated") if isinstance(row, dict) else None
    return SetAside(
        source_key=return_id if isinstance(return_id, str) and return_id else None,
        updated_at=updated if isinstance(updated, str) else None,
        field=problem.field,
        problem=problem.what,
        fingerprint=fingerprint(row),
    )


def parent_fields(parent: Record) -> dict[str, Any]:
    """What every child record repeats from its return, so it stands alone in a warehouse."""
    return {
        "return_id": parent["return_id"],
        "rma_number": parent.get("rma_number"),
        "order_id": parent.get("order_id"),
        "shopify_order_name": parent.get("shopify_order_name"),
        "customer_email": parent.get("customer_email"),
        "return_updated_at": parent["date_updated"],
    }


def lines(parent: Record) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Each returned line with its shipment id, across all of the return's shipments."""
    for shipment in parent.get("return_shipments") or []:
        for item in shipment.get("items") or []:
            yield shipment.get("shipment_id"), item


def line_key(parent: Record, shipment_id: Any, item: dict[str, Any], *suffix: Any) -> str:
    parts = [parent["return_id"], shipment_id, item.get("shopify_line_item_id"), *suffix]
    return ":".join("" if part is None else str(part) for part in parts)


class ReturnItemsStream(DerivedStream):
    """One record per returned line, with its return's ids, customer email and status."""

    name = "return_items"
    primary_keys: ClassVar[list[str]] = ["return_item_id"]

    def derive(self, parent: Record, fields: dict[str, Any]) -> Iterable[Record]:
        for shipment_id, item in lines(parent):
            yield {
                **item,
                **fields,
                "return_item_id": line_key(parent, shipment_id, item),
                "return_status": parent.get("return_status"),
                "delivery_status": parent.get("delivery_status"),
                "shipment_id": shipment_id,
            }


class RefundsStream(DerivedStream):
    """One record per refunded line: what was refunded, when, and whether only in part."""

    name = "refunds"
    primary_keys: ClassVar[list[str]] = ["refund_line_id"]

    def derive(self, parent: Record, fields: dict[str, Any]) -> Iterable[Record]:
        for shipment_id, item in lines(parent):
            amount = item.get("refund_amount")
            if amount is None:
                continue
            line_total = _line_total(item)
            yield {
                **fields,
                "refund_line_id": line_key(parent, shipment_id, item, item.get("refunded_at")),
                "shopify_line_item_id": item.get("shopify_line_item_id"),
                "sku": item.get("sku"),
                "quantity": item.get("item_count"),
                "amount": amount,
                "currency": item.get("currency") or parent.get("customer_currency"),
                "line_total": line_total,
                "refunded_at": item.get("refunded_at"),
                "is_partial": None if line_total is None else Decimal(str(amount)) < line_total,
            }


class RestocksStream(DerivedStream):
    """One record per line put back into sellable stock (``restock_quantity`` > 0)."""

    name = "restocks"
    primary_keys: ClassVar[list[str]] = ["restock_id"]

    def derive(self, parent: Record, fields: dict[str, Any]) -> Iterable[Record]:
        for shipment_id, item in lines(parent):
            quantity = item.get("restock_quantity")
            if not isinstance(quantity, int) or quantity <= 0:
                continue
            yield {
                **fields,
                "restock_id": line_key(parent, shipment_id, item, item.get("restocked_at")),
                "shopify_line_item_id": item.get("shopify_line_item_id"),
                "sku": item.get("sku"),
                "shopify_variant_id": item.get("shopify_variant_id"),
                "product_name": item.get("product_name"),
                "variant_name": item.get("variant_name"),
                "quantity": quantity,
                "restocked_at": item.get("restocked_at"),
            }


def _line_total(item: dict[str, Any]) -> Decimal | None:
    cost, count = item.get("cost"), item.get("item_count")
    if not isinstance(cost, (int, float, Decimal)) or not isinstance(count, int):
        return None
    return Decimal(str(cost)) * count
