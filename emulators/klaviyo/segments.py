"""Segments: created from a definition, found again by name.

The official ``SegmentCreateQuery`` model leaves each condition a free-form object, while the
spec allows only known condition types: the type is checked here so that a misspelt condition is
rejected as Klaviyo rejects it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openapi_client.models.segment_create_query import SegmentCreateQuery

from emulators.klaviyo import filters, payload
from emulators.klaviyo.jsonapi import ApiError, iso, only

CONDITION_TYPES = {
    "profile-group-membership",
    "profile-metric",
    "profile-marketing-consent",
    "profile-postal-code-distance",
    "profile-property",
    "profile-region",
    "profile-predictive-analytics",
    "profile-has-custom-object",
    "profile-permissions",
    "profile-metric-funnel",
}
SEGMENT_FILTERS: dict[str, set[str]] = {
    "name": {"any", "equals"},
    "id": {"any", "equals"},
    "created": {"greater-than"},
    "updated": {"greater-than"},
    "is_active": {"any", "equals"},
    "is_starred": {"equals"},
}
SEGMENT_SORTS = {"created", "id", "name", "updated"}


@dataclass
class Segment:
    """A created segment; the emulator keeps its definition but evaluates no membership."""

    id: str
    name: str
    definition: dict[str, Any]
    created: float
    updated: float
    is_starred: bool
    is_active: bool = True

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "definition": self.definition,
            "created": iso(self.created),
            "updated": iso(self.updated),
            "is_active": self.is_active,
            "is_starred": self.is_starred,
        }

    def value_of(self, name: str) -> Any:
        return getattr(self, name)


def parse(raw: bytes, segment_id: str, now: float) -> Segment:
    query = payload.load(SegmentCreateQuery, raw)
    attributes = query.data.attributes
    definition = attributes.definition
    for g, group in enumerate(definition.condition_groups):
        for c, condition in enumerate(group.conditions):
            if condition.get("type") not in CONDITION_TYPES:
                where = f"/data/attributes/definition/condition_groups/{g}/conditions/{c}/type"
                known = ", ".join(sorted(CONDITION_TYPES))
                raise ApiError.invalid(f"Unknown condition type; expected one of: {known}.", where)
    if not attributes.name.strip():
        raise ApiError.invalid("A segment needs a name.", "/data/attributes/name")
    return Segment(
        id=segment_id,
        name=attributes.name,
        definition=definition.model_dump(mode="json", by_alias=True),
        created=now,
        updated=now,
        is_starred=bool(attributes.is_starred),
    )


def resource(
    segment: Segment,
    base_url: str,
    *,
    processing: bool,
    with_definition: bool = True,
    fields: set[str] | None = None,
) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "name": segment.name,
        "created": iso(segment.created),
        "updated": iso(segment.updated),
        "is_active": segment.is_active,
        "is_processing": processing,
        "is_starred": segment.is_starred,
    }
    if with_definition:
        attributes["definition"] = segment.definition
    return {
        "type": "segment",
        "id": segment.id,
        "attributes": only(attributes, fields),
        "links": {"self": f"{base_url}/api/segments/{segment.id}/"},
    }


def query(segments: list[Segment], node: filters.Node | None, sort: str | None) -> list[Segment]:
    found = [s for s in segments if node is None or filters.matches(node, s.value_of)]
    if sort:
        name = sort.lstrip("-")
        found.sort(key=lambda s: s.value_of(name), reverse=sort.startswith("-"))
    return found
