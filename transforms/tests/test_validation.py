"""Start-up validation: every problem names the file, the line, the rule or field, and what."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from swap_transforms.engine import MappingEngine
from swap_transforms.errors import MappingFileError
from tests.support import MappingWriter

HEADER = """\
version: 1
outputs:
  klaviyo_events: {key_properties: [unique_id], schema: schemas/klaviyo_events.json}
  integration_exceptions:
    key_properties: [exception_id]
    schema: schemas/integration_exceptions.json
"""

EVENT = """\
        emit:
          klaviyo_events:
            unique_id: "swap:{{ record.return_id }}:started"
            metric: Return Started
            profile: {email: "{{ record.customer_email }}"}
            time: "{{ record.submission_date }}"
            properties: {}
"""


def problems(path: Path) -> list[str]:
    with pytest.raises(MappingFileError) as error:
        MappingEngine.from_files([str(path)])
    return str(error.value).splitlines()


def line_of(path: Path, needle: str, occurrence: int = 1) -> int:
    lines = [n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    return lines[occurrence - 1]


def rule(name: str, extra: str = "", event: str = EVENT) -> str:
    return f"      - name: {name}\n{extra}{event}"


def mapping(*rules: str, definitions: str = "") -> str:
    text = HEADER + definitions + "streams:\n  returns:\n    key: return_id\n    rules:\n"
    return text + "".join(rules)


def test_a_template_syntax_error_names_file_line_rule_and_field(
    write_mapping: MappingWriter,
) -> None:
    event = EVENT + '            value: "{{ record.total } }}"\n'
    path = write_mapping(mapping(rule("return_started", event=event)))
    assert problems(path) == [
        f"{path}:{line_of(path, 'value:')}: rule 'return_started', field 'value': unexpected '}}'"
    ]


def test_errors_inside_multi_line_expressions_point_at_their_line(
    write_mapping: MappingWriter,
) -> None:
    definitions = (
        "definitions:\n"
        "  literal: |\n"
        "    'open' if record.x\n"
        "    else 'closed' if reocrd.x\n"
        "    else 'other'\n"
        "  folded: >-\n"
        "    'open' if record.x\n"
        "    else recrod.y\n"
    )
    path = write_mapping(mapping(rule("r"), definitions=definitions))
    assert problems(path) == [
        # A literal block keeps its lines: the error is on the line of the typo.
        f"{path}:{line_of(path, 'reocrd')}: definition 'literal': unknown name 'reocrd' "
        "(did you mean 'record'?)",
        # A folded block is one line for Jinja: the error is on the block's first line.
        f"{path}:{line_of(path, 'folded') + 1}: definition 'folded': unknown name 'recrod' "
        "(did you mean 'record'?)",
    ]


def test_unknown_names_filters_and_tests(write_mapping: MappingWriter) -> None:
    event = EVENT.replace(
        "properties: {}",
        'properties: {A: "{{ recrod.x }}", B: "{{ record | money_fmt }}", '
        'C: "{{ record is valid_emial }}"}',
    )
    path = write_mapping(mapping(rule("r", event=event)))
    line = line_of(path, "properties: {A")
    assert problems(path) == [
        f"{path}:{line}: rule 'r', field 'properties.A': unknown name 'recrod' "
        "(did you mean 'record'?)",
        f"{path}:{line}: rule 'r', field 'properties.B': unknown filter 'money_fmt' "
        "(did you mean 'money'?)",
        f"{path}:{line}: rule 'r', field 'properties.C': unknown test 'valid_emial' "
        "(did you mean 'valid_email'?)",
    ]


def test_yaml_syntax_errors_have_a_line(write_mapping: MappingWriter) -> None:
    path = write_mapping(HEADER + "streams:\n  returns: {key: [unclosed\n")
    [problem] = problems(path)
    assert problem.startswith(f"{path}:")
    assert "YAML syntax error" in problem
    line = int(problem.split(":")[1])
    assert line >= line_of(path, "unclosed")


def test_duplicate_yaml_keys_are_refused(write_mapping: MappingWriter) -> None:
    event = EVENT + "            metric: Again\n"
    path = write_mapping(mapping(rule("r", event=event)))
    first, second = line_of(path, "metric:"), line_of(path, "metric:", 2)
    assert problems(path) == [f"{path}:{second}: duplicate key 'metric' (first at line {first})"]


def test_missing_files(write_mapping: MappingWriter, tmp_path: Path) -> None:
    absent = tmp_path / "absent.yml"
    assert problems(absent) == [f"{absent}: file not found"]
    text = HEADER.replace("schemas/klaviyo_events.json", "schemas/nope.json")
    path = write_mapping("include: [defs/missing.yml]\n" + mapping(rule("r")).replace(HEADER, text))
    assert problems(path) == [
        f"{path}:1: include: included file 'defs/missing.yml' not found",
        f"{path}:{line_of(path, 'nope.json')}: output 'klaviyo_events': "
        "schema file 'schemas/nope.json' not found",
    ]


def test_include_cycles_and_bad_included_files(
    write_mapping: MappingWriter, tmp_path: Path
) -> None:
    (tmp_path / "a.yml").write_text("version: 1\ninclude: [b.yml]\ndefinitions: {a: '1'}\n")
    (tmp_path / "b.yml").write_text("version: 1\ninclude: [a.yml]\ndefinitions: {b: '2'}\n")
    (tmp_path / "c.yml").write_text("version: 1\ndefinitions: {c: '3'}\nstreams: {}\n")
    path = write_mapping("include: [a.yml, c.yml]\n" + mapping(rule("r")))
    assert problems(path) == [
        f"{tmp_path / 'b.yml'}:2: include: 'a.yml' includes itself (include cycle)",
        f"{tmp_path / 'c.yml'}:1: Additional properties are not allowed ('streams' was unexpected)",
    ]


def test_schema_files_must_be_valid_json_schemas(
    write_mapping: MappingWriter, tmp_path: Path
) -> None:
    (tmp_path / "schemas" / "broken.json").write_text("{not json")
    (tmp_path / "schemas" / "wrong.json").write_text(json.dumps({"type": 5}))
    outputs = (
        "  broken: {key_properties: [id], schema: schemas/broken.json}\n"
        "  wrong: {key_properties: [id], schema: schemas/wrong.json}\n"
        "  no_schema: {key_properties: [id]}\n"
        "  bad_key: {key_properties: [nope], schema: schemas/klaviyo_events.json}\n"
    )
    path = write_mapping(mapping(rule("r")).replace("streams:\n", outputs + "streams:\n"))
    found = problems(path)
    assert found[0] == (
        f"{path}:{line_of(path, 'no_schema')}: outputs.no_schema: 'schema' is a required property"
    )
    assert len(found) == 1  # the file's shape is checked first; nothing else is looked at yet
    path = write_mapping(
        mapping(rule("r")).replace("streams:\n", outputs.replace("  no_schema", "#") + "streams:\n")
    )
    found = problems(path)
    assert found[0].startswith(
        f"{path}:{line_of(path, 'broken.json')}: output 'broken': "
        "schema file 'schemas/broken.json' is not JSON: "
    )
    assert found[1].startswith(
        f"{path}:{line_of(path, 'wrong.json')}: output 'wrong': "
        "'schemas/wrong.json' is not a valid JSON Schema: 5 is not valid"
    )
    assert found[2] == (
        f"{path}:{line_of(path, 'bad_key')}: output 'bad_key': "
        "key properties not in its schema: nope"
    )


def test_emits_must_name_declared_outputs_and_set_required_fields(
    write_mapping: MappingWriter,
) -> None:
    unknown = EVENT.replace("klaviyo_events:", "klaviyo_event:")
    incomplete = EVENT.replace('            time: "{{ record.submission_date }}"\n', "")
    path = write_mapping(mapping(rule("typo", event=unknown), rule("partial", event=incomplete)))
    assert problems(path) == [
        f"{path}:{line_of(path, 'klaviyo_event:')}: rule 'typo': unknown output stream "
        "'klaviyo_event' (declared: integration_exceptions, klaviyo_events)",
        f"{path}:{line_of(path, 'klaviyo_events:', 2)}: rule 'partial': "
        "required field(s) of 'klaviyo_events' not set: time",
    ]


def test_duplicate_rule_names(write_mapping: MappingWriter) -> None:
    path = write_mapping(mapping(rule("same"), rule("other"), rule("same")))
    first, third = line_of(path, "name: same"), line_of(path, "name: same", 2)
    assert problems(path) == [
        f"{path}:{third}: rule 'same': duplicate rule name 'same' (first at line {first})"
    ]


def test_structure_errors_name_the_rule(write_mapping: MappingWriter) -> None:
    bad = rule("typo").replace("        emit:", "        emitt:")
    loop = rule("loop", extra='        for_each: "items"\n')
    path = write_mapping(mapping(bad, loop))
    assert problems(path) == [
        f"{path}:{line_of(path, 'name: typo')}: rule 'typo': 'emit' is a required property",
        f"{path}:{line_of(path, 'name: typo')}: rule 'typo': "
        "Additional properties are not allowed ('emitt' was unexpected)",
        f"{path}:{line_of(path, 'for_each')}: rule 'loop', for_each: "
        "for_each must read '<name> in <expression>', e.g. 'item in items'",
    ]


def test_definition_problems(write_mapping: MappingWriter, tmp_path: Path) -> None:
    (tmp_path / "shared.yml").write_text("version: 1\ndefinitions:\n  email: 'record.email'\n")
    definitions = (
        "definitions:\n"
        "  a: b + 1\n"
        "  b: a + 1\n"
        "  email: record.customer_email\n"
        "  range: '1'\n"
        "  statement: '{% if x %}'\n"
    )
    path = write_mapping("include: [shared.yml]\n" + mapping(rule("r"), definitions=definitions))
    assert problems(path) == [
        f"{path}:{line_of(path, 'a: b')}: definition 'a': definitions refer to each other: "
        "a -> b -> a",
        f"{path}:{line_of(path, 'email: record')}: definition 'email': "
        f"'email' is already defined at {tmp_path / 'shared.yml'}:3",
        f"{path}:{line_of(path, 'range:')}: definition 'range': 'range' is a reserved name",
        f"{path}:{line_of(path, 'statement:')}: definition 'statement': unexpected '%'",
    ]


def test_values_allow_no_statements(write_mapping: MappingWriter) -> None:
    event = EVENT.replace("properties: {}", 'properties: {A: "{% if x %}y{% endif %}"}')
    path = write_mapping(mapping(rule("r", event=event)))
    assert problems(path) == [
        f"{path}:{line_of(path, 'properties: {A')}: rule 'r', field 'properties.A': "
        "only {{ expressions }} are allowed in values, not {% statements %}"
    ]


def test_the_exceptions_stream_must_be_declared_and_fit(
    write_mapping: MappingWriter, tmp_path: Path
) -> None:
    text = mapping(rule("r"))
    path = write_mapping(
        text.replace("schemas/integration_exceptions.json", "schemas/klaviyo_events.json")
    )
    assert problems(path)[0].startswith(
        f"{path}:{line_of(path, 'integration_exceptions:')}: output 'integration_exceptions': "
        "its schema rejects the exception records the engine writes"
    )
    path = write_mapping("exceptions: rejected\n" + mapping(rule("r")))
    assert problems(path) == [f"{path}:1: exceptions stream 'rejected' is not declared in outputs"]


def test_not_a_mapping(write_mapping: MappingWriter) -> None:
    path = write_mapping("- just\n- a list\n")
    assert problems(path) == [f"{path}:1: the file must be a YAML mapping"]


def test_problems_of_several_files_are_reported_together(
    write_mapping: MappingWriter, tmp_path: Path
) -> None:
    first = write_mapping(mapping(rule("r")).replace("key: return_id", "key: 5"), "first.yml")
    second = tmp_path / "second.yml"
    with pytest.raises(MappingFileError) as error:
        MappingEngine.from_files([str(first), str(second)])
    assert [problem.file for problem in error.value.problems] == [str(first), str(second)]


@pytest.mark.slow
def test_the_executable_exits_2_with_the_problems_and_no_traceback(
    write_mapping: MappingWriter, tmp_path: Path
) -> None:
    event = EVENT + '            value: "{{ record.total } }}"\n'
    path = write_mapping(mapping(rule("return_started", event=event)))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"mapping_files": [str(path)]}))
    executable = Path(sys.executable).parent / "swap-transforms"
    result = subprocess.run(
        [str(executable), "--config", str(config)],
        input="",
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert (
        f"{path}:{line_of(path, 'value:')}: rule 'return_started', field 'value': unexpected '}}'"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
