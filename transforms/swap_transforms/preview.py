"""`swap-transforms-preview`: what a mapping would send to Klaviyo, for analysts.

Reads sample input (Singer messages as a tap prints them, JSON records one per line, or a JSON
array of records) and prints, per source record, every output with its properties (events,
profile updates, catalog changes) and the rejections with their reasons, then a summary.
`--format json` prints the output records themselves, one JSON object per line.

    swap-transforms-preview --mapping swap_to_klaviyo.yml transforms/samples/returns.jsonl
    tap-swapcommerce --config tap.json | swap-transforms-preview --mapping mine.yml -

Both formats mask e-mail addresses (`a***@example.com`) so that a preview can be pasted into a
ticket; `--show-emails` prints them as they would be sent. The same input always gives the same
output (an exception record's `occurred_at` is the source record's update time, not the clock),
so a preview can be kept as a snapshot and compared. `--check` exits 3 when any record hits a
mapping error, so a script or CI can gate on it. Without `--mapping`, the files named by
`SWAP_TRANSFORMS_MAPPING_FILES` are used (Meltano sets it from the plugin's `mapping_files`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import IO, Any

import msgspec

from swap_transforms.contract import Contract
from swap_transforms.engine import MappingEngine, Output, utc_now
from swap_transforms.errors import MappingFileError
from swap_transforms.overrides import VARIABLE, requested
from swap_transforms.source_check import load_sources

SINGER_TYPES = frozenset({"SCHEMA", "RECORD", "STATE", "ACTIVATE_VERSION", "BATCH"})
EVENTS = "klaviyo_events"
PROFILES = "klaviyo_profile_updates"
CATALOG = "klaviyo_catalog_variants"
#: An exception record's time when its source record has none (preview output is reproducible).
EPOCH = "1970-01-01T00:00:00Z"
#: Rejections that mean the mapping (not the data) is wrong; `--check` fails on them.
MAPPING_ERRORS = frozenset({"mapping_error", "invalid_output", "tolerated_mapping_error"})
EXIT_MAPPING_ERRORS = 3
_EMAIL = re.compile(r"([^\s@'\"<>(),;:\[\]{}]+)@([^\s@'\"<>(),;\[\]{}]+\.[^\s@'\"<>(),;\[\]{}]+)")


def _enc_hook(value: Any) -> Any:
    """What singer-sdk's encoder does with values JSON has no type for (the mapper sends them)."""
    return value.isoformat(sep="T") if isinstance(value, datetime) else str(value)


#: singer-sdk's msgspec encoder, without importing singer-sdk (most of a preview's start-up).
encoder = msgspec.json.Encoder(enc_hook=_enc_hook, decimal_format="number")


class InputError(Exception):
    """The sample input cannot be read; says where, never what (it may be personal data)."""


def load_engine(files: list[str], clock: Callable[[], str] = utc_now) -> MappingEngine:
    """The engine as a run builds it, checked against the tap's shipped source schemas.

    A run checks field names when the tap's SCHEMA arrives; previews and tests have no tap, so
    the schemas shipped with the mapper stand in (a typo is refused at load, with its line).
    """
    contract = Contract.load(os.environ.get("SWAP_TRANSFORMS_CONTRACT_SCHEMAS") or None)
    return MappingEngine.from_files(files, clock=clock, contract=contract, sources=load_sources())


def source_notes(engine: MappingEngine) -> list[str]:
    """Fields that may be null where null fails, with their fix (they do not stop a run)."""
    return [str(note) for notes in engine.source_warnings.values() for note in notes]


def read_records(text: str, default_stream: str | None) -> Iterator[tuple[str, Any]]:
    """(stream, record) pairs from Singer messages, JSON lines, a JSON array or one object."""
    try:
        whole = json.loads(text, parse_float=Decimal)
    except ValueError:
        pass  # several JSON documents: one per line
    else:
        items = whole if isinstance(whole, list) else [whole]
        for item in items:
            yield from _item(item, default_stream, "the input")
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line, parse_float=Decimal)
        except ValueError:
            msg = f"line {number} is not valid JSON"
            raise InputError(msg) from None
        yield from _item(item, default_stream, f"line {number}")


def _item(item: Any, default_stream: str | None, where: str) -> Iterator[tuple[str, Any]]:
    if isinstance(item, dict) and isinstance(item.get("type"), str):
        if item["type"] not in SINGER_TYPES:
            msg = f"{where}: unknown Singer message type"
            raise InputError(msg)
        if item["type"] == "RECORD":
            yield item["stream"], item["record"]
    else:
        yield _plain(item, default_stream, where)


