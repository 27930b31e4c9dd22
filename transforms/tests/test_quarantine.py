"""Mapper-side quarantine: an input line the mapper cannot take is set aside, never a crash.

Each bad line becomes an `unreadable_record` exception (detail: what and where, never the value)
and the records around it are mapped and sent; STATE is not held (the data is bad, not the
mapping). Lone surrogates in free text are repaired to U+FFFD. The tap's own
`integration_exceptions` records pass through unchanged.
"""

from __future__ import annotations

import json
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from singer_sdk.contrib.msgspec import encoder

from tests.support import (
    DEFAULT_MAPPING,
    SWAP_TRANSFORMS,
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

EMAIL = "zoe.secret@example.org"


def raw_record(text: str) -> str:
    """A RECORD line whose record is given as raw JSON text (what an encoder would refuse)."""
    return '{"type": "RECORD", "stream": "returns", "record": ' + text + "}\n"


def a_return_text(**fields: str) -> str:
    """A good return as JSON, with some fields replaced by raw JSON text."""
    base = a_return(return_id="ret_bad", customer_email=EMAIL)
    text = encoder.encode(base).decode()
    for name, raw in fields.items():
        text = text.replace(encoder.encode({name: base[name]}).decode()[1:-1], f'"{name}":{raw}')
    return text


def around(bad_line: str) -> str:
    return (
        lines(schema("returns"), record("returns", a_return(return_id="ret_1")), bookmark("1"))
        + bad_line
        + lines(record("returns", a_return(return_id="ret_3")), bookmark("3"))
    )


@pytest.mark.parametrize(
    ("bad_line", "key", "detail"),
    [
        ('{"type": "RECORD", "stream": "returns", "record": {"return_id": \n', None,
         "input line 4: the line is not valid JSON"),
        (raw_record(a_return_text(customer_email='"zoe\\ud83d@example.org"')), "ret_bad",
         "input line 4: field 'customer_email' holds a lone surrogate (not free text)"),
        (raw_record(a_return_text(return_id='"ret_\\udc00"')), None,
         "input line 4: field 'return_id' holds a lone surrogate (not free text)"),
        (raw_record(a_return_text(total="9" * 5000)), "ret_bad",
         "input line 4: field 'total' holds a number out of range"),
        (raw_record('{"return_id": "ret_deep", "x": ' + "[" * 1500 + "]" * 1500 + "}"), None,
         "input line 4: the line is nested too deep to read"),
        ('{"type": "RECORD", "stream": "returns", "record": [1]}\n', None,
         "input line 4: a RECORD message without a valid 'record'"),
        ('{"type": "NOTE", "text": "hello"}\n', None,
         "input line 4: the line is not a Singer message (no known type)"),
    ],
    ids=["malformed", "email surrogate", "id surrogate", "huge number", "deep", "not a dict",
         "unknown type"],
)  # fmt: skip
@pytest.mark.slow
def test_a_bad_line_is_set_aside_and_the_run_goes_on(
    capsysbinary: pytest.CaptureFixture[bytes],
    caplog: pytest.LogCaptureFixture,
    bad_line: str,
    key: str | None,
    detail: str,
) -> None:
    out = run(capsysbinary, around(bad_line))
    assert started(out) == ["ret_1", "ret_3"]
    [set_aside] = exceptions(out)
    assert (set_aside["source_key"], set_aside["reason"], set_aside["detail"]) == (
        key,
        "unreadable_record",
        detail,
    )
    assert states(out) == ["1", "3"]  # bad data does not hold the bookmark
    assert "zoe" not in json.dumps(out, default=str)
    assert "zoe" not in caplog.text


@pytest.mark.slow
def test_a_bad_line_of_a_stream_without_rules_is_dropped_like_its_stream(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    bad = '{"type": "RECORD", "stream": "return_items", "record": {"sku": "\\ud83d"}}\n'
    out = run(capsysbinary, around(bad))
    assert exceptions(out) == []
    assert started(out) == ["ret_1", "ret_3"]


@pytest.mark.slow
def test_the_same_bad_line_has_the_same_exception_id(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    bad = '{"type": "RECORD", "stream": "returns", "record": {"return_id": \n'
    first = exceptions(run(capsysbinary, around(bad)))[0]["exception_id"]
    again = exceptions(run(capsysbinary, around(bad)))[0]["exception_id"]
    assert first == again


@pytest.mark.slow
def test_a_lone_surrogate_in_free_text_is_repaired_and_counted(
    capsysbinary: pytest.CaptureFixture[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    text = a_return_text(customer_name='"Zo\\u00eb \\ud83d"')
    out = run(capsysbinary, around(raw_record(text)))
    assert started(out) == ["ret_1", "ret_bad", "ret_3"]
    assert exceptions(out) == []
    assert "Lone surrogates in free text repaired to U+FFFD: customer_name 1" in caplog.text


@pytest.mark.slow
def test_the_taps_exceptions_pass_through_unchanged(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    tap_exception = {
        "exception_id": "a" * 32,
        "source_stream": "returns",
        "source_key": "ret_9",
        "rule": None,
        "reason": "unreadable_record",
        "detail": "field 'customer_email' holds a lone surrogate",
        "source_updated_at": None,
        "occurred_at": "2026-06-01T00:00:00.000Z",
    }
    text = lines(
        schema("integration_exceptions"),
        record("integration_exceptions", tap_exception),
        schema("returns"),
        record("returns", a_return(return_id="ret_1")),
    )
    out = run(capsysbinary, text)
    assert out[0]["type"] == "SCHEMA"
    assert out[0]["stream"] == "integration_exceptions"
    assert out[0]["schema"]["required"] == [
        "exception_id",
        "source_stream",
        "reason",
        "occurred_at",
    ]
    assert out[1] == {"type": "RECORD", "stream": "integration_exceptions", "record": tap_exception}
    schemas = [m["stream"] for m in out if m["type"] == "SCHEMA"]
    assert schemas.count("integration_exceptions") == 1


@pytest.mark.slow
def test_the_executable_repairs_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"mapping_files": [str(DEFAULT_MAPPING)]}))
    good = lines(schema("returns"), record("returns", a_return(return_id="ret_1")))
    broken = a_return_text(customer_name='"Zoe XX"').encode().replace(b"XX", b"\xed\xa0\xbd")
    data = good.encode() + b'{"type": "RECORD", "stream": "returns", "record": ' + broken + b"}\n"
    result = subprocess.run(
        [str(SWAP_TRANSFORMS), "--config", str(config)],
        input=data,
        capture_output=True,
        check=True,
        timeout=120,
    )
    out: list[dict[str, Any]] = [
        json.loads(line, parse_float=Decimal) for line in result.stdout.decode().splitlines()
    ]
    assert started(out) == ["ret_1", "ret_bad"]
    assert "customer_name" in result.stderr.decode()
    assert EMAIL not in result.stderr.decode()
