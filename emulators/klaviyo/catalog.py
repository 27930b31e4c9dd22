"""Catalog variants and their bulk update jobs.

Updates are asynchronous and ``inventory_quantity`` is absolute, so a client applying a delta
must read, add, and write only after its previous job for that variant completed. Variants of
Shopify-synced catalogs (``$shopify:::...``) cannot be written through the API: a job error.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from openapi_client.models.catalog_variant_update_job_create_query import (
    CatalogVariantUpdateJobCreateQuery,
)

from emulators.klaviyo import filters, payload
from emulators.klaviyo.jsonapi import ApiError, iso, only
from emulators.klaviyo.limits import MAX_VARIANTS_PER_JOB

VARIANTS = "/data/attributes/variants/data"
JOB_TYPE = "catalog-variant-bulk-update-job"
EXPIRY_SECONDS = 7 * 86_400
READ_ONLY_PREFIX = "$shopify:::"
WRITABLE_FIELDS = (
    "title",
    "description",
    "sku",
    "inventory_policy",
    "inventory_quantity",
    "price",
    "url",
    "image_full_url",
    "image_thumbnail_url",
    "images",
    "custom_metadata",
    "published",
)
# get_catalog_variants.json's filter allow-list.
VARIANT_FILTERS: dict[str, set[str]] = {
    "ids": {"any"},
    "item.id": {"equals"},
    "sku": {"equals"},
    "title": {"contains"},
    "published": {"equals"},
}


@dataclass
class Variant:
    """A catalog variant: its id, external id (the SKU) and writable attributes."""

    id: str
    external_id: str
    attributes: dict[str, Any]
    created: float
    updated: float

    @property
    def item_id(self) -> str:
        """Each seeded variant belongs to an item of the same external id in the same catalog."""
        return self.id

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "external_id": self.external_id,
            **self.attributes,
            "created": iso(self.created),
            "updated": iso(self.updated),
        }


@dataclass
class VariantJob:
    """A bulk update job: the updates it holds, then its outcome once it ran."""

    id: str
    created: float
    updates: list[tuple[int, str, dict[str, Any]]]
    status: str = "queued"
    completed: float | None = None
    completed_count: int = 0
    failed_count: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    variant_ids: list[str] = field(default_factory=list)


class Catalog:
    """Variants by id, in creation order. Not thread-safe: the caller locks."""

    def __init__(self) -> None:
        self.variants: dict[str, Variant] = {}

    def add(
        self,
        skus: list[str],
        inventory: float,
        now: float,
        *,
        integration: str = "$custom",
        catalog: str = "$default",
    ) -> list[Variant]:
        added = []
        for sku in skus:
            variant_id = f"{integration}:::{catalog}:::{sku}"
            variant = Variant(
                id=variant_id,
                external_id=sku,
                attributes={
                    "title": sku,
                    "description": None,
                    "sku": sku,
                    "inventory_policy": 0,
                    "inventory_quantity": inventory,
                    "price": None,
                    "url": None,
                    "image_full_url": None,
                    "image_thumbnail_url": None,
                    "images": [],
                    "custom_metadata": None,
                    "published": True,
                },
                created=now,
                updated=now,
            )
            self.variants[variant_id] = variant
            added.append(variant)
        return added

    def query(self, node: filters.Node | None, sort: str | None) -> list[Variant]:
        lookup = filters.lookup_values(node, {"ids"}) if node is not None else None
        if lookup is not None:
            found = [self.variants[v] for v in dict.fromkeys(lookup[1]) if v in self.variants]
        elif node is None:
            found = list(self.variants.values())
        else:
            found = [v for v in self.variants.values() if filters.matches(node, _values_of(v))]
        if sort:
            found.sort(key=lambda v: v.created, reverse=sort.startswith("-"))
        return found

    def resource(
        self, variant: Variant, base_url: str, fields: set[str] | None = None
    ) -> dict[str, Any]:
        attributes = {
            "external_id": variant.external_id,
            **variant.attributes,
            "created": iso(variant.created),
            "updated": iso(variant.updated),
        }
        return {
            "type": "catalog-variant",
            "id": variant.id,
            "attributes": only(attributes, fields),
            "links": {"self": f"{base_url}/api/catalog-variants/{quote(variant.id, safe='')}/"},
        }

    def run(self, job: VariantJob, now: float) -> None:
        """Apply a job. The caller holds the emulator's lock."""
        job.status = "processing"
        for position, variant_id, changes in job.updates:
            where = f"{VARIANTS}/{position}/id"
            variant = self.variants.get(variant_id)
            if variant_id.startswith(READ_ONLY_PREFIX):
                detail = (
                    f"Variant {variant_id!r} belongs to a Shopify-synced catalog and is read-only;"
                    " only $custom:::$default::: variants can be updated through the API."
                )
                job.errors.append(_job_error("invalid", "Invalid input.", detail, where))
            elif variant is None:
                detail = f"Catalog variant {variant_id!r} does not exist."
                job.errors.append(_job_error("not_found", "Not found.", detail, where))
            else:
                variant.attributes.update(changes)
                variant.updated = now
                job.variant_ids.append(variant_id)
        job.completed_count = len(job.variant_ids)
        job.failed_count = len(job.errors)
        job.status = "complete"
        job.completed = now

    def job_resource(self, job: VariantJob, base_url: str) -> dict[str, Any]:
        url = f"{base_url}/api/catalog-variant-bulk-update-jobs/{job.id}/"
        return {
            "type": JOB_TYPE,
            "id": job.id,
            "attributes": {
                "status": job.status,
                "created_at": iso(job.created, micro=True),
                "total_count": len(job.updates),
                "completed_count": job.completed_count,
                "failed_count": job.failed_count,
                "completed_at": iso(job.completed, micro=True),
                "errors": list(job.errors),
                "expires_at": iso(job.created + EXPIRY_SECONDS, micro=True),
            },
            "relationships": {
                "variants": {
                    "data": [{"type": "catalog-variant", "id": v} for v in job.variant_ids],
                    "links": {
                        "self": url + "relationships/variants/",
                        "related": url + "variants/",
                    },
                }
            },
            "links": {"self": url},
        }


def parse_job(raw: bytes, job_id: str, now: float) -> VariantJob:
    query = payload.load(CatalogVariantUpdateJobCreateQuery, raw)
    variants = query.data.attributes.variants.data
    if len(variants) > MAX_VARIANTS_PER_JOB:
        detail = f"At most {MAX_VARIANTS_PER_JOB} variants per job; this one has {len(variants)}."
        raise ApiError.invalid(detail, VARIANTS)
    updates = []
    for position, variant in enumerate(variants):
        attributes = variant.attributes
        changes = {
            name: getattr(attributes, name)
            for name in WRITABLE_FIELDS
            if getattr(attributes, name) is not None
        }
        updates.append((position, variant.id, changes))
    return VariantJob(id=job_id, created=now, updates=updates)


def _job_error(code: str, title: str, detail: str, where: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "code": code,
        "title": title,
        "detail": detail,
        "source": {"pointer": where},
    }


def _values_of(variant: Variant) -> Any:
    def value_of(name: str) -> Any:
        if name == "ids":
            return variant.id
        if name == "item.id":
            return variant.item_id
        return variant.attributes.get(name)

    return value_of
