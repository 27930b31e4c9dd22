"""A mapping error is never silent and never loses data (decisions.md §1).

After the first record that fails with `mapping_error` or `invalid_output`, the mapper sends no
further STATE (the bookmark stays, the next run reads the failed records again) and still maps
and sends every other record. Data out of the contract's bounds is set aside as `out_of_bounds`
and does not hold; a rule named in `tolerated_rules` is set aside as `tolerated_mapping_error`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from swap_transforms.errors import MappingFileError
from swap_transforms.mapper import SwapTransformsMapper
from tests.support import (
    DEFAULT_MAPPING,
    MappingWriter,
    a_return,
    bookmark,
    exceptions,
    lines,
    record,
    run,
    schema,
    started,
    states,
)


def rule_line(name: str) -> int:
    """The line of a rule of the default mapping (analysts move rules around)."""
    text = DEFAULT_MAPPING.read_text().splitlines()
    return next(number for number, line in enumerate(text, 1) if line.strip() == f"- name: {name}")


#: `total` as text: `money` fails, so rule return_started is a mapping_error for this return.
BROKEN = a_return(return_id="ret_2", rma_number="SW-2", total="eighty")

INPUT = lines(
    schema("returns"),
    record("returns", a_return(return_id="ret_1", rma_number="SW-1")),
    bookmark("1"),
    record("returns", BROKEN),
    bookmark("2"),
    record("returns", a_return(return_id="ret_3", rma_number="SW-3")),
    bookmark("3"),
)


@pytest.mark.slow
def test_no_state_after_a_mapping_error_and_every_other_record_is_sent(
    capsysbinary: pytest.CaptureFixture[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    out = run(capsysbinary, INPUT)
    assert states(out) == ["1"]  # the STATE before the failure only
    assert started(out) == ["ret_1", "ret_3"]
    [failure] = exceptions(out)
    assert (failure["source_key"], failure["rule"], failure["reason"]) == (
        "ret_2",
        "return_started",
        "mapping_error",
    )
    where = f"{DEFAULT_MAPPING}:{rule_line('return_started')}"
    assert failure["detail"].endswith(f"(at {where})")
    # The other rules of the failing return still ran (its other events, its profile).
    assert any(m.get("stream") == "klaviyo_profile_updates" for m in out)
    summary = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert summary == [
        f"{where}: rule 'return_started' of stream 'returns' failed on 1 record(s) "
        "(mapping_error); fix the mapping: the next run re-reads them",
        "Mapping errors held the bookmark: 2 STATE message(s) withheld",
    ]
    assert "eighty" not in caplog.text


@pytest.mark.slow
def test_the_run_after_the_fix_delivers_what_failed(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    # The bookmark stayed at "1": the tap reads ret_2 and ret_3 again, now mappable.
    fixed = a_return(return_id="ret_2", rma_number="SW-2", total=80)
    again = lines(
        schema("returns"),
        record("returns", fixed),
        bookmark("2"),
        record("returns", a_return(return_id="ret_3", rma_number="SW-3")),
        bookmark("3"),
    )
    out = run(capsysbinary, again)
    assert started(out) == ["ret_2", "ret_3"]
    assert exceptions(out) == []
    assert states(out) == ["2", "3"]


@pytest.mark.slow
def test_a_tolerated_rule_is_set_aside_without_holding(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    out = run(capsysbinary, INPUT, tolerated_rules=["return_started"])
    assert states(out) == ["1", "2", "3"]
    [failure] = exceptions(out)
    assert failure["reason"] == "tolerated_mapping_error"
    assert failure["detail"].startswith("mapping_error (tolerated): field 'value': ")


def test_a_tolerated_rule_that_does_not_exist_is_refused() -> None:
    with pytest.raises(MappingFileError) as caught:
        SwapTransformsMapper(
            config={"mapping_files": [str(DEFAULT_MAPPING)], "tolerated_rules": ["return_strated"]}
        )
    assert str(caught.value) == (
        "tolerated_rules: 'return_strated' is not a rule of the mapping "
        "(did you mean 'return_started'?)"
    )


EVENTS_ONLY = """
    version: 1
    outputs:
      klaviyo_events: {key_properties: [unique_id], schema: schemas/klaviyo_events.json}
      integration_exceptions:
        key_properties: [exception_id]
        schema: schemas/integration_exceptions.json
    streams:
      returns:
        key: return_id
        rules:
          - name: started
            emit:
              klaviyo_events:
                unique_id: "swap:{{ record.return_id }}"
                metric: "{{ record.type_string }}"
                profile: {email: "m@example.org"}
                time: "2026-03-01T09:00:00Z"
                properties: {}
                value: "{{ record.total }}"
"""


@pytest.mark.parametrize(
    ("change", "reason", "states_after"),
    [
        ({"type_string": "x" * 128}, "out_of_bounds", ["1", "2", "3"]),
        ({"total": "80"}, "invalid_output", ["1"]),
    ],
    ids=["maxLength: data out of bounds", "type: the mapping is wrong"],
)
def test_bounds_do_not_hold_types_do(
    capsysbinary: pytest.CaptureFixture[bytes],
    write_mapping: MappingWriter,
    change: dict[str, Any],
    reason: str,
    states_after: list[str],
) -> None:
    path: Path = write_mapping(EVENTS_ONLY)
    text = lines(
        schema("returns"),
        record("returns", a_return(return_id="ret_1")),
        bookmark("1"),
        record("returns", a_return(return_id="ret_2", **change)),
        bookmark("2"),
        record("returns", a_return(return_id="ret_3")),
        bookmark("3"),
    )
    out = run(capsysbinary, text, mapping_files=[str(path)])
    [failure] = exceptions(out)
    assert failure["reason"] == reason
    assert states(out) == states_after
    sent = [
        m["record"]["unique_id"]
        for m in out
        if m["type"] == "RECORD" and m["stream"] == "klaviyo_events"
    ]
    assert sent == ["swap:ret_1", "swap:ret_3"]