def _plain(record: Any, default_stream: str | None, where: str) -> tuple[str, Any]:
    if not isinstance(record, dict):
        msg = f"{where}: a record must be a JSON object"
        raise InputError(msg)
    if default_stream is None:
        msg = f"{where}: plain records need --stream (the mapping reads several streams)"
        raise InputError(msg)
    return default_stream, record


def mask_email(value: Any) -> str:
    if not isinstance(value, str) or "@" not in value:
        return str(value)
    local, _, domain = value.partition("@")
    return f"{local[:1]}***@{domain}"


#: Output fields that name, reach or locate a person (the target's standard profile
#: attributes): masked like e-mails, their first character kept.
PERSONAL_FIELDS = frozenset(
    {"first_name", "last_name", "phone_number", "address1", "address2", "zip"}
)


def mask_emails(value: Any) -> Any:
    """`value` with every e-mail address in its texts, and every personal field, masked."""
    if isinstance(value, str):
        return _EMAIL.sub(lambda m: f"{m.group(1)[:1]}***@{m.group(2)}", value)
    if isinstance(value, dict):
        return {
            key: f"{member[:1]}***"
            if key in PERSONAL_FIELDS and isinstance(member, str) and member
            else mask_emails(member)
            for key, member in value.items()
        }
    if isinstance(value, list):
        return [mask_emails(member) for member in value]
    return value


def _shown(value: Any) -> str:
    if isinstance(value, (str, Decimal)):
        return str(value)
    return encoder.encode(value).decode()


def reproducible(outputs: list[Output], exception_streams: frozenset[str]) -> list[Output]:
    """Outputs whose exception records carry the source's update time instead of the clock's."""
    for name, record in outputs:
        if name in exception_streams and "occurred_at" in record:
            record["occurred_at"] = record.get("source_updated_at") or EPOCH
    return outputs


def _money(value: Any, currency: Any) -> str:
    if value is None:
        return ""
    return f"  value {value}{f' {currency}' if currency else ''}"


def _properties(properties: dict[str, Any]) -> str:
    return ", ".join(f"{key}={_shown(value)}" for key, value in properties.items())


def _profile(profile: Any) -> str:
    if not isinstance(profile, dict) or not profile:
        return ""
    who = profile.get("email") or profile.get("external_id") or profile.get("phone_number")
    return f"  for {who}" if who else ""


