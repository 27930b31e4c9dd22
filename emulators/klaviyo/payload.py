"""Reading a request body with Klaviyo's official request models, and the limits they don't hold.

Bodies are validated by the ``klaviyo-api`` package's pydantic models, whole, with
``model_validate_json(raw, strict=True)``: the JSON flavour of ``model_validate`` keeps the error
locations (turned into JSON pointers) and, being strict about JSON types, rejects what the OpenAPI
schema rejects where lax validation would coerce (a number for a date-time, for instance).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from emulators.klaviyo.jsonapi import ApiError, pointer, validation_errors
from emulators.klaviyo.limits import MAX_STRING_BYTES

ModelT = TypeVar("ModelT", bound=BaseModel)


def load(model: type[ModelT], raw: bytes) -> ModelT:
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise validation_errors(exc, document(raw)) from None


def document(raw: bytes) -> Any:
    """The body as plain JSON, for pointers and original payloads (None if it is not JSON)."""
    try:
        return json.loads(raw)
    except ValueError:
        return None


def check_string_sizes(root: BaseModel, raw: bytes) -> None:
    """Reject the body if any string in it (key or value) is over 100 KB of UTF-8.

    The first pass is a byte scan of the raw body (it runs on every large request, so it must be
    cheap); only when it finds a candidate are the model and then the body walked, to be exact
    and to name the culprit with a pointer.
    """
    if len(raw) <= MAX_STRING_BYTES:
        return
    blanked = raw.replace(b"\\\\", b"xx").replace(b'\\"', b"xx")
    # Splitting on quotes is linear; a regex for "a long run without a quote" backtracks.
    long_run = any(len(part) > MAX_STRING_BYTES for part in blanked.split(b'"'))
    if not long_run or not _has_long_string(root):
        return
    where = _find_long_string(document(raw), [])
    detail = f"A string cannot be larger than {MAX_STRING_BYTES // 1024} KB."
    raise ApiError.invalid(detail, pointer(where) if where is not None else "/data")


def _too_long(text: str) -> bool:
    # A UTF-8 character takes at most 4 bytes: only long strings need encoding to measure.
    return len(text) * 4 > MAX_STRING_BYTES and len(text.encode()) > MAX_STRING_BYTES


def _has_long_string(root: BaseModel) -> bool:
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if _too_long(node):
                return True
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, BaseModel):
            stack.extend(vars(node).values())
    return False


def _find_long_string(node: Any, path: list[str | int]) -> list[str | int] | None:
    if isinstance(node, str):
        return path if _too_long(node) else None
    items: list[tuple[str | int, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if _too_long(key):
                return [*path, key]
            items.append((key, value))
    elif isinstance(node, list):
        items = list(enumerate(node))
    for key, value in items:
        found = _find_long_string(value, [*path, key])
        if found is not None:
            return found
    return None
