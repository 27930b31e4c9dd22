"""Loading a mapping file into a checked, compiled program.

Everything that can be known before the first record is checked here, and every problem found is
reported at once with its file and line: the file's structure (against the JSON Schema shipped in
this package), included files, output declarations and their JSON Schemas, every expression
(syntax, names, filters, private attributes), definitions that refer to each other in a cycle,
rule names, emits to undeclared outputs and required output fields that no rule sets.
"""

from __future__ import annotations

import graphlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
from jinja2 import TemplateError, nodes

from swap_transforms import helpers
from swap_transforms.errors import MappingFileError, Problem
from swap_transforms.sandbox import Expression
from swap_transforms.values import (
    BareExpressionValue,
    MappingValue,
    Site,
    ValueCompiler,
    ValueSpec,
    split_for_each,
)
from swap_transforms.yaml_lines import YamlDocument, load_yaml

DEFAULT_EXCEPTIONS_STREAM = "integration_exceptions"
RECORD_NAME = "record"

#: Exception records the engine writes; the declared exceptions schema must accept both shapes.
SAMPLE_EXCEPTIONS: tuple[dict[str, Any], ...] = (
    {
        "exception_id": "0" * 32,
        "source_stream": "returns",
        "source_key": "ret_1",
        "rule": "rule",
        "reason": "mapping_error",
        "detail": "detail",
        "source_updated_at": "2026-01-01T00:00:00Z",
        "occurred_at": "2026-01-01T00:00:00Z",
    },
    {
        "exception_id": "0" * 32,
        "source_stream": "returns",
        "source_key": None,
        "rule": None,
        "reason": "missing_email",
        "detail": None,
        "source_updated_at": None,
        "occurred_at": "2026-01-01T00:00:00Z",
    },
)


@dataclass
class OutputStream:
    """An output stream as the mapping declares it: written with this SCHEMA message."""

    name: str
    key_properties: list[str]
    schema: dict[str, Any]
    schema_file: str
    validate: Callable[[Any], Any]


@dataclass
class Check:
    reason: str
    when: Expression
    detail: ValueSpec | None


@dataclass
class Emit:
    stream: str
    value: MappingValue


@dataclass
class Rule:
    """A rule: per record (or per `for_each` item), `body` gives its outputs or None (`when`)."""

    name: str
    for_each: tuple[str, Expression] | None
    when: Expression | None
    emits: list[Emit]
    body: Expression


@dataclass
class StreamRules:
    """What one mapping file does with one source stream."""

    stream: str
    key: str
    updated_at: str | None
    checks: list[Check]
    first_check: Expression | None
    rules: list[Rule]
    program: MappingProgram


@dataclass
class MappingProgram:
    """A compiled mapping file: its outputs, definitions and per-stream rules."""

    file: str
    exceptions_stream: str
    outputs: dict[str, OutputStream]
    definitions: dict[str, Expression] = field(default_factory=dict)
    names: dict[str, Any] = field(default_factory=dict)
    streams: dict[str, StreamRules] = field(default_factory=dict)


@cache
def _file_validator() -> jsonschema.protocols.Validator:
    text = resources.files("swap_transforms").joinpath("mapping_file.schema.json").read_text()
    schema = json.loads(text)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _structure_problems(doc: YamlDocument, definitions_only: bool) -> list[Problem]:
    validator = _file_validator()
    if definitions_only:
        validator = validator.evolve(schema=validator.schema["$defs"]["definitions_file"])
    if not isinstance(doc.data, dict):
        return [Problem(doc.path, doc.line(()), "", "the file must be a YAML mapping")]
    problems = []
    for error in sorted(validator.iter_errors(doc.data), key=lambda e: list(map(str, e.path))):
        path = tuple(error.absolute_path)
        problems.append(Problem(doc.path, doc.line(path), _where(doc.data, path), _message(error)))
    return problems


