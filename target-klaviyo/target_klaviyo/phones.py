"""Phone numbers: an identifier Klaviyo takes only as valid E.164, checked before sending.

Klaviyo refuses a whole event request, or fails a profile's import, for one phone it cannot
read. A source's phone is often typed by the customer ("07700 900123", "+44 (0)7700..."), so the
target normalises it with Google's libphonenumber (``phonenumbers``) and leaves out of the update
a number that is not valid: the rest of the update (email, name, properties) and its events go
on, and the run summary counts it (``left_out.phone_invalid``). A number without a country
prefix cannot be placed in a country and is not valid. A phone never implies SMS consent: it is
sent as an identifier only, never with a subscription.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import phonenumbers

#: The summary's name for a phone left out because it is not a valid number.
PHONE_INVALID = "phone_invalid"
#: ... because Klaviyo has it on another profile (the update is resent without it).
PHONE_IN_USE = "phone_in_use"


@lru_cache(maxsize=8192)
def e164(phone: str) -> str | None:
    """``phone`` as E.164 (``+447700900123``), or None when it is not a valid number.

    Remembered per text: libphonenumber takes about 50 microseconds a number, and a customer's
    phone comes with each of their events and updates (a pure function of its text).
    """
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def checked_phone(holder: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """``holder`` (a record or an event's profile) with its phone normalised or left out.

    Returns the new mapping and whether a phone was left out. A holder without a phone is
    returned as a copy, unchanged.
    """
    result = dict(holder)
    phone = result.get("phone_number")
    if not isinstance(phone, str) or not phone.strip():
        return result, False
    normalised = e164(phone)
    if normalised is None:
        result.pop("phone_number")
        return result, True
    result["phone_number"] = normalised
    return result, False
