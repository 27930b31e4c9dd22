"""The checks a record passes between the contract and delivery, the same in a run and a replay.

Today they are the phone checks (:mod:`target_klaviyo.phones`): a phone that is not a valid
number is left out of the record and counted (``left_out.phone_invalid``), and a record left with
no identifier at all is set aside as ``invalid_phone``. A run's sinks hand every record that
meets the contract to :meth:`Intake.admit`; ``klaviyo-ops replay`` hands it every record it
resends, so that a record set aside by an older release, or before a check existed, is checked
as a run checks it today.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

from target_klaviyo.events import STREAM as EVENTS_STREAM
from target_klaviyo.ledger import Outcome
from target_klaviyo.phones import PHONE_INVALID, checked_phone
from target_klaviyo.profiles import STREAM as PROFILES_STREAM
from target_klaviyo.profiles import identity_of
from target_klaviyo.recording import LeftOut, Record

#: A record whose only identifier is a phone that is not a valid number.
INVALID_PHONE = "invalid_phone"
#: Builds the outcome of a record set aside: ``(stream, record, problem, reason)``.
Invalid: TypeAlias = Callable[[str, dict[str, Any], str, str], Outcome]


class Intake:
    """Admits records to delivery, fixed as a run fixes them, or sets them aside."""

    def __init__(self, *, record: Record, left_out: LeftOut, invalid: Invalid) -> None:
        self.record = record
        self.left_out = left_out
        self.invalid = invalid

    def admit(self, stream: str, record: dict[str, Any]) -> dict[str, Any] | None:
        """``record`` as it is delivered, or None when it was set aside (and recorded)."""
        if stream == EVENTS_STREAM:
            profile = record.get("profile") or {}
            checked = self._phone_checked(stream, record, profile)
            if checked is None:
                return None
            return record if checked == profile else {**record, "profile": checked}
        if stream == PROFILES_STREAM:
            return self._phone_checked(stream, record, record)
        return record

    def _phone_checked(
        self, stream: str, record: dict[str, Any], holder: dict[str, Any]
    ) -> dict[str, Any] | None:
        """``holder`` (the record or its profile) with a valid phone in E.164, or without it."""
        checked, left_out = checked_phone(holder)
        if not left_out:
            return checked
        self.left_out(PHONE_INVALID, 1)
        if identity_of(checked):
            return checked
        detail = "phone_number: not a valid phone number (E.164), and no other identifier"
        self.record([self.invalid(stream, record, detail, INVALID_PHONE)])
        return None
