"""JSON:API documents as Klaviyo writes them: errors with pointers, resource links, cursor pages.

Klaviyo answers every failure with ``{"errors": [...]}`` whose ``source.pointer`` names the bad
value of the request body. Clients (and our target's tests) rely on those pointers to tell which
record of a batch was wrong, so the pointers here are built from the validator's error locations
walked against the body itself.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError

from emulators.http import Request

JSONAPI = "application/vnd.api+json"

TITLES = {
    "invalid": "Invalid input.",
    "not_authenticated": "Authentication credentials were not provided.",
    "authentication_failed": "Incorrect authentication credentials.",
    "throttled": "Request was throttled.",
    "not_found": "Not found.",
    "method_not_allowed": "Method not allowed.",
    "unsupported_media_type": "Unsupported media type.",
    "payload_too_large": "Payload too large.",
    "server_error": "A server error occurred.",
}


@dataclass(frozen=True)
class ErrorItem:
    """One entry of a JSON:API ``errors`` array."""

    status: int
    code: str
    detail: str
    pointer: str | None = None
    parameter: str | None = None

    def document(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "status": self.status,
            "code": self.code,
            "title": TITLES.get(self.code, self.code.replace("_", " ").capitalize() + "."),
            "detail": self.detail,
        }
        source = {}
        if self.pointer is not None:
            source["pointer"] = self.pointer
        if self.parameter is not None:
            source["parameter"] = self.parameter
        if source:
            item["source"] = source
        return item


class ApiError(Exception):
    """Raised anywhere below a handler to answer with a JSON:API error document."""

    def __init__(self, status: int, items: Sequence[ErrorItem]) -> None:
        super().__init__(items[0].detail if items else str(status))
        self.status = status
        self.items = list(items)

    @classmethod
    def one(
        cls,
        status: int,
        code: str,
        detail: str,
        *,
        pointer: str | None = None,
        parameter: str | None = None,
    ) -> ApiError:
        return cls(status, [ErrorItem(status, code, detail, pointer, parameter)])

    @classmethod
    def invalid(cls, detail: str, pointer: str) -> ApiError:
        return cls.one(400, "invalid", detail, pointer=pointer)

    @classmethod
    def bad_parameter(cls, parameter: str, detail: str) -> ApiError:
        return cls.one(400, "invalid", detail, parameter=parameter)

    def document(self) -> dict[str, Any]:
        return {"errors": [item.document() for item in self.items]}


def error_document(items: Iterable[ErrorItem]) -> dict[str, Any]:
    return {"errors": [item.document() for item in items]}


def pointer(parts: Iterable[str | int]) -> str:
    """RFC 6901 JSON pointer of a path of keys and indexes."""
    escaped = (str(p).replace("~", "~0").replace("/", "~1") for p in parts)
    return "/" + "/".join(escaped)


def pointer_for_location(location: Sequence[str | int], document: Any) -> str:
    """Pointer of a pydantic error location, walked against the JSON body that failed.

    Pydantic locations use the JSON names (aliases) but also hold union-member tags such as
    ``float``/``int`` that are not part of the document; walking the body drops them. A missing
    field keeps its name as the last step, as Klaviyo points at the member that should exist.
    """
    parts: list[str | int] = []
    node = document
    last = len(location) - 1
    for position, part in enumerate(location):
        if isinstance(node, dict) and isinstance(part, str):
            if part in node:
                parts.append(part)
                node = node[part]
            elif position == last:
                parts.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            parts.append(part)
            node = node[part]
    return pointer(parts) if parts else "/data"


def validation_errors(error: ValidationError, document: Any) -> ApiError:
    """A 400 with one JSON:API error per distinct bad value, pointing into the request body."""
    items: list[ErrorItem] = []
    seen: set[str] = set()
    for detail in error.errors(include_url=False):
        where = pointer_for_location(detail["loc"], document)
        if where in seen:
            continue  # a union reports one error per member: one per value is enough
        seen.add(where)
        if detail["type"] == "json_invalid":
            items.append(ErrorItem(400, "invalid", "The request body is not valid JSON."))
            continue
        items.append(ErrorItem(400, "invalid", f"{detail['msg']} at '{where}'.", where))
    return ApiError(400, items)


def iso(timestamp: float | None, *, micro: bool = False) -> str | None:
    """Klaviyo's ISO 8601 timestamps (UTC offset spelled ``+00:00``)."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="microseconds" if micro else "seconds")


def parse_size(request: Request, default: int, maximum: int) -> int:
    raw = request.arg("page[size]")
    if raw is None:
        return default
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if not 1 <= size <= maximum:
        detail = f"page[size] must be an integer from 1 to {maximum}."
        raise ApiError.bad_parameter("page[size]", detail)
    return size


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def decode_cursor(request: Request) -> int:
    raw = request.arg("page[cursor]")
    if not raw:
        return 0
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        kind, _, number = text.partition(":")
        offset = int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        kind, offset = "", -1
    if kind != "o" or offset < 0:
        raise ApiError.bad_parameter("page[cursor]", "Invalid page cursor.")
    return offset


def page_links(
    base_url: str, request: Request, offset: int, size: int, total: int
) -> dict[str, str]:
    """``links`` of a cursor-paginated collection: self, and next/prev where they exist."""

    def url(cursor_offset: int | None) -> str:
        query = [(k, v) for k, values in request.query.items() for v in values]
        query = [(k, v) for k, v in query if k != "page[cursor]"]
        if cursor_offset:
            query.append(("page[cursor]", encode_cursor(cursor_offset)))
        return base_url + request.path + ("?" + urlencode(query) if query else "")

    links = {"self": url(offset)}
    if offset + size < total:
        links["next"] = url(offset + size)
    if offset > 0:
        links["prev"] = url(max(0, offset - size))
    return links


def sparse_fields(request: Request, resource_type: str) -> set[str] | None:
    """The top-level attribute names asked for with ``fields[type]=a,b.c``, or None for all."""
    raw = request.arg(f"fields[{resource_type}]")
    if not raw:
        return None
    return {name.split(".", 1)[0] for name in raw.split(",") if name}


def only(attributes: dict[str, Any], fields: set[str] | None) -> dict[str, Any]:
    if fields is None:
        return attributes
    return {k: v for k, v in attributes.items() if k in fields}


def additional_fields(request: Request, resource_type: str) -> set[str]:
    raw = request.arg(f"additional-fields[{resource_type}]") or ""
    return {name for name in raw.split(",") if name}
