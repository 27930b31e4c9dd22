"""The customer data a Swap return carries, to prove a log holds none of it.

A test that feeds returns through a plugin collects :func:`personal_values` of every return it
used and asserts :func:`leaks` of each log is empty. Values shorter than a few characters (an
empty address line, a two-letter name) are skipped: they would match by chance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: Fields of a Swap return (and of its addresses) that name, reach or locate a person.
PERSONAL_FIELDS = ("customer_email", "customer_name")
ADDRESS_FIELDS = ("name", "first_name", "last_name", "address1", "address2", "phone", "zip")
MIN_LENGTH = 6


def personal_values(record: Mapping[str, Any]) -> set[str]:
    """E-mail, name, phones and address lines of one return, as text a log could quote."""
    found = [record.get(field) for field in PERSONAL_FIELDS]
    for kind in ("billing_address", "shipping_address"):
        address = record.get(kind)
        if isinstance(address, Mapping):
            found.extend(address.get(field) for field in ADDRESS_FIELDS)
            phone = address.get("phone")
            if isinstance(phone, str):  # as the target sends it: E.164, no spaces
                found.append("+" + "".join(ch for ch in phone if ch.isdigit()))
    return {v for v in found if isinstance(v, str) and len(v.strip()) >= MIN_LENGTH}


def leaks(text: str, values: Iterable[str]) -> list[str]:
    """The values that ``text`` holds (a lone surrogate's readable part counts)."""
    found = []
    for value in values:
        readable = value.encode("utf-8", "replace").decode("utf-8")
        parts = [p for p in readable.split("?") if len(p) >= MIN_LENGTH] or [readable]
        if any(part in text for part in parts):
            found.append(value)
    return sorted(found)
