"""`swap-transforms-test`: runs the YAML tests of mapping files, for analysts.

A test file (`<mapping>.tests.yml`, beside the mapping) gives source records and what the mapping
must make of them: output records (only the fields listed are compared), rejections with their
reason, and outputs that must not exist. Every failure prints the test, the rule, the field, the
expected and the actual value, and the command exits 1, so that CI stops an unintended change
and an analyst can read why without reading Python.

Besides the tests themselves, a file is checked as a whole: every rule and check of the mapping
must be exercised by some test, and when the file names the contract list (`contract.yml`),
every metric, profile property and list the mapping sends must be in that list and every name
in the list must be expected by some test. Renaming a metric is then a reviewed change to three
YAML files: the contract list, the mapping and its tests.

    swap-transforms-test                                  # every transforms/*.tests.yml
    swap-transforms-test transforms/swap_to_klaviyo.tests.yml --mapping mine.yml
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swap_transforms.engine import MappingEngine, _RecordRun
from swap_transforms.errors import MappingFileError, Problem
from swap_transforms.expectations import compare, matches
from swap_transforms.preview import InputError, encoder, load_engine, read_records, source_notes
from swap_transforms.testfile import Document, check_structure, load

#: The exception records of a test run carry this time, so that runs are comparable.
TEST_CLOCK = "1970-01-01T00:00:00Z"
EVENTS = "klaviyo_events"
PROFILES = "klaviyo_profile_updates"
#: Fields that say which output a record is (as opposed to what it says).
IDENTITY = frozenset({"metric", "unique_id", "update_id", "restock_key", "variant_id", "source_id"})
_EMAIL = re.compile(r"([^\s@'\"<>(),;:\[\]{}]+)@([^\s@'\"<>(),;\[\]{}]+)")


@dataclass(frozen=True)
class Produced:
    """One output record and the rule that produced it (None for a check's rejection)."""

    rule: str | None
    stream: str
    record: dict[str, Any]


@dataclass
class Failure:
    """One broken expectation, with everything an analyst needs to find and fix it."""

    file: str
    line: int | None
    test: str | None
    message: str
    rule: str | None = None
    stream: str | None = None
    field: str | None = None
    expected: Any = None
    actual: Any = None
    compared: bool = False

    def render(self, *, show_emails: bool) -> str:
        place = self.file if self.line is None else f"{self.file}:{self.line}"
        head = f"FAIL {place}" + (f"  test '{self.test}'" if self.test else "")
        lines = [head, f"  {self.message}"]
        if self.rule is not None:
            lines.append(f"  rule      {self.rule}" + (f" ({self.stream})" if self.stream else ""))
        elif self.stream is not None:
            lines.append(f"  output    {self.stream}")
        if self.field:
            lines.append(f"  field     {self.field}")
        if self.compared:
            lines.append(f"  expected  {shown(self.expected, show_emails=show_emails)}")
            lines.append(f"  actual    {shown(self.actual, show_emails=show_emails)}")
        return "\n".join(lines)


def shown(value: Any, *, show_emails: bool) -> str:
    """A value as JSON (Decimal as its number), e-mail addresses masked unless asked."""
    text = value if isinstance(value, str) and value.startswith("(") else _json(value)
    return text if show_emails else _EMAIL.sub(lambda m: f"{m.group(1)[:1]}***@{m.group(2)}", text)


def _json(value: Any) -> str:
    try:
        return encoder.encode(value).decode()  # Decimal as a JSON number, as the mapper sends it
    except (TypeError, ValueError):
        return json.dumps(value, default=str, ensure_ascii=False)


def map_by_rule(engine: MappingEngine, stream: str, record: dict[str, Any]) -> list[Produced]:
    """What `engine.map_record` gives, each output with the rule that made it.

    The engine runs checks, then rules in order, appending to one list; reading that list's
    growth after each rule attributes every output. A test checks this equals `map_record`.
    """
    produced: list[Produced] = []
    outputs: list[tuple[str, dict[str, Any]]] = []
    for rules in engine._streams.get(stream, ()):
        run = _RecordRun(engine, rules, record, outputs)
        start = len(outputs)
        if run._rejected():
            produced.extend(Produced(None, name, out) for name, out in outputs[start:])
            continue
        for rule in rules.rules:
            start = len(outputs)
            run._run_rule(rule)
            produced.extend(Produced(rule.name, name, out) for name, out in outputs[start:])
    return produced


@dataclass
class Contract:
    """The public names (contract.yml): metrics, profile properties and list properties."""

    file: str
    metrics: dict[str, dict[str, Any]]
    profile_properties: set[str]
    lists: set[str]

    @classmethod
    def load(cls, path: Path, shown_as: str) -> Contract:
        document = load(path, shown_as)
        check_structure(document, "contract.schema.json")
        data = document.data
        return cls(
            shown_as,
            {name: spec or {} for name, spec in data["metrics"].items()},
            set(data.get("profile_properties") or {}),
            set(data.get("lists") or {}),
        )


@dataclass
class Coverage:
    """What the tests of one file expected, to find rules and contract names no test covers."""

    rules: set[str] = field(default_factory=set)
    checks: set[str] = field(default_factory=set)
    metrics: set[str] = field(default_factory=set)
    profile_properties: set[str] = field(default_factory=set)
    lists: set[str] = field(default_factory=set)

    def note(self, produced: Produced, expected: dict[str, Any]) -> None:
        if produced.rule is not None:
            self.rules.add(produced.rule)
        if produced.stream == EVENTS and "metric" in expected:
            self.metrics.add(str(expected["metric"]))
        if produced.stream == PROFILES:
            self.profile_properties.update(expected.get("properties") or {})
            for change in ("append", "unappend"):
                self.lists.update(expected.get(change) or {})


class TestFile:
    """One test file, loaded and checked, with the engine of the mappings it tests."""

    __test__ = False  # not a pytest class

    def __init__(self, path: Path, mapping_override: list[str] | None) -> None:
        self.path = path
        self.shown = str(path)
        self.document: Document = load(path, self.shown)
        check_structure(self.document, "mapping_tests.schema.json")
        data = self.document.data
        base = path.parent
        if mapping_override:
            self.mappings = list(mapping_override)
        elif data.get("mapping"):
            self.mappings = [str(base / name) for name in data["mapping"]]
        else:
            self.mappings = [str(base / (path.name.removesuffix(".tests.yml") + ".yml"))]
        self.engine = load_engine(self.mappings, clock=lambda: TEST_CLOCK)
        self.contract = None
        if data.get("contract"):
            self.contract = Contract.load(base / data["contract"], str(base / data["contract"]))
        self._check_names()
        self._samples: dict[Path, list[tuple[str, Any]]] = {}

    def _check_names(self) -> None:
        seen: dict[str, int] = {}
        problems: list[Problem] = []
        for index, test in enumerate(self.document.data["tests"]):
            line = self.document.line(("tests", index))
            if test["name"] in seen:
                message = (
                    f"test '{test['name']}' is named twice (first at line {seen[test['name']]})"
                )
                problems.append(Problem(self.shown, line, "", message))
            seen[test["name"]] = line or 0
            stream = test.get("stream") or self.document.data.get("stream")
            if stream is not None and not self.engine.handles(stream):
                message = f"test '{test['name']}': the mapping has no rules for stream '{stream}'"
                problems.append(Problem(self.shown, line, "", message))
        if problems:
            raise MappingFileError(problems)

    def stream_of(self, test: dict[str, Any], line: int | None) -> str:
        stream = test.get("stream") or self.document.data.get("stream")
        if stream is not None:
            return str(stream)
        if len(self.engine.source_streams) == 1:
            return self.engine.source_streams[0]
        message = "name the source stream (stream:), the mapping reads several"
        raise MappingFileError([Problem(self.shown, line, "", message)])

    def records(self, test: dict[str, Any], stream: str, index: int) -> list[Any]:
        given = test["input"]
        if "record" in given:
            return [given["record"]]
        if "records" in given:
            return list(given["records"])
        path = self.path.parent / given["sample"]
        if path not in self._samples:
            try:
                text = path.read_text(encoding="utf-8")
                self._samples[path] = list(read_records(text, stream))
            except (OSError, InputError) as error:
                where = ("tests", index, "input", "sample")
                raise MappingFileError([self.document.problem(where, f"{path}: {error}")]) from None
        records = [record for name, record in self._samples[path] if name == stream]
        if "keys" not in given:
            return records
        by_key = {self.engine.key_of(stream, record): record for record in records}
        missing = [key for key in given["keys"] if key not in by_key]
        if missing:
            where = ("tests", index, "input", "keys")
            message = f"keys not in {given['sample']}: {', '.join(missing)}"
            raise MappingFileError([self.document.problem(where, message)])
        return [by_key[key] for key in given["keys"]]


class FileRun:
    """Runs every test of a file, then the file-wide checks (coverage, contract)."""

    def __init__(self, file: TestFile, only: str | None = None) -> None:
        self.file = file
        self.only = only
        self.failures: list[Failure] = []
        self.coverage = Coverage()
        self.all_outputs: list[tuple[str, int | None, Produced]] = []
        self.tests_run = 0

    def run(self) -> list[Failure]:
        for index, test in enumerate(self.file.document.data["tests"]):
            if self.only is not None and self.only.lower() not in test["name"].lower():
                continue
            self.tests_run += 1
            self._run_test(index, test)
        if self.only is None:
            self._check_coverage()
            if self.file.contract is not None:
                self._check_contract(self.file.contract)
        return self.failures

    def _fail(self, path: tuple[str | int, ...], test: str | None, message: str, **kw: Any) -> None:
        line = self.file.document.line(path) if path else None
        self.failures.append(Failure(self.file.shown, line, test, message, **kw))

    def _run_test(self, index: int, test: dict[str, Any]) -> None:
        name = test["name"]
        stream = self.file.stream_of(test, self.file.document.line(("tests", index)))
        produced: list[Produced] = []
        for record in self.file.records(test, stream, index):
            produced.extend(map_by_rule(self.file.engine, stream, record))
        line = self.file.document.line(("tests", index))
        self.all_outputs.extend((name, line, item) for item in produced)
        exceptions = self.file.engine.exception_streams
        normal = [item for item in produced if item.stream not in exceptions]
        rejected = [item for item in produced if item.stream in exceptions]
        # Rejections first: an unexpected one usually explains a missing output.
        self._expect_rejections(index, name, test, rejected)
        before = len(self.failures)
        used = self._expect_outputs(index, name, test, normal)
        missing = {failure.stream for failure in self.failures[before:]}
        self._expect_absent(index, name, test, normal)
        if test.get("complete"):
            # A stream with a missing output already shows its closest output: no repeat.
            for stream_name in set(test.get("outputs") or {}) - missing:
                for item in normal:
                    if item.stream == stream_name and id(item) not in used:
                        self._fail(
                            ("tests", index, "outputs", stream_name),
                            name,
                            "an output the test does not list (complete: true)",
                            rule=item.rule,
                            stream=item.stream,
                            expected="(nothing more)",
                            actual=_identity(item.record),
                            compared=True,
                        )

    def _expect_outputs(
        self, index: int, name: str, test: dict[str, Any], normal: list[Produced]
    ) -> set[int]:
        used: set[int] = set()
        for stream, entries in (test.get("outputs") or {}).items():
            candidates = [item for item in normal if item.stream == stream]
            for number, expected in enumerate(entries):
                path = ("tests", index, "outputs", stream, number)
                found = next(
                    (c for c in candidates if id(c) not in used and matches(expected, c.record)),
                    None,
                )
                if found is not None:
                    used.add(id(found))
                    self.coverage.note(found, expected)
                    continue
                free = [c for c in candidates if id(c) not in used] or candidates
                self._report_missing(path, name, stream, expected, free)
        return used

    def _report_missing(
        self,
        path: tuple[str | int, ...],
        name: str,
        stream: str,
        expected: dict[str, Any],
        free: list[Produced],
    ) -> None:
        if not free:
            rules = self._rules_emitting(stream)
            self._fail(
                path,
                name,
                f"no '{stream}' output at all (rules that write it: {', '.join(rules) or 'none'})",
                stream=stream,
                expected=expected,
                actual="(nothing)",
                compared=True,
            )
            return

        # The closest output: same identity (metric, id) first, then the fewest differing fields.
        def distance(candidate: Produced) -> tuple[int, int]:
            differing = {m.field for m in compare(expected, candidate.record)}
            return len(differing & IDENTITY), len(differing)

        best = min(free, key=distance)
        mismatches = compare(expected, best.record)
        if any(m.field in IDENTITY for m in mismatches):
            # No output is this one with other values: say what was produced instead.
            writers = ", ".join(self._rules_emitting(stream)) or "none"
            wanted = {key: value for key, value in expected.items() if key in IDENTITY}
            self._fail(
                path,
                name,
                f"expected '{stream}' output not produced (rules that write it: {writers})",
                stream=stream,
                expected=wanted,
                actual=[_identity(item.record) for item in free][:20],
                compared=True,
            )
            return
        for mismatch in mismatches:
            self._fail(
                path,
                name,
                f"expected '{stream}' output differs in '{mismatch.field}'",
                rule=best.rule,
                stream=stream,
                field=mismatch.field,
                expected=mismatch.expected,
                actual=mismatch.actual,
                compared=True,
            )

    def _rules_emitting(self, stream: str) -> list[str]:
        return [
            rule.name
            for runs in self.file.engine._streams.values()
            for rules in runs
            for rule in rules.rules
            if any(emit.stream == stream for emit in rule.emits)
        ]

    def _expect_absent(
        self, index: int, name: str, test: dict[str, Any], normal: list[Produced]
    ) -> None:
        for stream, entries in (test.get("absent") or {}).items():
            for number, unwanted in enumerate(entries):
                for item in normal:
                    if item.stream == stream and matches(unwanted, item.record):
                        self._fail(
                            ("tests", index, "absent", stream, number),
                            name,
                            "an output the test says must not exist: "
                            + shown(unwanted, show_emails=False),
                            rule=item.rule,
                            stream=stream,
                            expected="(no such output)",
                            actual=_identity(item.record),
                            compared=True,
                        )

    def _expect_rejections(
        self, index: int, name: str, test: dict[str, Any], rejected: list[Produced]
    ) -> None:
        left = list(rejected)
        for number, expected in enumerate(test.get("rejected") or []):
            path = ("tests", index, "rejected", number)
            found = next((item for item in left if _is_rejection(expected, item.record)), None)
            if found is None:
                actual = [_rejection_summary(item.record) for item in left] or "(no rejection)"
                self._fail(
                    path,
                    name,
                    "expected rejection not produced",
                    rule=expected.get("rule") or "(a check)",
                    field="reason",
                    expected=expected,
                    actual=actual,
                    compared=True,
                )
                continue
            left.remove(found)
            if found.record.get("rule") is None:
                self.coverage.checks.add(str(found.record["reason"]))
            else:
                self.coverage.rules.add(str(found.record["rule"]))
        for item in left:
            self._fail(
                ("tests", index),
                name,
                "unexpected rejection (list it under rejected: if intended)",
                rule=item.record.get("rule") or "(a check)",
                stream=item.stream,
                field="reason",
                expected="(no rejection)",
                actual=_rejection_summary(item.record),
                compared=True,
            )

    def _check_coverage(self) -> None:
        for runs in self.file.engine._streams.values():
            for rules in runs:
                for rule in rules.rules:
                    if rule.name not in self.coverage.rules:
                        message = (
                            f"rule '{rule.name}' ({rules.program.file}) is not covered: no test "
                            "expects an output or a rejection of it"
                        )
                        self._fail((), None, message, rule=rule.name)
                for check in rules.checks:
                    if check.reason not in self.coverage.checks:
                        message = f"check '{check.reason}' is not covered: no test expects it"
                        self._fail((), None, message)

    def _check_contract(self, contract: Contract) -> None:
        sent: dict[tuple[str, str], tuple[str, int | None, Produced]] = {}
        for test, line, item in self.all_outputs:
            for kind, names in _public_names(item):
                for public in names:
                    sent.setdefault((kind, public), (test, line, item))
            if item.stream == EVENTS:
                self._check_event_properties(contract, test, line, item)
        listed = {
            "metric": set(contract.metrics),
            "profile property": contract.profile_properties,
            "list": contract.lists,
        }
        for (kind, public), (test, line, item) in sorted(sent.items()):
            if public not in listed[kind]:
                message = (
                    f"{kind} '{public}' is not in the contract list {contract.file}: a new "
                    "public name is added there first (flows and segments depend on it)"
                )
                self.failures.append(
                    Failure(
                        self.file.shown, line, test, message, rule=item.rule, stream=item.stream
                    )
                )
        expected = {
            "metric": self.coverage.metrics,
            "profile property": self.coverage.profile_properties,
            "list": self.coverage.lists,
        }
        for kind, names in listed.items():
            for public in sorted(names - expected[kind]):
                message = (
                    f"{kind} '{public}' of the contract list {contract.file} is expected by no "
                    "test: add a test that expects it (or remove it from the list)"
                )
                self._fail((), None, message)

    def _check_event_properties(
        self, contract: Contract, test: str, line: int | None, item: Produced
    ) -> None:
        spec = contract.metrics.get(str(item.record.get("metric")))
        if not spec or "properties" not in spec:
            return
        have, want = set(item.record.get("properties") or {}), set(spec["properties"])
        if have != want:
            message = (
                f"event '{item.record.get('metric')}' properties differ from the contract list "
                f"{contract.file}"
            )
            failure = Failure(
                self.file.shown,
                line,
                test,
                message,
                rule=item.rule,
                stream=item.stream,
                field="properties",
                expected=f"also {sorted(want - have)}" if want - have else "(no more)",
                actual=f"also {sorted(have - want)}" if have - want else "(none missing)",
                compared=True,
            )
            if not any(f.message == message for f in self.failures):
                self.failures.append(failure)


def _public_names(item: Produced) -> Iterable[tuple[str, Iterable[str]]]:
    if item.stream == EVENTS and "metric" in item.record:
        yield "metric", [str(item.record["metric"])]
    if item.stream == PROFILES:
        yield "profile property", list(item.record.get("properties") or {})
        for change in ("append", "unappend"):
            yield "list", list(item.record.get(change) or {})


def _identity(record: dict[str, Any]) -> dict[str, Any]:
    """The fields that say which output a record is, or the record if it has none."""
    named = {key: value for key, value in record.items() if key in IDENTITY}
    return named or record


def _is_rejection(expected: dict[str, Any], record: dict[str, Any]) -> bool:
    detail = expected.get("detail")
    if detail is not None and detail not in (record.get("detail") or ""):
        return False
    return matches({k: v for k, v in expected.items() if k != "detail"}, record)


def _rejection_summary(record: dict[str, Any]) -> dict[str, Any]:
    return {key: record.get(key) for key in ("reason", "rule", "source_key", "detail")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swap-transforms-test",
        description="Run the YAML tests of mapping files (<mapping>.tests.yml).",
    )
    parser.add_argument(
        "paths",
        nargs="*",
        help="test files or folders holding *.tests.yml (default: transforms/, else .)",
    )
    parser.add_argument(
        "--mapping",
        action="append",
        help="test these mapping files instead of the ones the test file names (repeatable)",
    )
    parser.add_argument("-k", dest="only", help="run only the tests whose name contains this")
    parser.add_argument(
        "--show-emails", action="store_true", help="print e-mail addresses in failures unmasked"
    )
    return parser


def discover(paths: list[str]) -> list[Path]:
    if not paths:
        paths = ["transforms"] if Path("transforms").is_dir() else ["."]
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        found.extend(sorted(path.glob("*.tests.yml")) if path.is_dir() else [path])
    return found


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Rejections are what tests look at; the engine's warning per rejection would be noise.
    logging.getLogger("swap_transforms").setLevel(logging.ERROR)
    files = discover(args.paths)
    if not files:
        sys.stderr.write("swap-transforms-test: no *.tests.yml file found\n")
        return 2
    out = sys.stdout
    failed = ran = 0
    for path in files:
        try:
            run = FileRun(TestFile(path, args.mapping), args.only)
            failures = run.run()
        except MappingFileError as error:
            sys.stderr.write(f"swap-transforms-test: {path} cannot be used:\n{error}\n")
            return 2
        ran += run.tests_run
        failed += len(failures)
        for failure in failures:
            out.write(failure.render(show_emails=args.show_emails) + "\n\n")
        for note in source_notes(run.file.engine):
            out.write(f"note: {note}\n")
        verdict = "ok" if not failures else f"{len(failures)} failure(s)"
        out.write(f"{path}: {run.tests_run} test(s), {verdict}\n")
    out.write(f"\n{ran} test(s) in {len(files)} file(s): {'FAILED' if failed else 'passed'}\n")
    return 1 if failed else 0
