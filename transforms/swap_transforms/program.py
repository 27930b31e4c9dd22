"""Loading a mapping file into a checked, compiled program.

Everything that can be known before the first record is checked here, and every problem found is
reported at once with its file and line: the file's structure (against the JSON Schema shipped in
this package), included files, output declarations and their JSON Schemas, every expression
(syntax, names, filters, private attributes), definitions that refer to each other in a cycle,
rule names, emits to undeclared outputs and required output fields that no rule sets.
"""

from __future__ import annotations

import copy
import difflib
import graphlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
from jinja2 import nodes

from swap_transforms.contract import Contract
from swap_transforms.errors import MappingFileError, Problem
from swap_transforms.sandbox import ENVIRONMENT, GLOBAL_NAMES, Expression, parse_expression
from swap_transforms.schema_check import compile_quick_check, validator_regexes
from swap_transforms.values import (
    FOR_EACH_SHAPE,
    LiteralValue,
    MappingValue,
    Site,
    ValueCompiler,
    ValueSpec,
    split_for_each,
)
from swap_transforms.variables import VARS_NAME, undeclared
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
    #: True only for records `validate` accepts (see schema_check); None: always validate.
    quick_check: Callable[[Any], bool] | None = None


@dataclass
class Check:
    """A condition that rejects the whole record with `reason` when it holds."""

    reason: str
    when: Expression
    detail: ValueSpec | None


@dataclass
class Emit:
    """One output record of a rule: the output stream and its fields."""

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
    #: `file:line` of the rule, for exception details and logs (analysts jump there).
    location: str = ""


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
    outputs: dict[str, OutputStream] = field(default_factory=dict)
    definitions: dict[str, Expression] = field(default_factory=dict)
    names: dict[str, Any] = field(default_factory=dict)
    streams: dict[str, StreamRules] = field(default_factory=dict)
    #: The file's definitions (its includes' too) and streams as written, with where they are:
    #: checked again once a source stream's schema is known (see source_check).
    raw_definitions: dict[str, tuple[Any, Site]] = field(default_factory=dict)
    raw_streams: dict[str, tuple[dict[str, Any], Site]] = field(default_factory=dict)
    #: The file's ``vars:`` (variables.py): the dict the expressions read, overridable in place.
    variables: dict[str, Any] = field(default_factory=dict)


def load_program(path: str, contract: Contract | None = None) -> MappingProgram:
    """Load, check and compile one mapping file; raises `MappingFileError` listing all problems.

    With a `contract`, every declared output must be a stream the target accepts, declared
    with the target's own schema.
    """
    doc = load_yaml(Path(path), path)
    problems = structure_problems(doc, definitions_only=False)
    if problems:
        raise MappingFileError(problems)
    return _Loader(doc, contract).load()


@lru_cache(maxsize=64)
def _checked_schema(text: str) -> tuple[dict[str, Any], Callable[[Any], Any]]:
    """A schema file's text, parsed, checked against its metaschema and compiled.

    Keyed by the text itself, so a process that loads mappings many times (the tests, the preview,
    the history command) checks and compiles each distinct schema once: the metaschema check and
    the compilation are most of a mapping's load. Callers get their own copy of the schema.
    Raises ValueError (not JSON), TypeError (not an object) or the libraries' schema errors.
    """
    schema = json.loads(text)
    if not isinstance(schema, dict):
        raise TypeError("not a JSON Schema object")
    jsonschema.validators.validator_for(schema).check_schema(schema)
    return schema, fastjsonschema.compile(schema)


@cache
def _file_validator() -> Any:
    text = resources.files("swap_transforms").joinpath("mapping_file.schema.json").read_text()
    schema = json.loads(text)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def structure_problems(doc: YamlDocument, *, definitions_only: bool) -> list[Problem]:
    """The file's shape against the shipped JSON Schema (an included file: definitions only)."""
    if not isinstance(doc.data, dict):
        return [Problem(doc.path, doc.line(()), "", "the file must be a YAML mapping")]
    validator = _file_validator()
    if definitions_only:
        validator = validator.evolve(schema=validator.schema["$defs"]["definitions_file"])
    problems = []
    for error in validator.iter_errors(doc.data):
        path = tuple(error.absolute_path)
        problems.append(Problem(doc.path, doc.line(path), _where(doc.data, path), _message(error)))
    return sorted(problems, key=lambda problem: (problem.line or 0, problem.message))


def _literal_problem(value: Any, schema: dict[str, Any]) -> str | None:
    """Why a YAML literal does not fit its output field's schema, or None."""
    try:
        kind = jsonschema.validators.validator_for(schema)
        validator = kind(schema, format_checker=kind.FORMAT_CHECKER)
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except jsonschema.SchemaError:
        return None  # the output's schema was checked when it loaded; a part alone may not be
    if error is None:
        return None
    return f"{json.dumps(value)[:60]} does not fit the output: {error.message[:200]}"