def _where(data: Any, path: tuple[Any, ...]) -> str:
    """`streams.returns.rules[3].emit` -> "rule 'return_started'" where the rule has a name."""
    if len(path) >= 4 and path[0] == "streams" and path[2] == "rules":
        try:
            name = data["streams"][path[1]]["rules"][path[3]]["name"]
        except (KeyError, IndexError, TypeError):
            name = None
        rule = f"rule '{name}'" if isinstance(name, str) else f"rules[{path[3]}]"
        rest = ".".join(str(part) for part in path[4:])
        return f"{rule}, {rest}" if rest else rule
    return ".".join(str(part) for part in path)


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "oneOf" and error.path and error.path[0] == "definitions":
        return "a definition is an expression (text) or a {for_each, when, value} mapping"
    if error.validator == "pattern" and error.path and error.path[-1] == "for_each":
        return "for_each must read '<name> in <expression>', e.g. 'item in items'"
    return error.message


def load_program(path: str) -> MappingProgram:
    """Load, check and compile one mapping file; raises `MappingFileError` listing all problems."""
    doc = load_yaml(Path(path), path)
    problems = _structure_problems(doc, definitions_only=False)
    if problems:
        raise MappingFileError(problems)
    data: dict[str, Any] = doc.data
    exceptions_stream = data.get("exceptions", DEFAULT_EXCEPTIONS_STREAM)
    program = MappingProgram(file=path, exceptions_stream=exceptions_stream, outputs={})
    program.names.update(helpers.FUNCTIONS)
    program.names.update(_jinja_globals())
    compiler = ValueCompiler(program.names, problems)

    program.outputs = _load_outputs(doc, problems)
    if exceptions_stream not in program.outputs:
        site = Site(doc, ("exceptions",) if "exceptions" in data else (), "")
        problems.append(
            site.problem(f"exceptions stream '{exceptions_stream}' is not declared in outputs")
        )
    else:
        output = program.outputs[exceptions_stream]
        for sample in SAMPLE_EXCEPTIONS:
            try:
                output.validate(sample)
            except fastjsonschema.JsonSchemaValueException as error:
                site = Site(doc, ("outputs", exceptions_stream), f"output '{exceptions_stream}'")
                problems.append(
                    site.problem(f"its schema rejects the engine's exception records: {error}")
                )
                break

    raw_definitions = _collect_definitions(doc, problems)
    program.definitions = _compile_definitions(raw_definitions, compiler, problems)
    known = frozenset({RECORD_NAME, *raw_definitions})
    for stream, raw in data["streams"].items():
        site = Site(doc, ("streams", stream), f"stream '{stream}'")
        program.streams[stream] = _compile_stream(
            stream, raw, site, program, compiler, known, problems
        )
    if problems:
        raise MappingFileError(problems)
    return program


@cache
def _jinja_globals() -> dict[str, Any]:
    from swap_transforms.sandbox import ENVIRONMENT  # noqa: PLC0415 - one environment per process

    return dict(ENVIRONMENT.globals)


def _load_outputs(doc: YamlDocument, problems: list[Problem]) -> dict[str, OutputStream]:
    outputs: dict[str, OutputStream] = {}
    base = Path(doc.path).parent
    for name, raw in doc.data["outputs"].items():
        site = Site(doc, ("outputs", name, "schema"), f"output '{name}'")
        schema_file = raw["schema"]
        try:
            schema = json.loads((base / schema_file).read_text(encoding="utf-8"))
        except FileNotFoundError:
            problems.append(site.problem(f"schema file '{schema_file}' not found"))
            continue
        except (OSError, ValueError) as error:
            problems.append(site.problem(f"schema file '{schema_file}' is not JSON: {error}"))
            continue
        try:
            if not isinstance(schema, dict):
                raise jsonschema.SchemaError("a schema must be a JSON object")  # noqa: TRY301
            jsonschema.validators.validator_for(schema).check_schema(schema)
            validate = fastjsonschema.compile(schema)
        except (jsonschema.SchemaError, fastjsonschema.JsonSchemaDefinitionException) as error:
            message = getattr(error, "message", str(error))
            problems.append(site.problem(f"'{schema_file}' is not a valid JSON Schema: {message}"))
            continue
        properties = schema.get("properties", {})
        missing = [key for key in raw["key_properties"] if key not in properties]
        if missing:
            key_site = Site(doc, ("outputs", name, "key_properties"), f"output '{name}'")
            problems.append(
                key_site.problem(f"key properties not in its schema: {', '.join(missing)}")
            )
        outputs[name] = OutputStream(
            name=name,
            key_properties=list(raw["key_properties"]),
            schema=schema,
            schema_file=str(base / schema_file),
            validate=validate,
        )
    return outputs


