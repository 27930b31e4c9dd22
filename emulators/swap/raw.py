"""Returns whose fields hold JSON text Python's encoder would not write: for bad-input tests.

A field nested 1,500 deep or a 5,000-digit number cannot be produced with ``json.dumps`` (it
raises), yet Swap (or anything in front of it) could send one. ``RawJSON`` carries the exact text
of a field's value; the list endpoint writes it into the page verbatim.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RawJSON:
    """A field value written into the page as this JSON text, unchecked."""

    text: str


def encode_page(body: Any) -> bytes:
    """``body`` as compact JSON, with every :class:`RawJSON` value spliced in as written."""
    raws: dict[str, str] = {}

    def placeholder(value: Any) -> str:
        if not isinstance(value, RawJSON):
            msg = f"{type(value).__name__} is not JSON serializable"
            raise TypeError(msg)
        marker = f"\x00raw-json-{len(raws)}\x00"
        raws[json.dumps(marker)] = value.text
        return marker

    text = json.dumps(body, separators=(",", ":"), default=placeholder)
    for marker, raw in raws.items():
        text = text.replace(marker, raw, 1)
    return text.encode()


def raw_overrides(spec: Any) -> dict[str, Any]:
    """The ``_raw`` member of a control request: field name to JSON text."""
    if not isinstance(spec, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in spec.items()
    ):
        msg = "_raw must be an object of field names to JSON texts"
        raise TypeError(msg)
    return {key: RawJSON(value) for key, value in spec.items()}
