"""Email and phone syntax checks, as Klaviyo applies them to profile identifiers.

Both use the reference libraries (``email-validator``, Google's libphonenumber port) rather than a
home-made pattern. Results are cached: a benchmark sends the same customers again and again, and
the email check is the most expensive step of accepting an event.
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers
from email_validator import EmailNotValidError, validate_email


@lru_cache(maxsize=200_000)
def email_problem(email: str) -> str | None:
    """Why ``email`` is not a valid address, or None when it is.

    No DNS lookups (the emulator runs offline); the reserved ``.test`` domain is allowed so test
    data can use it, while ``.invalid``, ``.local``, ``localhost`` and the like are rejected.
    """
    try:
        validate_email(email, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        return str(exc)
    return None


@lru_cache(maxsize=50_000)
def phone_problem(phone: str) -> str | None:
    """Why ``phone`` is not a valid E.164 number, or None when it is."""
    if not phone.startswith("+"):
        return "Phone numbers must be in E.164 format, e.g. +12345678901."
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException as exc:
        return f"Invalid phone number: {exc}."
    if not phonenumbers.is_valid_number(number):
        return "Invalid phone number."
    return None
