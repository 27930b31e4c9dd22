"""The Singer mapper: messages in, messages out, in-process through its class and as a program."""

from __future__ import annotations

import io
import json
import logging
import os
import queue
import re
import subprocess
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.singerlib.exceptions import InvalidInputLine

from swap_transforms.mapper import PrivateMsgSpecReader, SwapTransformsMapper
from tests.support import (
    DEFAULT_MAPPING,
    SWAP_TRANSFORMS,
    TRANSFORMS,
    a_return,
    lines,
    record,
    schema,
    state,
)


def run_in_process(text: str, capsysbinary: pytest.CaptureFixture[bytes]) -> list[dict[str, Any]]:
    mapper = SwapTransformsMapper(config={"mapping_files": [str(DEFAULT_MAPPING)]})
    capsysbinary.readouterr()
    mapper.listen(io.StringIO(text))
    out = capsysbinary.readouterr().out.decode()
    return [json.loads(line, parse_float=Decimal) for line in out.splitlines()]


@pytest.mark.slow
def test_messages_flow_through_in_order(
    capsysbinary: pytest.CaptureFixture[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    first = a_return(return_id="ret_1", rma_number="SW-1")
    rejected = a_return(return_id="ret_2", customer_email="nobody")
    text = lines(
        schema("returns"),
        schema("returns"),
        schema("return_items"),
        record("returns", first),
        record("return_items", {"id": 1}),
        state({"bookmarks": {"returns": {"replication_key_value": "2026-03-06T16:00:00Z"}}}),
        {"type": "ACTIVATE_VERSION", "stream": "returns", "version": 3},
        {"type": "BATCH", "stream": "returns", "encoding": {"format": "jsonl"}, "manifest": []},
        record("returns", rejected),
        record("return_items", {"id": 2}),
        state({"bookmarks": {"returns": {"replication_key_value": "2026-03-07T00:00:00Z"}}}),
    )
    out = run_in_process(text, capsysbinary)
    kinds = [(m["type"], m.get("stream")) for m in out]

    schemas = [m for m in out if m["type"] == "SCHEMA"]
    assert sorted(m["stream"] for m in schemas) == [
        "integration_exceptions",
        "klaviyo_catalog_variants",
        "klaviyo_events",
        "klaviyo_profile_updates",
    ]
    for message in schemas:
        declared = json.loads((TRANSFORMS / "schemas" / f"{message['stream']}.json").read_text())
        assert message["schema"] == declared
        first_record = kinds.index(("RECORD", message["stream"]))
        assert out.index(message) < first_record
    keys = {m["stream"]: m["key_properties"] for m in schemas}
    assert keys["klaviyo_events"] == ["unique_id"]
    assert keys["integration_exceptions"] == ["exception_id"]

    states = [i for i, m in enumerate(out) if m["type"] == "STATE"]
    assert [out[i]["value"] for i in states] == [
        {"bookmarks": {"returns": {"replication_key_value": "2026-03-06T16:00:00Z"}}},
        {"bookmarks": {"returns": {"replication_key_value": "2026-03-07T00:00:00Z"}}},
    ]
    before_first_state = out[: states[0]]
    between = out[states[0] + 1 : states[1]]
    assert {m["record"]["source_id"] for m in before_first_state if m["type"] == "RECORD"} == {
        "ret_1"
    }
    assert [(m["stream"], m["record"]["reason"]) for m in between] == [
        ("integration_exceptions", "invalid_email")
    ]
    assert states[1] == len(out) - 1
    assert {m["type"] for m in out} == {"SCHEMA", "RECORD", "STATE"}
    assert "return_items" not in {m.get("stream") for m in out}
    dropped = [r for r in caplog.records if "'return_items' has no mapping rules" in r.message]
    assert len(dropped) == 1
    assert dropped[0].levelno == logging.INFO


@pytest.mark.slow
def test_numbers_stay_numbers(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    out = run_in_process(lines(schema("returns"), record("returns", a_return())), capsysbinary)
    started = next(
        m for m in out if m["type"] == "RECORD" and m["record"].get("metric") == "Return Started"
    )
    assert started["record"]["value"] == Decimal("80.50")
    assert started["record"]["properties"]["Items"][0]["Quantity"] == 1


@pytest.mark.slow
def test_a_record_before_its_schema_is_set_aside(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    out = run_in_process(
        lines(record("returns", a_return()), schema("returns"), record("returns", a_return())),
        capsysbinary,
    )
    assert out[0]["type"] == "SCHEMA"
    assert out[0]["stream"] == "integration_exceptions"
    set_aside = out[1]["record"]
    assert (set_aside["source_key"], set_aside["reason"]) == ("ret_100", "unreadable_record")
    assert set_aside["detail"] == "input line 1: a RECORD of stream 'returns' before its SCHEMA"
    # After its SCHEMA the same record is mapped.
    assert any(m.get("stream") == "klaviyo_events" for m in out)


def test_an_unreadable_line_is_set_aside_without_quoting_it(
    capsysbinary: pytest.CaptureFixture[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    out = run_in_process('{"customer_email": "maria@example.org", \n', capsysbinary)
    [(schema_message, set_aside)] = [(out[0], out[1]["record"])]
    assert schema_message["stream"] == "integration_exceptions"
    assert set_aside["detail"] == "input line 1: the line is not valid JSON"
    assert "maria" not in json.dumps(out)
    assert "maria" not in caplog.text


def test_without_the_quarantine_hook_the_reader_refuses_unquoted() -> None:
    with pytest.raises(InvalidInputLine) as error:
        PrivateMsgSpecReader().deserialize_json('{"customer_email": "maria@example.org", ')
    assert "maria" not in str(error.value)


def test_config_is_validated() -> None:
    with pytest.raises(ConfigValidationError) as error:
        SwapTransformsMapper(config={})
    assert error.value.errors == ["'mapping_files' is a required property"]


@pytest.mark.slow
def test_the_executable_with_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    # Relative to the current directory, as Meltano runs plugins from the project root.
    relative = DEFAULT_MAPPING.relative_to(TRANSFORMS.parent)
    config.write_text(json.dumps({"mapping_files": [str(relative)]}))
    returns = [a_return(return_id=f"ret_{n}", rma_number=f"SW-{n}") for n in range(3)]
    text = lines(
        schema("returns"),
        *(record("returns", r) for r in returns),
        state({"bookmarks": {"returns": {"replication_key_value": "x"}}}),
    )
    result = subprocess.run(
        [str(SWAP_TRANSFORMS), "--config", str(config)],
        input=text,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=TRANSFORMS.parent,
    )
    assert result.returncode == 0, result.stderr
    out = [json.loads(line, parse_float=Decimal) for line in result.stdout.splitlines()]
    records = [m for m in out if m["type"] == "RECORD"]
    events = [m["record"] for m in records if m["stream"] == "klaviyo_events"]
    started = [e for e in events if e["metric"] == "Return Started"]
    assert [e["unique_id"] for e in started] == [f"swap:ret_{n}:started" for n in range(3)]
    assert out[-1] == {
        "type": "STATE",
        "value": {"bookmarks": {"returns": {"replication_key_value": "x"}}},
    }
    assert "maria" not in result.stderr.lower()


@pytest.mark.slow
def test_about_lists_the_setting() -> None:
    result = subprocess.run(
        [str(SWAP_TRANSFORMS), "--about", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    about = json.loads(result.stdout)
    assert "mapping_files" in about["settings"]["properties"]


@pytest.mark.slow
def test_the_executable_reads_bytes_crlf_and_utf8_as_text_lines_were(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"mapping_files": [str(DEFAULT_MAPPING)]}))
    named = a_return(return_id="ret_ü", rma_number="SW-ß", customer_name="Zoë Łukasz")
    text = lines(schema("returns"), record("returns", named), record("returns", a_return()))

    def run(data: bytes) -> bytes:
        result = subprocess.run(
            [str(SWAP_TRANSFORMS), "--config", str(config)],
            input=data,
            capture_output=True,
            check=True,
            timeout=120,
        )
        return result.stdout

    plain = run(text.encode("utf-8"))
    assert run(text.replace("\n", "\r\n").encode("utf-8")) == plain
    out = [json.loads(line) for line in plain.decode("utf-8").splitlines()]
    assert "swap:ret_ü:started" in {m["record"].get("unique_id") for m in out if "record" in m}


@pytest.mark.slow
def test_each_input_message_has_its_outputs_written_before_the_next_is_read(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"mapping_files": [str(DEFAULT_MAPPING)]}))
    buffered = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    process = subprocess.Popen(
        [str(SWAP_TRANSFORMS), "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=buffered,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    stdout = process.stdout
    received: queue.Queue[bytes] = queue.Queue()

    def read() -> None:
        for line in iter(stdout.readline, b""):
            received.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        for number in range(2):
            # A rejected return: one small output, far less than an output buffer holds.
            rejected = a_return(return_id=f"ret_{number}", customer_email=None)
            process.stdin.write(lines(record("returns", rejected)).encode())
            process.stdin.flush()  # the mapper's input stays open: it must not wait for more
            deadline = time.monotonic() + 60
            while True:
                line = received.get(timeout=max(0.1, deadline - time.monotonic()))
                if b'"integration_exceptions"' in line and f'"ret_{number}"'.encode() in line:
                    break
    finally:
        process.stdin.close()
        process.wait(timeout=60)
        reader.join(timeout=60)
        stdout.close()
    assert process.returncode == 0


@pytest.mark.slow
def test_records_are_written_as_the_sdk_writer_writes_their_messages(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    returns = [
        a_return(),
        a_return(return_id="ret_2", customer_email="nobody"),
        a_return(return_id="ret_3", total=None, return_shipments=None),
    ]
    text = lines(
        schema("returns"),
        *(record("returns", r) for r in returns),
        record("return_items", {"id": 1}),
        state({"bookmarks": {"returns": {"replication_key_value": "x"}}}),
    )
    outputs = []
    for writer in (None, MsgSpecWriter()):  # the mapper's own writer, then the SDK's
        mapper = SwapTransformsMapper(
            config={"mapping_files": [str(DEFAULT_MAPPING)]}, message_writer=writer
        )
        capsysbinary.readouterr()
        mapper.listen(io.StringIO(text))
        # Exception records carry the time they were made: the rest is compared byte for byte.
        out = capsysbinary.readouterr().out
        outputs.append(re.sub(rb'"occurred_at":"[^"]*"', b'"occurred_at":"-"', out))
    assert outputs[0] == outputs[1]
    assert b'"occurred_at":"-"' in outputs[0]
    assert outputs[0].count(b'"type":"RECORD"') > 10