@dataclass
class _RawDefinition:
    value: Any
    site: Site


def _collect_definitions(doc: YamlDocument, problems: list[Problem]) -> dict[str, _RawDefinition]:
    """Definitions of this file and of the files it includes (transitively), one namespace."""
    collected: dict[str, _RawDefinition] = {}

    def visit(current: YamlDocument, chain: tuple[Path, ...]) -> None:
        base = Path(current.path).parent
        for index, include in enumerate(current.data.get("include", [])):
            site = Site(current, ("include", index), "include")
            target = base / include
            resolved = target.resolve()
            if resolved in chain:
                problems.append(site.problem(f"'{include}' includes itself (include cycle)"))
                continue
            if not target.exists():
                problems.append(site.problem(f"included file '{include}' not found"))
                continue
            try:
                included = load_yaml(target, str(target))
            except MappingFileError as error:
                problems.extend(error.problems)
                continue
            structure = _structure_problems(included, definitions_only=True)
            if structure:
                problems.extend(structure)
                continue
            visit(included, (*chain, resolved))
        for name, value in (current.data.get("definitions") or {}).items():
            site = Site(current, ("definitions", name), f"definition '{name}'")
            if name in collected:
                first = collected[name].site
                where = f"{first.doc.path}:{first.doc.line(first.path)}"
                problems.append(site.problem(f"'{name}' is already defined at {where}"))
                continue
            if name == RECORD_NAME or name in helpers.FUNCTIONS or name in _jinja_globals():
                problems.append(site.problem(f"'{name}' is a reserved name"))
                continue
            collected[name] = _RawDefinition(value, site)

    visit(doc, (Path(doc.path).resolve(),))
    return collected


def _compile_definitions(
    raw: dict[str, _RawDefinition], compiler: ValueCompiler, problems: list[Problem]
) -> dict[str, Expression]:
    known = frozenset({RECORD_NAME, *raw})
    compiled: dict[str, Expression] = {}
    graph: dict[str, set[str]] = {}
    for name, definition in raw.items():
        used: set[str] = set()
        node: nodes.Expr | None = None
        if isinstance(definition.value, str):
            checked = compiler.expression(definition.value, definition.site, known)
            if checked is not None:
                node, used = checked
        else:
            spec = compiler.value(definition.value, definition.site, "", known, used)
            node = spec.build() if spec is not None else None
        graph[name] = used & set(raw)
        if node is not None:
            compiled[name] = _compile(node, definition.site, problems)
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        cycle: list[str] = error.args[1]
        site = raw[cycle[0]].site
        problems.append(site.problem(f"definitions refer to each other: {' -> '.join(cycle)}"))
    return compiled


def _compile(node: nodes.Expr, site: Site, problems: list[Problem]) -> Expression:
    try:
        return Expression(node)
    except TemplateError as error:
        problems.append(site.problem(str(error)))
        return Expression(nodes.Const(None))


