"""Editors help analysts: schemas for mapping, definitions, test and contract files.

What an editor with the YAML language server does with these schemas is what jsonschema does
here with the loaded file (merges resolved): completion comes from the same properties.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from swap_transforms import editor_schema
from tests.support import DEFAULT_MAPPING, TRANSFORMS

MODELINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$")


def validator(path: Path) -> Any:
    schema = json.loads(path.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def problems(path: Path, data: Any) -> list[tuple[str, str]]:
    return [
        (".".join(map(str, error.absolute_path)), error.message)
        for error in validator(path).iter_errors(data)
    ]


def test_the_committed_editor_schemas_are_generated_from_the_contract() -> None:
    mapping, definitions = editor_schema.editor_schemas()
    assert editor_schema.EDITOR_SCHEMA.read_text() == editor_schema.rendered(mapping), (
        "run .venv/bin/python -m swap_transforms.editor_schema"
    )
    assert editor_schema.DEFINITIONS_SCHEMA.read_text() == editor_schema.rendered(definitions)


@pytest.mark.parametrize(
    "path",
    [
        DEFAULT_MAPPING,
        TRANSFORMS / "definitions" / "swap_returns.yml",
        TRANSFORMS / "swap_to_klaviyo.tests.yml",
        TRANSFORMS / "contract.yml",
    ],
    ids=lambda p: p.name,
)
def test_each_file_names_its_schema_and_passes_it(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    match = MODELINE.match(first)
    assert match, f"{path} does not start with a yaml-language-server line"
    schema = (path.parent / match.group(1)).resolve()
    assert schema.is_file(), schema
    assert problems(schema, yaml.safe_load(path.read_text())) == []


def test_the_mapping_schema_knows_the_targets_fields() -> None:
    mapping = yaml.safe_load(DEFAULT_MAPPING.read_text())
    rules = mapping["streams"]["returns"]["rules"]
    started = rules[0]["emit"]["klaviyo_events"]
    broken = copy.deepcopy(mapping)
    wrong = broken["streams"]["returns"]["rules"][0]["emit"]["klaviyo_events"]
    wrong["value"] = "abc"  # a literal of the wrong type
    wrong["metirc"] = "Return Started"  # a typo
    del broken["streams"]["returns"]["rules"][1]["emit"]["klaviyo_events"]["time"]
    assert sorted(problems(editor_schema.EDITOR_SCHEMA, broken)) == [
        (
            "streams.returns.rules.0.emit.klaviyo_events",
            "Additional properties are not allowed ('metirc' was unexpected)",
        ),
        (
            "streams.returns.rules.0.emit.klaviyo_events.value",
            "'abc' is not valid under any of the given schemas",
        ),
        ("streams.returns.rules.1.emit.klaviyo_events", "'time' is a required property"),
    ]
    # Completion offers the contract's fields, with their descriptions.
    schema = json.loads(editor_schema.EDITOR_SCHEMA.read_text())
    events = schema["$defs"]["output_klaviyo_events"]
    assert set(started) <= set(events["properties"])
    assert {"metric", "unique_id", "profile", "time", "properties"} <= set(events["required"])
    assert "Klaviyo metric name" in events["properties"]["metric"]["description"]
    profile = schema["$defs"]["output_klaviyo_profile_updates"]["properties"]["properties"]
    contract = yaml.safe_load((TRANSFORMS / "contract.yml").read_text())
    assert set(profile["anyOf"][0]["properties"]) == set(contract["profile_properties"])
