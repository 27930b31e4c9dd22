"""Masking of personal data: the report is shared with people who must not see who is who.

A CX lead needs to tell customers apart and recognise one they are helping (``a***@example.com``),
never to read a full address off a screen or a forwarded file. Every string that comes out of the
ledger goes through :func:`scrub` before it is shown, because Klaviyo's and the mapper's error
details can quote the address that caused them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: Anything shaped like ``local@domain``, even malformed (invalid emails are a set-aside reason).
_EMAIL_LIKE = re.compile(r"[^\s@'\"<>()\[\],;:`]+@[^\s@'\"<>()\[\],;:`]*")
#: International phone numbers as Klaviyo takes them (E.164, perhaps with separators). A leading
#: ``+`` is required so that dates, SKUs and ids in error details are left alone.
_PHONE_LIKE = re.compile(r"\+\d[\d\s().-]{6,}\d")


def mask_email(email: str) -> str:
    """``alice@example.com`` -> ``a***@example.com``: the first letter and the domain only."""
    local, sep, domain = email.strip().partition("@")
    if not sep:
        return _mask_opaque(local)
    first = local[:1] or "?"
    return f"{first}***@{domain}" if domain else f"{first}***@"


def mask_phone(phone: str) -> str:
    """``+44 7700 900123`` -> ``+*********23``: the last two digits tell two numbers apart."""
    digits = re.sub(r"\D", "", phone)
    if len(digits) <= 2:
        return "***"
    prefix = "+" if phone.strip().startswith("+") else ""
    return f"{prefix}{'*' * (len(digits) - 2)}{digits[-2:]}"


def _mask_opaque(value: str) -> str:
    value = value.strip()
    return f"{value[:2]}***" if len(value) > 4 else "***"


def mask_identity(identity: Mapping[str, Any] | None) -> str | None:
    """The masked email, else phone, else external id of a profile, as the ledger keys them."""
    if not identity:
        return None
    email = identity.get("email")
    if isinstance(email, str) and email.strip():
        return mask_email(email)
    phone = identity.get("phone_number")
    if isinstance(phone, str) and phone.strip():
        return mask_phone(phone)
    external = identity.get("external_id")
    if isinstance(external, str) and external.strip():
        return f"id {_mask_opaque(external)}"
    return None


def scrub(text: str | None) -> str | None:
    """Free text with every email-like and phone-like substring masked."""
    if text is None:
        return None
    text = _EMAIL_LIKE.sub(lambda m: mask_email(m.group(0)), text)
    return _PHONE_LIKE.sub(lambda m: mask_phone(m.group(0)), text)