def _compile_stream(
    stream: str,
    raw: dict[str, Any],
    site: Site,
    program: MappingProgram,
    compiler: ValueCompiler,
    known: frozenset[str],
    problems: list[Problem],
) -> StreamRules:
    checks: list[Check] = []
    for index, raw_check in enumerate(raw.get("checks", [])):
        check_site = site.at("checks").at(index, f"check '{raw_check['reason']}'")
        checked = compiler.expression(raw_check["when"], check_site.at("when"), known)
        detail: ValueSpec | None = None
        if "detail" in raw_check:
            detail = compiler.value(raw_check["detail"], check_site.at("detail"), "", known, set())
        if checked is not None:
            when = _compile(checked[0], check_site, problems)
            checks.append(Check(raw_check["reason"], when, detail))
    first_check = None
    if checks and len(checks) == len(raw.get("checks", [])):
        # One call answers "which check fails first": index of the first true check, or None.
        chain: nodes.Expr = nodes.Const(None)
        for index in range(len(checks) - 1, -1, -1):
            test = _reparse(raw["checks"][index]["when"])
            chain = nodes.CondExpr(test, nodes.Const(index), chain, lineno=1)
        first_check = _compile(chain, site, problems)

    rules: list[Rule] = []
    seen: dict[str, int | None] = {}
    for index, raw_rule in enumerate(raw["rules"]):
        name = raw_rule["name"]
        rule_site = site.at("rules").at(index, f"rule '{name}'")
        if name in seen:
            problems.append(
                rule_site.at("name").problem(
                    f"duplicate rule name '{name}' (first at line {seen[name]})"
                )
            )
            continue
        seen[name] = rule_site.doc.line(rule_site.path)
        rule = _compile_rule(raw_rule, rule_site, program, compiler, known, problems)
        if rule is not None:
            rules.append(rule)
    return StreamRules(
        stream=stream,
        key=raw["key"],
        updated_at=raw.get("updated_at"),
        checks=checks,
        first_check=first_check,
        rules=rules,
        program=program,
    )


def _reparse(source: str) -> nodes.Expr:
    return BareExpressionValue(source, "").build()


def _compile_rule(
    raw: dict[str, Any],
    site: Site,
    program: MappingProgram,
    compiler: ValueCompiler,
    known: frozenset[str],
    problems: list[Problem],
) -> Rule | None:
    count = len(problems)
    for_each: tuple[str, Expression] | None = None
    rule_known = known
    if "for_each" in raw:
        parsed = split_for_each(raw["for_each"])
        assert parsed is not None  # the file schema's pattern guarantees the shape
        binding, source = parsed
        checked = compiler.expression(source, site.at("for_each"), known)
        if checked is not None:
            for_each = (binding, _compile(checked[0], site.at("for_each"), problems))
        rule_known = known | {binding}
    when: Expression | None = None
    when_node: nodes.Expr | None = None
    if "when" in raw:
        checked = compiler.expression(raw["when"], site.at("when"), rule_known)
        if checked is not None:
            when_node = checked[0]
            when = _compile(_reparse(raw["when"]), site.at("when"), problems)
    emits: list[Emit] = []
    declared = set(site.doc.data["outputs"])
    several = len(raw["emit"]) > 1
    for stream, fields in raw["emit"].items():
        emit_where = f"{site.where}, output '{stream}'" if several else site.where
        emit_site = site.at("emit").at(stream, emit_where)
        if stream not in declared:
            names = ", ".join(sorted(declared)) or "none"
            problems.append(
                emit_site.problem(f"unknown output stream '{stream}' (declared: {names})")
            )
            continue
        spec = compiler.value(fields, emit_site, "", rule_known, set())
        output = program.outputs.get(stream)  # None when its schema failed (reported already)
        if not isinstance(spec, MappingValue) or output is None:
            continue
        missing = [name for name in output.schema.get("required", []) if name not in fields]
        if missing:
            problems.append(
                emit_site.problem(
                    f"required field(s) of '{stream}' not set: {', '.join(missing)}"
                )
            )
        emits.append(Emit(stream, spec))
    if len(problems) > count:
        return None
    outputs: nodes.Expr = nodes.List([emit.value.build() for emit in emits], lineno=1)
    if when_node is not None:
        outputs = nodes.CondExpr(when_node, outputs, nodes.Const(None), lineno=1)
    body = _compile(outputs, site, problems)
    return Rule(name=raw["name"], for_each=for_each, when=when, emits=emits, body=body)