class TextReport:
    """Human-readable lines per source record, and the totals at the end."""

    def __init__(self, out: IO[str], exceptions: frozenset[str], *, show_emails: bool) -> None:
        self.out = out
        self.exceptions = exceptions
        self.show_emails = show_emails
        self.sources = 0
        self.counts: Counter[str] = Counter()
        self.metrics: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.others: Counter[str] = Counter()
        self.unmapped: Counter[str] = Counter()

    def _email(self, value: Any) -> str:
        return str(value) if self.show_emails else mask_email(value)

    def _masked(self, text: str) -> str:
        return text if self.show_emails else str(mask_emails(text))

    def record(self, stream: str, key: str | None, outputs: list[Output]) -> None:
        self.sources += 1
        self.out.write(f"{stream} {key if key is not None else '(no key)'}\n")
        if not outputs:
            self.out.write("  (nothing)\n")
        for name, record in outputs:
            self.out.write(self._masked(f"  {self._line(name, record)}\n"))
            if name == EVENTS and record.get("properties"):
                self.out.write(self._masked(f"            {_properties(record['properties'])}\n"))

    def _line(self, name: str, record: dict[str, Any]) -> str:
        if name in self.exceptions:
            self.counts["rejected"] += 1
            self.reasons[record["reason"]] += 1
            rule = f"rule '{record['rule']}': " if record.get("rule") else ""
            detail = f": {record['detail']}" if record.get("detail") else ""
            return f"REJECTED  {rule}{record['reason']}{detail}"
        if name == EVENTS:
            self.counts["events"] += 1
            self.metrics[record["metric"]] += 1
            value = _money(record.get("value"), record.get("value_currency"))
            metric, unique_id, time = record["metric"], record["unique_id"], record["time"]
            who = _profile(record.get("profile"))
            return f"event     {metric:<17} {unique_id}  at {time}{value}{who}"
        if name == PROFILES:
            self.counts["profile updates"] += 1
            who = self._email(record.get("email") or record.get("external_id"))
            parts = [f"profile   {who}  as of {record['as_of']}"]
            for change in ("append", "unappend"):
                for prop, values in (record.get(change) or {}).items():
                    parts.append(f"{change} {prop} {json.dumps(values, default=str)}")
            if record.get("properties"):
                parts.append(f"set {_properties(record['properties'])}")
            return "; ".join(parts)
        if name == CATALOG:
            self.counts["catalog updates"] += 1
            delta = record.get("inventory_delta")
            when = f"  at {record['time']}" if record.get("time") else ""
            key = record["restock_key"]
            return f"catalog   {record['variant_id']}  {delta:+}{when}  (restock {key})"
        self.others[name] += 1
        return f"{name}  {json.dumps(record, default=str)}"

    def summary(self) -> None:
        parts = [f"{self.sources} source record(s)"]
        for what, detail in (
            ("events", self.metrics),
            ("profile updates", None),
            ("catalog updates", None),
            ("rejected", self.reasons),
        ):
            by = f" ({', '.join(f'{k} {v}' for k, v in sorted(detail.items()))})" if detail else ""
            parts.append(f"{self.counts[what]} {what}{by}")
        parts.extend(f"{count} {name}" for name, count in sorted(self.others.items()))
        parts.extend(
            f"{count} record(s) of '{name}' skipped (no rules)"
            for name, count in sorted(self.unmapped.items())
        )
        self.out.write("\nSummary: " + "; ".join(parts) + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swap-transforms-preview",
        description="Show what a mapping would send to Klaviyo for sample input.",
    )
    parser.add_argument(
        "--mapping",
        action="append",
        help=f"mapping file (repeat for several, applied in order); default: ${VARIABLE}",
    )
    parser.add_argument("--stream", help="source stream of plain JSON records (e.g. returns)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--show-emails", action="store_true", help="print e-mail addresses unmasked"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit {EXIT_MAPPING_ERRORS} if any record hits a mapping error (for scripts and CI)",
    )
    parser.add_argument(
        "input",
        nargs="?",
        default="-",
        help="file with Singer messages, JSON lines or a JSON array; '-' for stdin (default)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Rejections are part of the report; the engine's warning lines would only repeat them.
    logging.getLogger("swap_transforms").setLevel(logging.ERROR)
    try:
        files = args.mapping or requested()
        if not files:
            message = f"name the mapping files: --mapping FILE (or set {VARIABLE})\n"
            sys.stderr.write(f"swap-transforms-preview: {message}")
            return 2
        engine = load_engine(files)
    except MappingFileError as error:
        sys.stderr.write(f"swap-transforms-preview: the mapping cannot be used:\n{error}\n")
        return 2

    default_stream = args.stream
    if default_stream is None and len(engine.source_streams) == 1:
        default_stream = engine.source_streams[0]
    try:
        if args.input == "-":
            return _run(engine, sys.stdin, default_stream, args)
        with open(args.input, encoding="utf-8") as handle:
            return _run(engine, handle, default_stream, args)
    except (InputError, OSError) as error:
        sys.stderr.write(f"swap-transforms-preview: {error}\n")
        return 1


def _run(
    engine: MappingEngine, stream: IO[str], default_stream: str | None, args: argparse.Namespace
) -> int:
    out = sys.stdout
    report = None
    if args.format == "text":
        report = TextReport(out, engine.exception_streams, show_emails=args.show_emails)
        for note in source_notes(engine):
            out.write(f"note: {note}\n")
    errors: Counter[str] = Counter()
    for source, record in read_records(stream.read(), default_stream):
        if not engine.handles(source):
            if report is not None:
                report.unmapped[source] += 1
            continue
        outputs = reproducible(engine.map_record(source, record), engine.exception_streams)
        errors.update(
            f"rule '{output['rule']}': {output['reason']}"
            for name, output in outputs
            if name in engine.exception_streams and output.get("reason") in MAPPING_ERRORS
        )
        if report is None:
            for name, output in outputs:
                shown = output if args.show_emails else mask_emails(output)
                out.write(encoder.encode({"stream": name, "record": shown}).decode() + "\n")
        else:
            report.record(source, engine.key_of(source, record), outputs)
    if report is not None:
        report.summary()
    if args.check and errors:
        counts = "; ".join(f"{what} x{count}" for what, count in sorted(errors.items()))
        sys.stderr.write(f"swap-transforms-preview: mapping errors: {counts}\n")
        return EXIT_MAPPING_ERRORS
    return 0
