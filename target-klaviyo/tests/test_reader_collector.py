"""The reader tunes Python's garbage collector while lines are read, and only then.

In-process callers (tests, klaviyo-ops) read several times in one process: the collector's
thresholds and the frozen objects must be given back as they were, also when a callback raises.
"""

from __future__ import annotations

import gc
import io
import json
from typing import Any

import pytest

from target_klaviyo.reader import READING_GC_THRESHOLD, QuarantiningReader

SCHEMA = {"type": "SCHEMA", "stream": "s", "schema": {"properties": {}}, "key_properties": []}
RECORD = {"type": "RECORD", "stream": "s", "record": {"id": 1}}


def _lines(*messages: dict[str, Any]) -> io.BytesIO:
    return io.BytesIO(b"".join(json.dumps(m).encode() + b"\n" for m in messages))


def test_collector_tuned_while_reading_and_restored_after() -> None:
    before, frozen_before = gc.get_threshold(), gc.get_freeze_count()
    seen: list[tuple[int, int]] = []

    def record(_: dict[str, Any]) -> None:
        seen.append((gc.get_threshold()[0], gc.get_freeze_count()))

    stats = QuarantiningReader().process_lines(
        _lines(SCHEMA, RECORD, RECORD), {"SCHEMA": lambda _: None, "RECORD": record}
    )
    assert stats["RECORD"] == 2
    assert all(threshold == READING_GC_THRESHOLD for threshold, _ in seen)
    assert all(frozen > frozen_before for _, frozen in seen)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen_before


def test_collector_restored_when_a_callback_raises() -> None:
    before, frozen_before = gc.get_threshold(), gc.get_freeze_count()

    def fail(_: dict[str, Any]) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        QuarantiningReader().process_lines(
            _lines(SCHEMA, RECORD), {"SCHEMA": lambda _: None, "RECORD": fail}
        )
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen_before
