"""Running compiled mappings on records: outputs, rejections and rule failures.

The engine knows nothing about Singer; the mapper feeds it records and the preview command uses it
as it is. Its contract per source record:

* the stream's checks run first, in order; the first one that holds turns the record into one
  exception record (its `reason`) and no rule runs;
* then every rule runs on its own: a rule (or one item of its `for_each`) that fails, or whose
  outputs do not match their declared schema, emits nothing and becomes one exception record
  (`mapping_error` or `invalid_output`); the record's other rules are not affected;
* exception details and log lines never quote record values: the message of a failure is
  masked for any text found in the record (other than its key) and for e-mail addresses.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import fastjsonschema

from swap_transforms.budgets import METER, BudgetError, check_items
from swap_transforms.contract import Contract
from swap_transforms.errors import EvaluationError, MappingFileError, Problem, describe
from swap_transforms.helpers import iso_timestamp, stable_hash
from swap_transforms.program import (
    MappingProgram,
    OutputStream,
    Rule,
    StreamRules,
    load_program,
)
from swap_transforms.sandbox import Scope
from swap_transforms.source_check import SourceChecker, absent_as_null
from swap_transforms.values import check_native, check_output, iterate, locate_failure
from swap_transforms.variables import apply_overrides

MAPPING_ERROR = "mapping_error"
INVALID_OUTPUT = "invalid_output"
OUT_OF_BOUNDS = "out_of_bounds"
TOLERATED_MAPPING_ERROR = "tolerated_mapping_error"
#: Reasons that say the mapping is wrong (decisions.md §1): the mapper withholds STATE after the
#: first, so the bookmark stays and the records are read again once the mapping is fixed.
HOLDING_REASONS = frozenset({MAPPING_ERROR, INVALID_OUTPUT})
#: JSON Schema keywords whose violation says the data is out of bounds, not the mapping wrong:
#: the record is set aside with the field named and the bookmark moves on.
BOUNDS_KEYWORDS = frozenset(
    {
        "maxLength",
        "minLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "pattern",
        "format",
        "maxItems",
        "minItems",
        "maxProperties",
    }
)
MAX_DETAIL = 500

Output = tuple[str, dict[str, Any]]
_Target = tuple[str, "Callable[[Any], bool] | None", Callable[[Any], Any]]

logger = logging.getLogger(__name__)

_QUOTED = re.compile(r"""(['"])(.*?)\1""")
_EMAIL = re.compile(r"[^\s@'\"<>(),;]+@[^\s@'\"<>(),;]+")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class MappingEngine:
    """Maps records of source streams to output records with one or more mapping files."""

    def __init__(
        self,
        programs: Sequence[MappingProgram],
        clock: Callable[[], str] = utc_now,
        tolerated_rules: Iterable[str] = (),
    ) -> None:
        self.programs = list(programs)
        self.clock = clock
        self.tolerated = frozenset(tolerated_rules)
        #: Failures that hold the bookmark, per (source stream, rule, reason): how many records.
        self.held: Counter[tuple[str, str | None, str]] = Counter()
        #: Where each failing rule is written (file:line), for the summary at the end of a run.
        self.locations: dict[str | None, str] = {}
        self.outputs: dict[str, OutputStream] = {}
        self._absent_as_null: dict[str, dict[str, None]] = {}
        #: Per source stream, null-safety findings of its last schema check (see source_check).
        self.source_warnings: dict[str, list[Problem]] = {}
        self._streams: dict[str, list[StreamRules]] = {}
        problems: list[Problem] = []
        for program in self.programs:
            for name, output in program.outputs.items():
                known = self.outputs.setdefault(name, output)
                if (known.schema, known.key_properties) != (output.schema, output.key_properties):
                    message = f"output '{name}' is declared differently in {known.schema_file}"
                    problems.append(Problem(program.file, None, "", message))
            for stream, rules in program.streams.items():
                runs = self._streams.setdefault(stream, [])
                names = {rule.name for run in runs for rule in run.rules}
                for rule in rules.rules:
                    if rule.name in names:
                        message = f"rule '{rule.name}' of stream '{stream}' is in another file too"
                        problems.append(Problem(program.file, None, "", message))
                runs.append(rules)
        problems.extend(self._tolerance_problems())
        if problems:
            raise MappingFileError(problems)
        # Per rule, where its outputs go, in emit order: (stream, quick check, validate).
        self._targets: dict[int, list[_Target]] = {
            id(rule): [
                (emit.stream, output.quick_check, output.validate)
                for emit in rule.emits
                for output in (self.outputs[emit.stream],)
            ]
            for runs in self._streams.values()
            for rules in runs
            for rule in rules.rules
        }

    def _tolerance_problems(self) -> list[Problem]:
        """A tolerated rule that no mapping has is a typo: refused, not silently ignored."""
        names = {rule.name for runs in self._streams.values() for r in runs for rule in r.rules}
        return [
            Problem(
                "tolerated_rules",
                None,
                "",
                f"'{name}' is not a rule of the mapping"
                + (f" (did you mean '{close[0]}'?)" if close else ""),
            )
            for name in sorted(self.tolerated - names)
            for close in (difflib.get_close_matches(name, sorted(names), n=1),)
        ]

    @property
    def holding(self) -> bool:
        """True once a record failed in a way that must hold the bookmark (see HOLDING_REASONS)."""
        return bool(self.held)

    @classmethod
    def from_files(
        cls,
        paths: Iterable[str],
        clock: Callable[[], str] = utc_now,
        contract: Contract | None = None,
        tolerated_rules: Iterable[str] = (),
        sources: Mapping[str, dict[str, Any]] | None = None,
        *,
        variables: Mapping[str, Any] | None = None,
    ) -> MappingEngine:
        """Load every mapping file, reporting the problems of all of them together.

        With a `contract` (the target's input schemas), outputs the target would not accept
        are refused here, before any record is read.
        """
        programs: list[MappingProgram] = []
        problems: list[Problem] = []
        for path in paths:
            try:
                programs.append(load_program(path, contract))
            except MappingFileError as error:
                problems.extend(error.problems)
        if variables:  # the deployment's values for the files' vars: (variables.py)
            problems.extend(apply_overrides(((p.file, p.variables) for p in programs), variables))
        if problems:
            raise MappingFileError(problems)
        engine = cls(programs, clock, tolerated_rules)
        for stream, schema in (sources or {}).items():
            if engine.handles(stream):
                problems.extend(engine.source_problems(stream, schema))
        if problems:
            raise MappingFileError(problems)
        for stream, schema in (sources or {}).items():
            engine.check_source(stream, schema)
        return engine

    def source_problems(self, stream: str, schema: dict[str, Any]) -> list[Problem]:
        """What the mappings of `stream` get wrong about its schema (fields it does not have).

        Null-safety findings (a field that may be null used where null raises) are kept in
        `source_warnings`: they are reported with their fix but do not stop the mapping.
        """
        problems: list[Problem] = []
        warnings: list[Problem] = []
        for rules in self._streams.get(stream, ()):
            program = rules.program
            raw, site = program.raw_streams[stream]
            outputs = {name: output.schema for name, output in program.outputs.items()}
            checker = SourceChecker(program.raw_definitions, schema, outputs)
            problems.extend(checker.check_stream(raw, site))
            warnings.extend(checker.warnings)
        self.source_warnings[stream] = warnings
        return problems

    def check_source(self, stream: str, schema: dict[str, Any]) -> None:
        """Take `schema` as the schema of `stream`'s records, or refuse it (`MappingFileError`).

        Once accepted, a field the schema declares (nullable) that a record leaves out reads as
        null: `record.customer_name` on a return without it is None, as Singer means it.
        """
        problems = self.source_problems(stream, schema)
        if problems:
            raise MappingFileError(problems)
        fill = absent_as_null(schema)
        if fill:
            self._absent_as_null[stream] = fill
        else:
            self._absent_as_null.pop(stream, None)

    @property
    def source_streams(self) -> list[str]:
        return list(self._streams)

    @property
    def exception_streams(self) -> frozenset[str]:
        return frozenset(program.exceptions_stream for program in self.programs)

    def key_of(self, stream: str, record: dict[str, Any]) -> str | None:
        """The record's key as the (first) mapping of its stream names it."""
        for rules in self._streams.get(stream, ()):
            value = record.get(rules.key)
            return None if value is None else str(value)
        return None

    def key_field(self, stream: str | None) -> str | None:
        """The field that keys records of `stream`, as its (first) mapping names it."""
        for rules in self._streams.get(stream or "", ()):
            return rules.key
        return None

    def exceptions_stream_for(self, stream: str | None) -> str:
        """Where exceptions about records of `stream` go (the first mapping's stream)."""
        for rules in self._streams.get(stream or "", ()):
            return rules.program.exceptions_stream
        return self.programs[0].exceptions_stream

    def handles(self, stream: str) -> bool:
        return stream in self._streams

    def output_streams(self, stream: str) -> list[str]:
        """Output streams records of `stream` can produce, exceptions included, in order."""
        names: dict[str, None] = {}
        for rules in self._streams.get(stream, []):
            for rule in rules.rules:
                names.update(dict.fromkeys(emit.stream for emit in rule.emits))
            names[rules.program.exceptions_stream] = None
        return list(names)

    def map_record(self, stream: str, record: dict[str, Any]) -> list[Output]:
        """Every output record for one source record, in rule order; [] for unmapped streams."""
        outputs: list[Output] = []
        METER.start_record()  # the evaluation budgets (budgets.py) are per record
        for rules in self._streams.get(stream, ()):
            _RecordRun(self, rules, record, outputs).run()
        return outputs


class _RecordRun:
    """One source record going through one mapping file's rules for its stream."""

    def __init__(
        self, engine: MappingEngine, rules: StreamRules, record: dict[str, Any], out: list[Output]
    ) -> None:
        self.engine = engine
        self.rules = rules
        self.record = record
        self.out = out
        program = rules.program
        self.scope = Scope({"record": record}, program.definitions, program.names)
        key = record.get(rules.key)
        self.key = None if key is None else str(key)
        self.reported: set[str] = set()

    def run(self) -> None:
        if self._rejected():
            return
        for rule in self.rules.rules:
            self._run_rule(rule)

    def _rejected(self) -> bool:
        first = self.rules.first_check
        if first is None:
            return False
        METER.start_rule()
        try:
            index = first(self.scope)
        except Exception:  # noqa: BLE001 - any failure of the analyst's expression
            index = None
            for position, check in enumerate(self.rules.checks):
                try:
                    hit = bool(check.when(self.scope))
                except Exception as error:  # noqa: BLE001
                    where = f"check '{check.reason}'"
                    self._exception(None, MAPPING_ERROR, f"{where}: {describe(error)}")
                    return True
                if hit:
                    index = position
                    break
        if index is None:
            return False
        check = self.rules.checks[index]
        detail = None
        if check.detail is not None:
            try:
                detail = str(check.detail.expression(self.scope))
            except Exception as error:  # noqa: BLE001
                detail = f"(detail failed: {describe(error)})"
        self._exception(None, check.reason, detail)
        return True

    def _run_rule(self, rule: Rule) -> None:
        METER.start_rule()
        if rule.for_each is None:
            self._run_item(rule, self.scope, "")
            return
        binding, items_expression = rule.for_each
        try:
            items = list(iterate(items_expression(self.scope)))
            check_items(len(items), "a for_each list")
        except Exception as error:  # noqa: BLE001
            self._exception(rule, MAPPING_ERROR, f"for_each: {describe(error)}")
            return
        for index, item in enumerate(items):
            try:
                METER.step()  # an item is a step, whatever its expressions do
            except BudgetError as error:
                self._exception(rule, MAPPING_ERROR, f"item {index}: {describe(error)}")
                return
            self._run_item(rule, self.scope.child(binding, item), f"item {index}: ")

    def _run_item(self, rule: Rule, scope: Scope, where: str) -> None:
        steps = METER.steps
        try:
            produced = rule.body(scope)  # one record per emit, or None (`when` false)
            if produced is None:
                return
            for record in produced:
                check_output(record)
        except RecursionError:
            self._exception(rule, OUT_OF_BOUNDS, f"{where}an output is nested too deep")
            return
        except Exception as error:  # noqa: BLE001
            spent = METER.steps
            METER.rewind(steps)  # parts re-run with the budget they had (see locate_failure)
            failure = self._locate(rule, scope, error)
            METER.rewind(max(spent, METER.steps))  # and what the item spent stays spent
            self._exception(rule, MAPPING_ERROR, where + describe(failure))
            return
        targets = self.engine._targets[id(rule)]
        for (stream, quick_check, validate), record in zip(targets, produced, strict=True):
            if quick_check is not None and quick_check(record):
                continue  # certainly valid: the validator would accept it
            try:
                validate(record)
            except fastjsonschema.JsonSchemaValueException as error:
                name = error.name or "data"
                field = name.removeprefix("data").lstrip(".")
                place = f"field '{field}'" if field else "record"
                what = (error.message or "").removeprefix(name).strip()
                detail = f"{where}output '{stream}' {place}: {what} ({error.rule})"
                bounds = error.rule in BOUNDS_KEYWORDS
                self._exception(rule, OUT_OF_BOUNDS if bounds else INVALID_OUTPUT, detail)
                return
            except RecursionError:
                detail = f"{where}output '{stream}': nesting too deep"
                self._exception(rule, OUT_OF_BOUNDS, detail)
                return
        out = self.out
        for (stream, _, _), record in zip(targets, produced, strict=True):
            out.append((stream, record))

    def _locate(self, rule: Rule, scope: Scope, error: BaseException) -> EvaluationError:
        """Which part of a failed rule broke: its condition, or which field of which output."""
        if rule.when is not None:
            try:
                if not rule.when(scope):
                    return EvaluationError("when", error)
            except Exception as when_error:  # noqa: BLE001
                return EvaluationError("when", when_error)
        for emit in rule.emits:
            steps = METER.steps
            try:
                check_native(emit.value.expression(scope))
            except Exception as emit_error:  # noqa: BLE001
                METER.rewind(steps)
                failure = locate_failure(emit.value, scope, emit_error)
                if len(rule.emits) == 1:  # as in start-up errors, name the output if ambiguous
                    return failure
                return EvaluationError(f"output '{emit.stream}', {failure.where}", failure.cause)
        return EvaluationError("rule", error)

    def _exception(self, rule: Rule | str | None, reason: str, detail: str | None) -> None:
        """One exception record; a holding failure is counted (or tolerated, if so configured)."""
        location = rule.location if isinstance(rule, Rule) else ""
        if isinstance(rule, Rule):
            rule = rule.name
        stream = self.rules.stream
        engine = self.engine
        if reason in HOLDING_REASONS and rule in engine.tolerated:
            detail = f"{reason} (tolerated): {detail}"
            reason = TOLERATED_MAPPING_ERROR
        exception_id = stable_hash(stream, self.key, rule, reason)
        if exception_id in self.reported:
            return  # one exception per rule and reason per record (items failing alike)
        self.reported.add(exception_id)
        if reason in HOLDING_REASONS:
            engine.held[(stream, rule, reason)] += 1
            engine.locations.setdefault(rule, location)
        if detail is not None:
            detail = mask(detail, self.record, keep=self.key)
            if location:
                detail = f"{detail[: MAX_DETAIL - len(location) - 6]} (at {location})"
        updated_at = None
        if self.rules.updated_at is not None:
            try:
                updated_at = iso_timestamp(self.record.get(self.rules.updated_at))
            except (TypeError, ValueError):
                updated_at = None
        record = {
            "exception_id": exception_id,
            "source_stream": stream,
            "source_key": self.key,
            "rule": rule,
            "reason": reason,
            "detail": detail,
            "source_updated_at": updated_at,
            "occurred_at": self.engine.clock(),
        }
        logger.warning(
            "%s %s rejected%s: %s%s",
            stream,
            self.key,
            "" if rule is None else f" by rule '{rule}'",
            reason,
            "" if detail is None else f": {detail}",
        )
        self.out.append((self.rules.program.exceptions_stream, record))


def mask(text: str, record: Any, keep: str | None = None) -> str:
    """`text` with quoted record values and e-mail addresses masked, and shortened.

    Error messages quote the value they failed on (Jinja names a missing key, Python shows an
    unparsable literal with repr), and those values may be personal data. A quoted part that
    holds text of the record, or is part of it, becomes '***'; messages' own words (a field
    name, a type) stay readable. The record's key is kept: operators need it to find the record.
    """
    values: set[str] | None = None  # the record's texts, collected once a quote needs them

    def hide(match: re.Match[str]) -> str:
        nonlocal values
        if values is None:
            values = {
                value.lower() for value in _strings(record) if len(value) >= 3 and value != keep
            }
        quote, inner = match.group(1), match.group(2).lower()
        if any(value in inner for value in values) or (
            len(inner) >= 4 and any(inner in value for value in values)
        ):
            return f"{quote}***{quote}"
        return match.group(0)

    text = _EMAIL.sub("***", _QUOTED.sub(hide, text))
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
        stripped = value.strip()
        if stripped != value:
            yield stripped
            yield stripped.lower()
    elif isinstance(value, dict):
        for member in value.values():
            yield from _strings(member)
    elif isinstance(value, list):
        for member in value:
            yield from _strings(member)