def _where(data: Any, path: tuple[Any, ...]) -> str:
    """`streams.returns.rules[3].emit` -> "rule 'return_started', emit" where it has a name."""
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
        return FOR_EACH_SHAPE
    return str(error.message)


@dataclass
class _RawDefinition:
    value: Any
    site: Site


class _Loader:
    """Compiles one validated mapping file, collecting every problem before giving up."""

    def __init__(self, doc: YamlDocument, contract: Contract | None = None) -> None:
        self.doc = doc
        self.contract = contract
        self.data: dict[str, Any] = doc.data
        self.problems: list[Problem] = []
        exceptions = self.data.get("exceptions", DEFAULT_EXCEPTIONS_STREAM)
        self.program = MappingProgram(file=doc.path, exceptions_stream=exceptions)
        self.program.names.update(ENVIRONMENT.globals)
        if "vars" in self.data:
            self.program.variables = dict(self.data.get("vars") or {})
            self.program.names[VARS_NAME] = self.program.variables
        self.compiler = ValueCompiler(self.program.names, self.problems)
        self.known: frozenset[str] = frozenset({RECORD_NAME})

    def load(self) -> MappingProgram:
        self._load_outputs()
        self._check_exceptions_output()
        raw_definitions = self._collect_definitions()
        self.known = frozenset({RECORD_NAME, *raw_definitions})
        if "vars" in self.data:
            self.known |= {VARS_NAME}
            self._check_vars_read(raw_definitions)
        self._compile_definitions(raw_definitions)
        self.program.raw_definitions = {
            name: (raw.value, raw.site) for name, raw in raw_definitions.items()
        }
        for stream, raw in self.data["streams"].items():
            site = Site(self.doc, ("streams", stream), f"stream '{stream}'")
            self.program.streams[stream] = self._stream(stream, raw, site)
            self.program.raw_streams[stream] = (raw, site)
        if self.problems:
            self.problems.sort(key=lambda p: (p.file != self.doc.path, p.file, p.line or 0))
            raise MappingFileError(self.problems)
        return self.program

    # -- outputs ---------------------------------------------------------------------------------

    def _load_outputs(self) -> None:
        base = Path(self.doc.path).parent
        for name, raw in self.data["outputs"].items():
            site = Site(self.doc, ("outputs", name, "schema"), f"output '{name}'")
            schema_file = raw["schema"]
            read = self._read_schema(base / schema_file, schema_file, site)
            if read is None:
                continue
            schema, validate = read
            refused = (
                None if self.contract is None else self.contract.problem(name, schema, schema_file)
            )
            if refused is not None:
                self.problems.append(Site(self.doc, ("outputs", name), site.where).problem(refused))
            missing = [
                key for key in raw["key_properties"] if key not in schema.get("properties", {})
            ]
            if missing:
                key_site = Site(self.doc, ("outputs", name, "key_properties"), site.where)
                message = f"key properties not in its schema: {', '.join(missing)}"
                self.problems.append(key_site.problem(message))
            self.program.outputs[name] = OutputStream(
                name=name,
                key_properties=list(raw["key_properties"]),
                schema=schema,
                schema_file=str(base / schema_file),
                validate=validate,
                quick_check=compile_quick_check(schema, validator_regexes(validate)),
            )

    def _read_schema(
        self, path: Path, shown: str, site: Site
    ) -> tuple[dict[str, Any], Callable[[Any], Any]] | None:
        """The schema file's JSON Schema and its compiled validator, or None (a problem)."""
        try:
            schema, validate = _checked_schema(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            self.problems.append(site.problem(f"schema file '{shown}' not found"))
            return None
        except (OSError, ValueError) as error:
            self.problems.append(site.problem(f"schema file '{shown}' is not JSON: {error}"))
            return None
        except TypeError:
            self.problems.append(site.problem(f"'{shown}' is not a JSON Schema object"))
            return None
        except (jsonschema.SchemaError, fastjsonschema.JsonSchemaDefinitionException) as error:
            message = getattr(error, "message", str(error))
            self.problems.append(site.problem(f"'{shown}' is not a valid JSON Schema: {message}"))
            return None
        return copy.deepcopy(schema), validate

    def _check_exceptions_output(self) -> None:
        name = self.program.exceptions_stream
        output = self.program.outputs.get(name)
        if name not in self.data["outputs"]:
            site = Site(self.doc, ("exceptions",) if "exceptions" in self.data else (), "")
            self.problems.append(
                site.problem(f"exceptions stream '{name}' is not declared in outputs")
            )
            return
        if output is None:
            return  # its schema failed to load: reported already
        for sample in SAMPLE_EXCEPTIONS:
            try:
                output.validate(sample)
            except fastjsonschema.JsonSchemaValueException as error:
                site = Site(self.doc, ("outputs", name), f"output '{name}'")
                message = f"its schema rejects the exception records the engine writes: {error}"
                self.problems.append(site.problem(message))
                return

    # -- definitions -----------------------------------------------------------------------------

    def _collect_definitions(self) -> dict[str, _RawDefinition]:
        """Definitions of this file and of the files it includes (transitively): one namespace."""
        collected: dict[str, _RawDefinition] = {}
        self._visit(self.doc, (Path(self.doc.path).resolve(),), collected)
        return collected

    def _visit(
        self, current: YamlDocument, chain: tuple[Path, ...], collected: dict[str, _RawDefinition]
    ) -> None:
        base = Path(current.path).parent
        for index, include in enumerate(current.data.get("include", [])):
            site = Site(current, ("include", index), "include")
            target = base / include
            if target.resolve() in chain:
                self.problems.append(site.problem(f"'{include}' includes itself (include cycle)"))
                continue
            if not target.is_file():
                self.problems.append(site.problem(f"included file '{include}' not found"))
                continue
            try:
                included = load_yaml(target, str(target))
            except MappingFileError as error:
                self.problems.extend(error.problems)
                continue
            structure = structure_problems(included, definitions_only=True)
            if structure:
                self.problems.extend(structure)
                continue
            self._visit(included, (*chain, target.resolve()), collected)
        for name, value in (current.data.get("definitions") or {}).items():
            site = Site(current, ("definitions", name), f"definition '{name}'")
            if name in collected:
                first = collected[name].site
                where = f"{first.doc.path}:{first.doc.line(first.path)}"
                self.problems.append(site.problem(f"'{name}' is already defined at {where}"))
            elif name in (RECORD_NAME, VARS_NAME) or name in GLOBAL_NAMES:
                self.problems.append(site.problem(f"'{name}' is a reserved name"))
            else:
                collected[name] = _RawDefinition(value, site)

    def _check_vars_read(self, raw_definitions: dict[str, _RawDefinition]) -> None:
        """Every ``vars.<name>`` an expression reads is declared in the file's ``vars:``."""
        declared = self.program.variables
        for raw in raw_definitions.values():
            self.problems.extend(raw.site.problem(m) for m in undeclared(raw.value, declared))
        for stream, value in self.data["streams"].items():
            site = Site(self.doc, ("streams", stream), f"stream '{stream}'")
            self.problems.extend(site.problem(m) for m in undeclared(value, declared))

    def _compile_definitions(self, raw: dict[str, _RawDefinition]) -> None:
        graph: dict[str, set[str]] = {}
        for name, definition in raw.items():
            used: set[str] = set()
            node: nodes.Expr | None = None
            if isinstance(definition.value, str):
                checked = self.compiler.expression(definition.value, definition.site, self.known)
                if checked is not None:
                    node, used = checked
            else:
                spec = self.compiler.value(definition.value, definition.site, "", self.known, used)
                node = spec.build() if spec is not None else None
            graph[name] = used & set(raw)
            if node is not None:
                self.program.definitions[name] = self.compiler.compile(node, definition.site)
        try:
            tuple(graphlib.TopologicalSorter(graph).static_order())
        except graphlib.CycleError as error:
            cycle: list[str] = error.args[1]
            message = f"definitions refer to each other: {' -> '.join(cycle)}"
            self.problems.append(raw[cycle[0]].site.problem(message))

    # -- streams, checks and rules ---------------------------------------------------------------

    def _stream(self, stream: str, raw: dict[str, Any], site: Site) -> StreamRules:
        raw_checks = raw.get("checks", [])
        checks = self._checks(raw_checks, site)
        first_check = None
        if checks and len(checks) == len(raw_checks):
            # One call answers "which check holds first": the index of the first true one.
            chain: nodes.Expr = nodes.Const(None)
            for index in range(len(raw_checks) - 1, -1, -1):
                test = parse_expression(raw_checks[index]["when"])
                chain = nodes.CondExpr(test, nodes.Const(index), chain, lineno=1)
            first_check = self.compiler.compile(chain, site)
        rules: list[Rule] = []
        seen: dict[str, int | None] = {}
        for index, raw_rule in enumerate(raw["rules"]):
            name = raw_rule["name"]
            rule_site = site.at("rules").at(index, f"rule '{name}'")
            if name in seen:
                message = f"duplicate rule name '{name}' (first at line {seen[name]})"
                self.problems.append(rule_site.at("name").problem(message))
                continue
            seen[name] = self.doc.line(rule_site.path)
            rule = self._rule(raw_rule, rule_site)
            if rule is not None:
                rules.append(rule)
        return StreamRules(
            stream=stream,
            key=raw["key"],
            updated_at=raw.get("updated_at"),
            checks=checks,
            first_check=first_check,
            rules=rules,
            program=self.program,
        )

    def _checks(self, raw_checks: list[dict[str, Any]], site: Site) -> list[Check]:
        checks: list[Check] = []
        for index, raw in enumerate(raw_checks):
            check_site = site.at("checks").at(index, f"check '{raw['reason']}'")
            checked = self.compiler.expression(raw["when"], check_site.at("when"), self.known)
            detail = None
            if "detail" in raw:
                detail_site = check_site.at("detail")
                detail = self.compiler.value(raw["detail"], detail_site, "", self.known, set())
            if checked is not None:
                when = self.compiler.compile(checked[0], check_site)
                checks.append(Check(raw["reason"], when, detail))
        return checks

    def _rule(self, raw: dict[str, Any], site: Site) -> Rule | None:
        count = len(self.problems)
        for_each: tuple[str, Expression] | None = None
        known = self.known
        if "for_each" in raw:
            parsed = split_for_each(raw["for_each"])
            assert parsed is not None  # the file schema's pattern guarantees the shape
            binding, source = parsed
            checked = self.compiler.expression(source, site.at("for_each"), known)
            if checked is not None:
                for_each = (binding, self.compiler.compile(checked[0], site.at("for_each")))
            known = known | {binding}
        when: Expression | None = None
        if "when" in raw:
            checked = self.compiler.expression(raw["when"], site.at("when"), known)
            if checked is not None:
                when = self.compiler.compile(checked[0], site.at("when"))
        emits = self._emits(raw["emit"], site, known)
        if len(self.problems) > count:
            return None
        # The whole rule is one expression: `[output, ...] if when else none`.
        body: nodes.Expr = nodes.List([emit.value.build() for emit in emits], lineno=1)
        if "when" in raw:
            body = nodes.CondExpr(parse_expression(raw["when"]), body, nodes.Const(None), lineno=1)
        return Rule(
            name=raw["name"],
            for_each=for_each,
            when=when,
            emits=emits,
            body=self.compiler.compile(body, site),
            location=f"{self.doc.path}:{self.doc.line(site.path)}",
        )

    def _check_fields(self, spec: ValueSpec, schema: Any, site: Site, stream: str) -> None:
        """Literals against the output's schema, and fields a closed object does not have.

        `value: "abc"` where a number is required, or `metrc:` in an output that lists its
        fields and takes no others, would fail on every record: refused here instead.
        """
        if not isinstance(schema, dict):
            return
        if isinstance(spec, LiteralValue):
            problem = _literal_problem(spec.value, schema)
            if problem is not None:
                self.problems.append(site.problem(f"the literal {problem}"))
            return
        if not isinstance(spec, MappingValue):
            return
        declared = schema.get("properties")
        fields: dict[str, Any] = declared if isinstance(declared, dict) else {}
        closed = schema.get("additionalProperties") is False
        for key, member in spec.items:
            label = f"{spec.label}.{key}" if spec.label else key
            member_site = site.at(key, f"{site.where.split(', field ')[0]}, field '{label}'")
            if key in fields:
                self._check_fields(member, fields[key], member_site, stream)
            elif closed:
                close = difflib.get_close_matches(key, sorted(fields), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                message = f"'{stream}' has no field '{label}'{hint}"
                self.problems.append(member_site.problem(message))
            elif isinstance(schema.get("additionalProperties"), dict):
                self._check_fields(member, schema["additionalProperties"], member_site, stream)

    def _emits(self, raw: dict[str, Any], site: Site, known: frozenset[str]) -> list[Emit]:
        emits: list[Emit] = []
        declared = self.data["outputs"]
        for stream, fields in raw.items():
            where = f"{site.where}, output '{stream}'" if len(raw) > 1 else site.where
            emit_site = site.at("emit").at(stream, where)
            if stream not in declared:
                names = ", ".join(sorted(declared)) or "none"
                message = f"unknown output stream '{stream}' (declared: {names})"
                self.problems.append(emit_site.problem(message))
                continue
            spec = self.compiler.value(fields, emit_site, "", known, set())
            output = self.program.outputs.get(stream)  # None if its schema failed (reported)
            if not isinstance(spec, MappingValue) or output is None:
                continue
            missing = [name for name in output.schema.get("required", []) if name not in fields]
            if missing:
                message = f"required field(s) of '{stream}' not set: {', '.join(missing)}"
                self.problems.append(emit_site.problem(message))
            self._check_fields(spec, output.schema, emit_site, stream)
            emits.append(Emit(stream, spec))
        return emits
