"""Provision the Klaviyo segments a mapping drives, idempotently, by name.

Segment creation is the most tightly limited endpoint Klaviyo has (1/s, 15/min, 100/day): the
command first lists what exists (one request per name), creates only what is missing, and goes
through the same pacing as every request of the target.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from target_klaviyo.client import error_entries

if TYPE_CHECKING:
    from target_klaviyo.client import KlaviyoClient


@dataclass(frozen=True)
class SegmentResult:
    """What provisioning did with one segment, for the command's report."""

    name: str
    status: str  # "exists", "created" or "failed"
    segment_id: str | None = None
    detail: str | None = None


def load_definitions(path: Path) -> list[dict[str, Any]]:
    """Segments from a YAML file: a list under ``segments`` with ``name`` and ``definition``."""
    document = yaml.safe_load(path.read_text())
    segments = document.get("segments") if isinstance(document, Mapping) else None
    if not isinstance(segments, list):
        msg = f"{path}: expected a `segments:` list"
        raise ValueError(msg)
    for index, segment in enumerate(segments):
        if not isinstance(segment, Mapping) or not {"name", "definition"} <= set(segment):
            msg = f"{path}: segment #{index + 1} needs a `name` and a `definition`"
            raise ValueError(msg)
    return segments


def provision(client: KlaviyoClient, segments: list[dict[str, Any]]) -> list[SegmentResult]:
    return [_provision_one(client, segment) for segment in segments]


def _provision_one(client: KlaviyoClient, segment: Mapping[str, Any]) -> SegmentResult:
    name = str(segment["name"])
    existing = _find(client, name)
    if existing is not None:
        return SegmentResult(name, "exists", existing)
    body = {
        "data": {
            "type": "segment",
            "attributes": {"name": name, "definition": segment["definition"]},
        }
    }
    response = client.request("segments_create", body=body)
    if response.status_code in (200, 201):
        return SegmentResult(name, "created", str(response.json()["data"]["id"]))
    error = error_entries(response)[0]
    pointer = (error.get("source") or {}).get("pointer")
    detail = f"{error.get('detail')}" + (f" ({pointer})" if pointer else "")
    return SegmentResult(name, "failed", detail=detail)


def _find(client: KlaviyoClient, name: str) -> str | None:
    response = client.request("segments", params={"filter": f"equals(name,{json.dumps(name)})"})
    if response.status_code != 200:
        return None
    for segment in response.json().get("data") or []:
        if (segment.get("attributes") or {}).get("name") == name:
            return str(segment["id"])
    return None
