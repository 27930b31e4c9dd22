"""The quick check of output records: True only for records the full validator accepts."""

from __future__ import annotations

import copy
import json
import random
from collections import OrderedDict
from decimal import Decimal
from typing import Any

import fastjsonschema
import pytest
from markupsafe import Markup

from swap_transforms.engine import MappingEngine
from swap_transforms.schema_check import compile_quick_check, validator_regexes
from swap_transforms.values import check_native
from tests.support import TRANSFORMS

SCHEMAS = sorted((TRANSFORMS / "schemas").glob("*.json"))

ODD_VALUES: list[Any] = [
    None,
    "",
    "x",
    "x" * 300,
    "2026-01-01T00:00:00Z",
    "2026-13-01T00:00:00Z",
    "2026-01-01 00:00:00",
    "$custom:::$default:::SKU",
    "$custom:::$default:::",
    Markup("m"),
    0,
    7,
    -1,
    True,
    False,
    1.5,
    float("nan"),
    Decimal("2.50"),
    Decimal("NaN"),
    [],
    ["a"],
    [1],
    ("t",),
    {},
    {"email": "a@example.com"},
    {"email": ""},
    {"email": None},
    {"phone_number": "+1"},
    {"list": []},
    {"list": "x"},
    OrderedDict(email="a@example.com"),
    b"bytes",
]


def accepts(validate: Any, record: Any) -> bool:
    try:
        validate(copy.deepcopy(record))
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


def sends(record: Any) -> bool:
    """Whether the engine's JSON check lets the record reach the schema checks at all."""
    try:
        check_native(record)
    except (TypeError, ValueError):
        return False
    return True


def mutate(record: Any, rng: random.Random) -> Any:
    """A copy of `record` with one member somewhere replaced, removed or added."""
    changed = copy.deepcopy(record)
    holder: Any = changed
    while True:
        if isinstance(holder, dict) and holder:
            key = rng.choice(sorted(holder, key=str))
            if isinstance(holder[key], (dict, list)) and holder[key] and rng.random() < 0.5:
                holder = holder[key]
                continue
            roll = rng.random()
            if roll < 0.2:
                del holder[key]
            elif roll < 0.3:
                holder[f"extra_{rng.randint(0, 9)}"] = rng.choice(ODD_VALUES)
            else:
                holder[key] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif isinstance(holder, list) and holder:
            index = rng.randrange(len(holder))
            if isinstance(holder[index], (dict, list)) and holder[index] and rng.random() < 0.5:
                holder = holder[index]
                continue
            holder[index] = copy.deepcopy(rng.choice(ODD_VALUES))
        return changed


@pytest.fixture(scope="module")
def outputs_by_stream(emulator_returns: list[dict[str, Any]]) -> dict[str, list[Any]]:
    engine = MappingEngine.from_files([str(TRANSFORMS / "swap_to_klaviyo.yml")])
    found: dict[str, list[Any]] = {}
    for record in emulator_returns:
        for stream, output in engine.map_record("returns", record):
            found.setdefault(stream, []).append(output)
    return found


@pytest.mark.parametrize("path", SCHEMAS, ids=[path.stem for path in SCHEMAS])
@pytest.mark.slow
def test_quick_check_accepts_only_what_the_validator_accepts(
    path: Any, outputs_by_stream: dict[str, list[Any]]
) -> None:
    schema = json.loads(path.read_text())
    validate = fastjsonschema.compile(schema)
    quick = compile_quick_check(schema, validator_regexes(validate))
    assert quick is not None, "the mapper's schemas use only keywords the quick check knows"
    samples = outputs_by_stream[path.stem]
    # Real outputs: the quick check vouches for (nearly) all of them.
    vouched = [sample for sample in samples if quick(sample)]
    assert len(vouched) >= 0.95 * len(samples)
    assert all(accepts(validate, sample) for sample in vouched)
    # Broken ones: whatever it vouches for, the validator accepts; the rest it leaves to it.
    rng = random.Random(path.stem)
    verdicts = set()
    for _ in range(4000):
        broken = mutate(rng.choice(samples), rng)
        if not sends(broken):
            continue  # the engine refuses it before either check (check_native)
        valid = accepts(validate, broken)
        if quick(broken):
            assert valid, broken
        verdicts.add(valid)
    assert verdicts == {True, False}


SYNTHETIC = {
    "type": "object",
    "required": ["n", "tags"],
    "properties": {
        "n": {"type": "integer"},
        "x": {"type": ["number", "null"]},
        "flag": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}},
        "code": {"type": "string", "pattern": "^[A-Z]{2}$", "minLength": 2},
        "at": {"type": "string", "format": "date-time"},
        "map": {"type": "object", "additionalProperties": {"type": "array"}},
        "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    },
}


def test_quick_check_on_every_keyword_it_knows() -> None:
    validate = fastjsonschema.compile(SYNTHETIC)
    quick = compile_quick_check(SYNTHETIC, validator_regexes(validate))
    assert quick is not None
    good = {
        "n": 1,
        "x": Decimal("1.5"),
        "flag": False,
        "tags": ["a", "bcd"],
        "code": "GB",
        "at": "2026-01-01T10:00:00.123Z",
        "map": {"a": [], "b": [1]},
        "either": "s",
    }
    assert quick(good)
    assert accepts(validate, good)
    rng = random.Random(3)
    verdicts = set()
    for _ in range(6000):
        broken = mutate(good, rng)
        valid = accepts(validate, broken)
        if quick(broken):
            assert valid, broken
        verdicts.add((valid, quick(broken)))
    assert verdicts == {(True, True), (True, False), (False, False)}


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"enum": [1, 2]}}},
        {"type": "object", "minProperties": 1},
        {"type": "string", "format": "email"},
        {"type": "object", "properties": {"a": {"type": "string", "default": "x"}}},
        {"allOf": [{"type": "string"}]},
        {"type": "object", "patternProperties": {"^a": {"type": "string"}}},
        {"$ref": "#/definitions/a", "definitions": {"a": {"type": "string"}}},
        {"type": ["string", "decimal"]},
        {"type": "array", "items": [{"type": "string"}]},
    ],
)
def test_no_quick_check_for_other_keywords(schema: dict[str, Any]) -> None:
    try:
        regexes = validator_regexes(fastjsonschema.compile(schema))
    except fastjsonschema.JsonSchemaDefinitionException:
        regexes = {}  # not even a schema the validator takes
    assert compile_quick_check(schema, regexes) is None
