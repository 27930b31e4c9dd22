"""`swap-transforms-preview`, run as analysts run it: a program reading a file or a pipe."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from singer_sdk.contrib.msgspec import encoder

from swap_transforms.engine import MappingEngine
from swap_transforms.preview import main as preview_main
from tests.support import DEFAULT_MAPPING, MappingWriter, a_return, with_items

BIN = Path(sys.executable).parent
PREVIEW = BIN / "swap-transforms-preview"


def preview(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PREVIEW), "--mapping", str(DEFAULT_MAPPING), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def singer_lines(*records: dict[str, Any]) -> str:
    messages: list[dict[str, Any]] = [
        {"type": "SCHEMA", "stream": "returns", "schema": {}, "key_properties": ["return_id"]}
    ]
    messages += [{"type": "RECORD", "stream": "returns", "record": r} for r in records]
    messages.append({"type": "STATE", "value": {"bookmarks": {}}})
    return "".join(encoder.encode(message).decode() + "\n" for message in messages)


def samples() -> list[dict[str, Any]]:
    partial = with_items(
        a_return(return_id="ret_2", rma_number="SW-2", return_status="Open"),
        {"refunded_at": "2026-03-07T10:00:00Z", "refund_amount": 10},
        {"restock_quantity": 0},
    )
    return [a_return(), a_return(return_id="ret_3", customer_email="nobody"), partial]


@pytest.mark.slow
def test_singer_messages_from_a_pipe() -> None:
    result = preview("-", stdin=singer_lines(*samples()))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "returns ret_100\n" in out
    assert (
        "  event     Return Started    swap:ret_100:started  at 2026-03-01T09:00:00Z  "
        "value 80.50 EUR  for m***@example.org\n"
    ) in out
    # Every event's properties, on the line below it.
    started = out.split("swap:ret_100:started")[1].splitlines()[1]
    assert started.startswith("            ReturnId=ret_100, RMA=SW-100, OrderId=5500000000100, ")
    assert 'SKUs=["JKT-M-NAV","CAP-OS-RED"]' in started
    assert "  event     Refunded Order    swap:ret_2:refund:2026-03-07T10:00:00Z  at " in out
    assert (
        "  catalog   $custom:::$default:::JKT-M-NAV  +1  at 2026-03-05T10:00:00Z  "
        "(restock swap:ret_100:l1)\n"
    ) in out
    assert "  profile   m***@example.org  as of 2026-03-01T09:00:00Z; unappend " in out
    assert 'append swap_open_returns ["SW-2"]' in out
    assert "swap_last_return_status=completed" in out
    assert "returns ret_3\n  REJECTED  invalid_email: customer_email is not a valid" in out
    # The default mapping uses no field that may be null where null fails (see the next test).
    assert not [line for line in out.splitlines() if line.startswith("note: ")]
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("Summary: 3 source record(s); 20 events (")
    assert "Refunded Order 3, Return Inspected 2" in summary
    assert "; 2 profile updates; 3 catalog updates; 1 rejected (invalid_email 1)" in summary
    assert "maria" not in out.lower()


@pytest.mark.slow
def test_show_emails() -> None:
    result = preview("--show-emails", "-", stdin=singer_lines(a_return()))
    assert "profile   maria.lopez@example.org  as of" in result.stdout


@pytest.mark.slow
def test_plain_records_as_a_json_array_or_lines(tmp_path: Path) -> None:
    array = tmp_path / "returns.json"
    array.write_text(encoder.encode(samples()).decode())
    by_array = preview("--stream", "returns", str(array))
    jsonl = tmp_path / "returns.jsonl"
    jsonl.write_text("".join(encoder.encode(r).decode() + "\n\n" for r in samples()))
    by_lines = preview(str(jsonl))  # one source stream in the mapping: --stream is optional
    assert by_array.returncode == by_lines.returncode == 0
    assert by_array.stdout == by_lines.stdout
    assert by_array.stdout == preview("-", stdin=singer_lines(*samples())).stdout


@pytest.mark.slow
def test_json_format_prints_the_output_records() -> None:
    records = samples()
    result = preview("--format", "json", "--show-emails", "-", stdin=singer_lines(*records))
    assert result.returncode == 0, result.stderr
    printed = [json.loads(line, parse_float=Decimal) for line in result.stdout.splitlines()]
    engine = MappingEngine.from_files([str(DEFAULT_MAPPING)])
    expected = [
        (stream, record) for r in records for stream, record in engine.map_record("returns", r)
    ]

    def timeless(record: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in record.items() if key != "occurred_at"}

    assert [(p["stream"], timeless(p["record"])) for p in printed] == [
        (stream, timeless(record)) for stream, record in expected
    ]
    assert any(p["record"].get("reason") == "invalid_email" for p in printed)
    masked = preview("--format", "json", "-", stdin=singer_lines(*records)).stdout
    assert "maria" not in masked.lower()
    assert '"email":"m***@example.org"' in masked
    assert masked.count("\n") == result.stdout.count("\n")


SAMPLE = DEFAULT_MAPPING.parent / "samples" / "returns.jsonl"


@pytest.mark.slow
def test_the_same_input_gives_the_same_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exception records carry the source's update time, not the clock's: a snapshot holds."""
    broken = tmp_path / "broken.yml"
    broken.write_text(
        DEFAULT_MAPPING.read_text()
        .replace(
            "include:\n  - definitions/", f"include:\n  - {DEFAULT_MAPPING.parent}/definitions/"
        )
        .replace("schema: schemas/", f"schema: {DEFAULT_MAPPING.parent}/schemas/")
        .replace(
            '              ReturnStatus: "{{ record.return_status }}"\n              PortalLink',
            '              ReturnStatus: "{{ record.return_status }}"\n'
            '              Share: "{{ record.total / 0 }}"\n              PortalLink',
        )
    )
    for format_ in ("text", "json"):  # events, profile updates, rejections and failures
        args = ["--mapping", str(broken), "--format", format_, str(SAMPLE)]
        first, second = in_process(capsys, *args), in_process(capsys, *args)
        assert first[0] == 0, first[2]
        assert first == second
    _, json_out, _ = in_process(capsys, "--mapping", str(broken), "--format", "json", str(SAMPLE))
    errors = [
        json.loads(line)["record"] for line in json_out.splitlines() if "mapping_error" in line
    ]
    assert errors
    assert all(e["occurred_at"] == e["source_updated_at"] for e in errors)


