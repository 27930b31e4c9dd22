"""Checks against the source schema: typos refused with "did you mean", null uses reported.

The mapper checks a mapping against a source stream's schema when the stream's SCHEMA message
arrives (before its first RECORD is mapped); preview and tests check it at load against the
tap's schemas shipped in transforms/sources/, which must be what the tap discovers.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from swap_transforms.engine import MappingEngine
from swap_transforms.errors import MappingFileError
from swap_transforms.mapper import SwapTransformsMapper
from swap_transforms.source_check import load_sources
from tests.support import (
    DEFAULT_MAPPING,
    SOURCE_SCHEMAS,
    MappingWriter,
    a_return,
    clock,
    lines,
    record,
    schema,
    started,
)

SOURCES = load_sources(SOURCE_SCHEMAS)
#: Output streams of the contract, for small mappings.
OUTPUTS = """\
version: 1
include: [definitions/swap_returns.yml]
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
"""


def event(**fields: str) -> str:
    """A rule body emitting one event; fields given replace the defaults."""
    values = {
        "unique_id": '"swap:{{ record.return_id }}"',
        "metric": "Return Started",
        "profile": '"{{ profile }}"',
        "time": '"{{ record.date_updated | iso }}"',
        "properties": "{}",
        **fields,
    }
    body = "".join(f"            {key}: {value}\n" for key, value in values.items())
    return "        emit:\n          klaviyo_events:\n" + body


def line_of(path: Path, needle: str) -> int:
    """The line of the mapping file that holds `needle`."""
    lines_ = path.read_text().splitlines()
    return next(number for number, line in enumerate(lines_, 1) if needle in line)


@pytest.fixture
def load(write_mapping: MappingWriter, tmp_path: Path) -> Any:
    (tmp_path / "definitions").mkdir()
    shipped = DEFAULT_MAPPING.parent / "definitions" / "swap_returns.yml"
    (tmp_path / "definitions" / "swap_returns.yml").write_text(shipped.read_text())

    def build(rule: str) -> tuple[Path, MappingEngine | MappingFileError]:
        path = write_mapping(OUTPUTS + rule)
        try:
            return path, MappingEngine.from_files([str(path)], clock=clock, sources=SOURCES)
        except MappingFileError as error:
            return path, error

    return build


@pytest.mark.parametrize(
    ("rule", "needle", "message"),
    [
        (
            event(value_currency='"{{ record.customer_curency }}"'),
            "customer_curency",
            "rule 'started', field 'value_currency': unknown field 'customer_curency': 'record' "
            "has no such field in the source schema (did you mean 'customer_currency'?)",
        ),
        (
            '        for_each: "item in items"\n' + event(metric='"{{ item.skuu }}"'),
            "item.skuu",
            "rule 'started', field 'metric': unknown field 'skuu': 'item' has no such field in "
            "the source schema (did you mean 'sku'?)",
        ),
        (
            event(properties="{SKUs: \"{{ items | field_values('skuu') }}\"}"),
            "field_values",
            "rule 'started', field 'properties.SKUs': unknown field 'skuu': the items have no "
            "such field in the source schema (did you mean 'sku'?)",
        ),
        (
            event(properties='{Ship: "{{ record.return_shipments[0].carier_id }}"}'),
            "carier_id",
            "rule 'started', field 'properties.Ship': unknown field 'carier_id': this object has "
            "no such field in the source schema (did you mean 'carrier_id'?)",
        ),
    ],
    ids=["record field", "item field", "filter attribute", "nested field"],
)
def test_a_field_the_source_does_not_have_is_refused_at_load(
    load: Any, rule: str, needle: str, message: str
) -> None:
    path, error = load(rule)
    assert isinstance(error, MappingFileError)
    line = line_of(path, needle)
    assert [str(problem) for problem in error.problems] == [f"{path}:{line}: {message}"]


@pytest.mark.parametrize(
    ("properties", "warning"),
    [
        (
            '{First: "{{ record.customer_name.split() | first }}"}',
            "record.customer_name may be null and has its method 'split' called, which fails on "
            "null: write {{ (record.customer_name or '').split() }}",
        ),
        (
            '{Twice: "{{ record.total * 2 }}"}',
            "record.total may be null and is used in arithmetic, which fails on null",
        ),
        (
            '{Label: "RMA {{ record.rma_number }}"}',
            "record.rma_number may be null and is written into text, which fails on null: write "
            "{{ record.rma_number or '' }}",
        ),
    ],
    ids=["method", "arithmetic", "text"],
)
def test_a_field_that_may_be_null_is_reported_with_its_fix(
    load: Any, properties: str, warning: str
) -> None:
    path, engine = load(event(properties=properties))
    assert isinstance(engine, MappingEngine)
    [found] = engine.source_warnings["returns"]
    line = line_of(path, "            properties:")
    assert str(found).startswith(f"{path}:{line}: rule 'started', field 'properties.")
    assert str(found).endswith(warning)


@pytest.mark.parametrize(
    "properties",
    [
        "{First: \"{{ (record.customer_name or '').split() }}\"}",
        '{First: "{{ record.customer_name and record.customer_name.split() }}"}',
        '{First: "{{ record.customer_name.split() if record.customer_name else [] }}"}',
        '{Twice: "{{ record.total * 2 if record.total is not none else none }}"}',
        '{Label: "RMA {{ record.return_id }}"}',  # required, not null in the schema
        "{Name: \"{{ record.customer_name | default('x', true) | upper }}\"}",
    ],
)
def test_guarded_uses_are_not_reported(load: Any, properties: str) -> None:
    _, engine = load(event(properties=properties))
    assert isinstance(engine, MappingEngine)
    assert engine.source_warnings["returns"] == []


def test_a_nullable_field_as_a_whole_output_field_that_takes_no_null(load: Any) -> None:
    path, engine = load(event(time='"{{ record.submission_date | iso }}"'))
    assert isinstance(engine, MappingEngine)
    line = line_of(path, "time:")
    assert [str(w) for w in engine.source_warnings["returns"]] == [
        f"{path}:{line}: rule 'started', field 'time': field 'time' does not take null, and "
        "record.submission_date may be null: write {{ record.submission_date or <a fallback> }}"
    ]


def test_literals_are_checked_against_the_output_schema(load: Any) -> None:
    path, error = load(event(value='"abc"', metric="42"))
    assert isinstance(error, MappingFileError)
    metric, value = line_of(path, "metric:"), line_of(path, "value:")
    assert [str(problem) for problem in error.problems] == [
        f"{path}:{metric}: rule 'started', field 'metric': the literal 42 does not fit the "
        "output: 42 is not of type 'string'",
        f"{path}:{value}: rule 'started', field 'value': the literal \"abc\" does not fit the "
        "output: 'abc' is not of type 'number', 'null'",
    ]


def test_a_field_a_closed_output_does_not_have_is_refused(load: Any) -> None:
    path, error = load(event(metrc="Return Started"))
    assert isinstance(error, MappingFileError)
    assert [str(problem) for problem in error.problems] == [
        f"{path}:{line_of(path, 'metrc:')}: rule 'started', field 'metrc': 'klaviyo_events' has "
        "no field 'metrc' (did you mean 'metric'?)"
    ]


@pytest.mark.slow
def test_the_default_mapping_loads_against_the_taps_schemas() -> None:
    engine = MappingEngine.from_files([str(DEFAULT_MAPPING)], sources=SOURCES)
    for warning in engine.source_warnings["returns"]:
        assert warning.file == "transforms/swap_to_klaviyo.yml" or DEFAULT_MAPPING.samefile(
            warning.file
        )


def test_a_field_left_out_reads_as_null_once_the_schema_is_known(
    default_engine: MappingEngine,
) -> None:
    record = a_return()
    del record["portal_quick_link"], record["customer_name"]
    outputs = default_engine.map_record("returns", record)
    assert [o for s, o in outputs if s == "integration_exceptions"] == []
    assert "portal_quick_link" not in record  # the input is not changed


def test_the_mapper_refuses_a_typo_when_the_schema_arrives(
    write_mapping: MappingWriter,
    tmp_path: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    (tmp_path / "definitions").mkdir()
    shipped = DEFAULT_MAPPING.parent / "definitions" / "swap_returns.yml"
    (tmp_path / "definitions" / "swap_returns.yml").write_text(shipped.read_text())
    path = write_mapping(OUTPUTS + event(value_currency='"{{ record.customer_curency }}"'))
    mapper = SwapTransformsMapper(config={"mapping_files": [str(path)]})
    text = lines(
        {**schema("returns"), "schema": SOURCES["returns"]},
        record("returns", a_return()),
    )
    capsysbinary.readouterr()
    with pytest.raises(MappingFileError, match="did you mean 'customer_currency'"):
        mapper.listen(io.StringIO(text))
    out = capsysbinary.readouterr().out.decode()
    assert '"RECORD"' not in out  # refused before the first record was mapped


@pytest.mark.slow
def test_the_executable_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    mapping = tmp_path / "typo.yml"
    text = DEFAULT_MAPPING.read_text().replace(
        'value_currency: "{{ record.customer_currency }}"',
        'value_currency: "{{ record.customer_currency_code }}"',
    )
    mapping.write_text(text)
    for folder in ("schemas", "definitions"):
        (tmp_path / folder).mkdir()
        for source in (DEFAULT_MAPPING.parent / folder).glob("*.*"):
            (tmp_path / folder / source.name).write_text(source.read_text())
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"mapping_files": [str(mapping)]}))
    messages = lines(
        {**schema("returns"), "schema": SOURCES["returns"]}, record("returns", a_return())
    )
    result = subprocess.run(
        [str(Path(sys.executable).parent / "swap-transforms"), "--config", str(config)],
        input=messages,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 2
    assert "the mapping cannot be used" in result.stderr
    assert f"{mapping}:" in result.stderr
    assert "did you mean 'customer_currency'" in result.stderr
    assert "Traceback" not in result.stderr
    assert started([json.loads(line) for line in result.stdout.splitlines()]) == []
