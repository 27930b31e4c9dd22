"""Restocks: each ``inventory_delta`` applied to its catalog variant exactly once per restock key.

Klaviyo's catalog takes only an absolute ``inventory_quantity``, so a delta is a read-modify-
write, and the update job is asynchronous. Each restock is written to the ledger as ``pending``
(with the quantity read and the quantity to write) before its job is sent, and as ``applied``
once the job completes. After a crash, a pending restock is resolved from its job's outcome or by
comparing the variant's quantity with the two recorded ones; when neither tells, it is set aside
as ``restock_uncertain`` for a person to check, never applied twice.

Only ``$custom`` catalogs can be written through the API; Shopify-synced catalogs take their
inventory from Shopify, so their restocks are set aside as ``catalog_not_writable``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

from target_klaviyo.bounds import MAX_INVENTORY, MIN_INVENTORY, OUT_OF_BOUNDS, url_chunks
from target_klaviyo.client import KlaviyoClient, KlaviyoUnavailable, error_entries
from target_klaviyo.ledger import (
    ACCEPTED,
    DEDUPLICATED,
    INVALID_RECORD,
    REJECTED,
    Outcome,
    as_utc,
    chunked,
)
from target_klaviyo.recording import Record

STREAM = "klaviyo_catalog_variants"
WRITABLE_PREFIX = "$custom:::"
#: Restock rows in these states stop the same key from being applied again.
BLOCKING = ("applied", "pending", "uncertain")


def restock_outcome(
    record: Mapping[str, Any], outcome: str, reason: str | None = None, detail: str | None = None
) -> Outcome:
    time_value = record.get("time")
    return Outcome(
        stream=STREAM,
        record_key=str(record.get("restock_key")),
        outcome=outcome,
        reason=reason,
        detail=detail,
        metric=None,
        source_id=record.get("source_id"),
        source_time=as_utc(record.get("source_updated_at")),
        event_time=as_utc(time_value),
        payload=record,
    )


class RestockLedger(Protocol):
    """What restocks read and write of the ledger: each restock key's state."""

    def restocks(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    def pending_restocks(self) -> list[dict[str, Any]]: ...

    def save_restocks(self, rows: Iterable[Mapping[str, Any]]) -> None: ...

    def forget_restocks(self, keys: Sequence[str]) -> None: ...


class RestockApplier:
    """Applies batches of restock records to Klaviyo's catalog.

    Built with what it uses (the client, the ledger's restock part, where outcomes go, three
    settings), not with the run: a replay builds it the same way.
    """

    def __init__(
        self,
        *,
        client: KlaviyoClient,
        ledger: RestockLedger,
        record: Record,
        variants_per_job: int,
        job_timeout_seconds: float,
        job_poll_seconds: float,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.record = record
        self.variants_per_job = variants_per_job
        self.job_timeout_seconds = job_timeout_seconds
        self.job_poll_seconds = job_poll_seconds
        self._recovered = False

    def send(self, records: list[dict[str, Any]]) -> None:
        if not self._recovered:
            self.recover()
            self._recovered = True
        todo = self._screen(records)
        if not todo:
            return
        by_variant: dict[str, list[dict[str, Any]]] = {}
        for record in todo:
            by_variant.setdefault(record["variant_id"], []).append(record)
        by_variant = self._lookupable(by_variant)
        current = self._read(list(by_variant))
        by_variant = self._within_inventory(by_variant, current)
        missing = [v for v in by_variant if v not in current]
        self.record(
            [
                restock_outcome(
                    r, REJECTED, "variant_not_found", f"No catalog variant {v} in Klaviyo"
                )
                for v in missing
                for r in by_variant[v]
            ]
        )
        found = [v for v in by_variant if v in current]
        for chunk in chunked(found, self.variants_per_job):
            self._apply(chunk, by_variant, current)

    # -- screening -----------------------------------------------------------------------------

    def _screen(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        outcomes: list[Outcome] = []
        known = self.ledger.restocks([r["restock_key"] for r in records])
        seen: set[str] = set()
        todo = []
        for record in records:
            key = record["restock_key"]
            row = known.get(key)
            if key in seen or (row is not None and row["status"] == "applied"):
                outcomes.append(restock_outcome(record, DEDUPLICATED, "applied_earlier"))
            elif row is not None and row["status"] in BLOCKING:
                detail = "An earlier run may have applied it; check the variant's inventory"
                outcomes.append(restock_outcome(record, REJECTED, "restock_uncertain", detail))
            elif not str(record["variant_id"]).startswith(WRITABLE_PREFIX):
                detail = (
                    "Only $custom catalogs can be written through Klaviyo's API; "
                    "this variant's inventory comes from its source platform"
                )
                outcomes.append(restock_outcome(record, REJECTED, "catalog_not_writable", detail))
            else:
                todo.append(record)
            seen.add(key)
        self.record(outcomes)
        return todo

    def _within_inventory(
        self, by_variant: dict[str, list[dict[str, Any]]], current: Mapping[str, Decimal]
    ) -> dict[str, list[dict[str, Any]]]:
        """The restocks whose result keeps inventory in bounds; the others set aside.

        A restock may lower inventory (a correction), but never below zero nor past a 32-bit
        integer: Klaviyo would store a wrapped or negative count. Set aside, not clamped, so
        that a person sees the source's count disagree with Klaviyo's.
        """
        kept: dict[str, list[dict[str, Any]]] = {}
        outcomes: list[Outcome] = []
        for variant, records in by_variant.items():
            if variant not in current:
                kept[variant] = records
                continue
            quantity = current[variant]
            for record in records:
                after = quantity + int(record["inventory_delta"])
                if MIN_INVENTORY <= after <= MAX_INVENTORY:
                    quantity = after
                    kept.setdefault(variant, []).append(record)
                    continue
                detail = (
                    f"inventory_delta: would leave the variant's inventory at {after}, outside "
                    f"{MIN_INVENTORY}..{MAX_INVENTORY} (Klaviyo holds {current[variant]})"
                )
                outcomes.append(restock_outcome(record, INVALID_RECORD, OUT_OF_BOUNDS, detail))
        self.record(outcomes)
        return kept

    def _read(self, variant_ids: list[str]) -> dict[str, Decimal]:
        """Current ``inventory_quantity`` of each variant that exists.

        Ids go into the URL's filter, split so that no URL is too long (see :meth:`_lookupable`
        for an id too long for any URL: it is left unread here).
        """
        quantities: dict[str, Decimal] = {}
        chunks, _ = url_chunks(variant_ids, size=100)
        for chunk in chunks:
            ids = ",".join(json.dumps(v) for v in chunk)
            params = {
                "filter": f"any(ids,[{ids}])",
                "page[size]": "100",
                "fields[catalog-variant]": "inventory_quantity",
            }
            for page in self.client.pages("catalog_variants", params, what="read catalog variants"):
                for variant in page.get("data") or []:
                    quantity = (variant.get("attributes") or {}).get("inventory_quantity")
                    quantities[variant["id"]] = Decimal(str(quantity or 0))
        return quantities

    def _lookupable(
        self, by_variant: dict[str, list[dict[str, Any]]]
    ) -> dict[str, list[dict[str, Any]]]:
        """The variants whose id fits in a lookup URL; the others' restocks set aside.

        The contract bounds ids to 255 characters, which always fit: this keeps a run going
        whatever a caller (a replay, a future contract) hands in.
        """
        _, too_long = url_chunks(list(by_variant), size=1)
        detail = "variant_id: too long to be looked up in Klaviyo's catalog (URL length)"
        self.record(
            [
                restock_outcome(r, INVALID_RECORD, OUT_OF_BOUNDS, detail)
                for v in too_long
                for r in by_variant[v]
            ]
        )
        refused = set(too_long)
        return {v: records for v, records in by_variant.items() if v not in refused}

    # -- applying ------------------------------------------------------------------------------

    def _apply(
        self,
        variants: list[str],
        by_variant: Mapping[str, list[dict[str, Any]]],
        current: Mapping[str, Decimal],
    ) -> None:
        targets = {
            v: current[v] + sum(int(r["inventory_delta"]) for r in by_variant[v]) for v in variants
        }
        rows = [
            {
                "restock_key": r["restock_key"],
                "variant_id": v,
                "inventory_delta": int(r["inventory_delta"]),
                "status": "pending",
                "base_quantity": current[v],
                "target_quantity": targets[v],
                "job_id": None,
            }
            for v in variants
            for r in by_variant[v]
        ]
        self.ledger.save_restocks(rows)
        body = {
            "data": {
                "type": "catalog-variant-bulk-update-job",
                "attributes": {
                    "variants": {
                        "data": [
                            {
                                "type": "catalog-variant",
                                "id": v,
                                "attributes": {"inventory_quantity": targets[v]},
                            }
                            for v in variants
                        ]
                    }
                },
            }
        }
        response = self.client.request("catalog_update", body=body)
        if self.client.dry_run:
            self._settle(variants, by_variant, {}, rows)
            return
        if response.status_code not in (200, 201, 202):
            # Nothing was applied: clear the pending rows and set the restocks aside.
            error = error_entries(response)[0]
            failed = dict.fromkeys(range(len(variants)), error)
            self._settle(variants, by_variant, failed, rows)
            return
        job_id = str(response.json()["data"]["id"])
        self.ledger.save_restocks([{**row, "job_id": job_id} for row in rows])
        job = self._wait(job_id)
        if job is None:
            msg = f"Klaviyo lost catalog update job {job_id}; its restocks stay pending"
            raise KlaviyoUnavailable(msg)
        self._settle(variants, by_variant, _job_errors(job, len(variants)), rows)

    def _settle(
        self,
        variants: list[str],
        by_variant: Mapping[str, list[dict[str, Any]]],
        failed: Mapping[int, Mapping[str, Any]],
        rows: list[dict[str, Any]],
    ) -> None:
        outcomes: list[Outcome] = []
        failed_variants = {variants[i]: error for i, error in failed.items()}
        settled = []
        for row in rows:
            error = failed_variants.get(row["variant_id"])
            settled.append({**row, "status": "failed" if error else "applied"})
        for variant in variants:
            error = failed_variants.get(variant)
            for record in by_variant[variant]:
                if error is None:
                    outcomes.append(restock_outcome(record, ACCEPTED))
                else:
                    code = str(error.get("code") or "rejected")
                    reason = "variant_not_found" if code == "not_found" else code
                    outcomes.append(
                        restock_outcome(record, REJECTED, reason, str(error.get("detail") or ""))
                    )
        self.ledger.save_restocks(settled)
        self.record(outcomes)

    def _wait(self, job_id: str) -> dict[str, Any] | None:
        return self.client.wait_for_job(
            "catalog_update_job",
            job_id,
            timeout=self.job_timeout_seconds,
            first_pause=self.job_poll_seconds,
        )

    # -- after a crash -------------------------------------------------------------------------

    def recover(self) -> None:
        """Settle restocks an interrupted run left pending, without applying any twice."""
        pending = self.ledger.pending_restocks()
        if not pending:
            return
        quantities = self._read(sorted({row["variant_id"] for row in pending}))
        resolved = []
        for row in pending:
            status = self._resolve(row, quantities.get(row["variant_id"]))
            resolved.append({**row, "status": status})
        # A restock found not applied is forgotten, so that its record (the bookmark did not
        # move past it) is applied normally when it comes again.
        self.ledger.save_restocks([r for r in resolved if r["status"] != "not_applied"])
        self.ledger.forget_restocks(
            [r["restock_key"] for r in resolved if r["status"] == "not_applied"]
        )

    def _resolve(self, row: Mapping[str, Any], quantity: Decimal | None) -> str:
        """Applied, not applied, or uncertain, from the variant's quantity after the job."""
        if row.get("job_id"):
            self._wait(str(row["job_id"]))  # let a job still running finish before reading
            quantity = self._read([row["variant_id"]]).get(row["variant_id"])
        if quantity is None:
            return "not_applied"
        if quantity == Decimal(str(row["target_quantity"])):
            return "applied"
        if quantity == Decimal(str(row["base_quantity"])):
            return "not_applied"
        return "uncertain"


def _job_errors(job: Mapping[str, Any], count: int) -> dict[int, Mapping[str, Any]]:
    """Errors of a finished job, by the index of the variant they concern."""
    attributes = job.get("attributes") or {}
    if attributes.get("status") == "cancelled":
        cancelled = {"code": "job_cancelled", "detail": "Klaviyo cancelled the job"}
        return dict.fromkeys(range(count), cancelled)
    failed: dict[int, Mapping[str, Any]] = {}
    for error in attributes.get("errors") or []:
        parts = ((error.get("source") or {}).get("pointer") or "").strip("/").split("/")
        # /data/attributes/variants/data/<i>[/...]
        names_variant = parts[:4] == ["data", "attributes", "variants", "data"]
        if names_variant and len(parts) >= 5 and parts[4].isdigit():
            failed[int(parts[4])] = error
    return failed