@pytest.mark.slow
def test_fields_that_may_be_null_come_first_with_their_line_and_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(DEFAULT_MAPPING.parent / "definitions", tmp_path / "definitions")
    shutil.copytree(DEFAULT_MAPPING.parent / "schemas", tmp_path / "schemas")
    careless = tmp_path / DEFAULT_MAPPING.name
    guarded = "{{ '$custom:::$default:::' ~ item.sku if item.sku is not none else none }}"
    text = DEFAULT_MAPPING.read_text()
    assert guarded in text
    careless.write_text(text.replace(guarded, "$custom:::$default:::{{ item.sku }}"))
    one = tmp_path / "one.jsonl"
    one.write_text(singer_lines(a_return()))
    status, out, err = in_process(capsys, "--mapping", str(careless), str(one))
    assert status == 0, err
    line = next(
        n
        for n, row in enumerate(careless.read_text().splitlines(), 1)
        if ":::{{ item.sku }}" in row
    )
    note = (
        f"note: {careless}:{line}: rule 'item_restocked', field 'variant_id': item.sku may be null "
        "and is written into text, which fails on null: write {{ item.sku or '' }}\n"
    )
    assert out.startswith(note)


@pytest.mark.slow
def test_check_exits_non_zero_on_a_mapping_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = in_process(capsys, "--mapping", str(DEFAULT_MAPPING), "--check", str(SAMPLE))
    assert status == 0, err  # rejections of the data are not mapping errors
    assert "invalid_email" in out
    broken = tmp_path / "broken.jsonl"
    broken.write_text(
        singer_lines(with_items(a_return(), {"sku": None}, {}), a_return(return_id="r2"))
    )
    status, out, err = in_process(capsys, "--mapping", str(DEFAULT_MAPPING), "--check", str(broken))
    assert status == 3
    # A restocked line without a SKU names no catalog variant: held (invalid_output).
    assert (
        err == "swap-transforms-preview: mapping errors: rule 'item_restocked': invalid_output x1\n"
    )
    assert "REJECTED  rule 'item_restocked': invalid_output" in out
    status, _, _ = in_process(capsys, "--mapping", str(DEFAULT_MAPPING), str(broken))
    assert status == 0


@pytest.mark.slow
def test_the_mapping_comes_from_the_option_or_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWAP_TRANSFORMS_MAPPING_FILES", json.dumps([str(DEFAULT_MAPPING)]))
    by_variable = in_process(capsys, str(SAMPLE))
    assert by_variable[0] == 0, by_variable[2]
    assert by_variable == in_process(capsys, "--mapping", str(DEFAULT_MAPPING), str(SAMPLE))
    monkeypatch.delenv("SWAP_TRANSFORMS_MAPPING_FILES")
    status, _, err = in_process(capsys, str(SAMPLE))
    assert status == 2
    assert "--mapping FILE (or set SWAP_TRANSFORMS_MAPPING_FILES)" in err


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The preview's main in this process (no interpreter start-up): status, stdout, stderr."""
    status = preview_main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.slow
def test_bad_mapping_and_bad_input(write_mapping: MappingWriter, tmp_path: Path) -> None:
    broken = write_mapping("version: 1\noutputs: {}\nstreams: {returns: {key: id, rules: []}}\n")
    result = subprocess.run(
        [str(PREVIEW), "--mapping", str(broken), "-"],
        input="",
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 2
    assert f"{broken}:1: exceptions stream 'integration_exceptions' is not declared" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    garbled = singer_lines(a_return()) + '{"customer_email": "maria@example.org",\n'
    result = preview("-", stdin=garbled)
    assert result.returncode == 1
    assert result.stderr == "swap-transforms-preview: line 4 is not valid JSON\n"
    result = preview(str(tmp_path / "absent.json"))
    assert result.returncode == 1
    assert "absent.json" in result.stderr
