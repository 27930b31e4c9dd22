"""The ``integration_exceptions`` stream: returns the tap set aside, as records the target keeps.

A return the tap cannot read or encode must neither crash the run (the next run would read it
and crash again, for ever) nor vanish. It is emitted as an ``integration_exceptions`` record, in
the schema target-klaviyo reads (a copy in this package: a tap must not import a target), before
any record of its page, so a STATE message that moves the bookmark past it always follows it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import datetime, timezone
from importlib import resources
from typing import Any, ClassVar

from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.types import Context, Record
from singer_sdk.schema.source import SchemaDirectory, StreamSchema
from singer_sdk.streams import Stream

from tap_swapcommerce.pages import SetAside

STREAM = "integration_exceptions"
UNREADABLE = "unreadable_record"
SCHEMAS = SchemaDirectory(resources.files("tap_swapcommerce") / "schemas")


class IntegrationExceptionsStream(Stream):
    """Set-aside records, written as they are found; nothing is read for this stream itself."""

    name = STREAM
    primary_keys: ClassVar[list[str]] = ["exception_id"]
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE
    schema = StreamSchema(SCHEMAS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._schema_written = False
        self.reasons: Counter[str] = Counter()

    def get_records(self, context: Context | None) -> list[Record]:
        return []

    def set_aside(self, source_stream: str, aside: SetAside) -> None:
        """Record a return that cannot be delivered: as a RECORD when selected, always in the log.

        The log line names the return and the field, never the value (it may be personal data).
        """
        self.reasons[UNREADABLE] += 1
        self.logger.warning(
            "Set aside a %s record (return_id=%s) as %s: %s",
            source_stream,
            aside.source_key or "unreadable",
            UNREADABLE,
            aside.detail,
        )
        if not self.selected:
            self.logger.error(
                "The %s stream is not selected: this set-aside record is only in this log. "
                "Select it so that the target records it.",
                STREAM,
            )
            return
        if not self._schema_written:
            self._write_schema_message()
            self._schema_written = True
        self._write_record_message(exception_record(source_stream, aside))


#: The contract's ``maxLength`` of ``source_key``: a longer id is no key the ledger can hold.
MAX_KEY_LENGTH = 255


def exception_record(source_stream: str, aside: SetAside) -> Record:
    """The record, with an id stable across runs: the lookback re-reading it records it once."""
    source_key = aside.source_key if len(aside.source_key or "") <= MAX_KEY_LENGTH else None
    key = source_key or f"sha256:{aside.fingerprint}"
    parts = (source_stream, key, "", UNREADABLE, aside.updated_at or "")
    return {
        "exception_id": hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32],
        "source_stream": source_stream,
        "source_key": source_key,
        "rule": None,
        "reason": UNREADABLE,
        "detail": aside.detail,
        "source_updated_at": _timestamp(aside.updated_at),
        "occurred_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
    }


def _timestamp(value: str | None) -> str | None:
    """The return's update time if it is a valid ISO 8601 one (the schema says date-time)."""
    if value is None:
        return None
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value
