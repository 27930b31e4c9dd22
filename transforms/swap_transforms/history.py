"""`swap-transforms-history`: a changed mapping over past Swap returns, diffed with the committed.

Before merging a mapping change an analyst wants to see what it does to real data: which events
and profile updates it adds, removes or changes. This command reads a window of past returns
(by default it runs `meltano invoke tap-swapcommerce` with `TAP_SWAPCOMMERCE_START_DATE` set to
the window's start: GET requests only, and `meltano invoke` neither reads nor writes the
pipeline's bookmark nor takes its run lock), maps every return with both mappings in memory and
prints the differences. Nothing reaches the target, its ledger or Klaviyo.

    swap-transforms-history --since 2026-05-01 --until 2026-05-08
    swap-transforms-history --mapping mine.yml --since 2026-05-01 --input returns.jsonl

The committed mapping is the files the pipeline runs (`$SWAP_TRANSFORMS_MAPPING_FILES`, which
Meltano sets from the plugin's `mapping_files`) as git's HEAD has them (`--base-ref` picks another
commit, `--base` other files). The changed mapping is `--mapping`, or by default the same files
as they are in the working copy (an analyst edits swap_to_klaviyo.yml in place).
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from swap_transforms.engine import MappingEngine
from swap_transforms.errors import MappingFileError
from swap_transforms.expectations import Mismatch, compare
from swap_transforms.mapping_tests import TEST_CLOCK, Produced, map_by_rule, shown
from swap_transforms.overrides import VARIABLE, requested
from swap_transforms.preview import InputError, load_engine, mask_emails, read_records

DEFAULT_MAPPING = "transforms/swap_to_klaviyo.yml"
TAP_START = "TAP_SWAPCOMMERCE_START_DATE"
EXIT_INPUT, EXIT_MAPPING = 1, 2


class HistoryError(Exception):
    """The window cannot be read or the committed mapping cannot be found: what to do."""


def instant(text: str) -> datetime:
    """An ISO date or time; a date means its midnight UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


@dataclass
class Window:
    """Returns whose `updated_at` field is in [since, until)."""

    since: datetime
    until: datetime | None

    def holds(self, value: Any) -> bool:
        try:
            moment = instant(str(value))
        except ValueError:
            return True  # an unreadable time: map it (the mapping decides what that means)
        return moment >= self.since and (self.until is None or moment < self.until)

    def __str__(self) -> str:
        until = "now" if self.until is None else self.until.isoformat()
        return f"{self.since.isoformat()} .. {until}"


def tap_lines(command: str, window: Window) -> Iterator[str]:
    """The tap's stdout lines; the tap reads from the window's start, without state."""
    argv = shlex.split(command)
    executable = _program(argv[0])
    env = {**os.environ, TAP_START: window.since.isoformat().replace("+00:00", "Z")}
    try:
        process = subprocess.Popen(  # noqa: S603 - the analyst's own command line
            [executable, *argv[1:]], stdout=subprocess.PIPE, text=True, env=env
        )
    except OSError as error:
        msg = f"cannot run the tap ({command}): {error.strerror}; give --input or --tap-command"
        raise HistoryError(msg) from None
    assert process.stdout is not None
    with process:
        yield from process.stdout
    if process.returncode != 0:
        msg = f"the tap ({command}) exited {process.returncode}: see its log above"
        raise HistoryError(msg)


def _program(name: str) -> str:
    """`name` on PATH; for meltano also the link Meltano keeps in its run folder.

    Under `meltano invoke`, PATH leads to this plugin's virtualenv, which holds no meltano.
    """
    found = shutil.which(name)
    if found or name != "meltano":
        return found or name
    root = os.environ.get("MELTANO_SYS_DIR_ROOT") or str(
        Path(os.environ.get("MELTANO_PROJECT_ROOT", ".")) / ".meltano"
    )
    link = Path(root) / "run" / "bin"
    return str(link) if link.exists() else name


def committed_copy(files: list[str], ref: str, into: Path) -> list[str]:
    """The mapping files (and whatever they include) as commit `ref` has them, under `into`."""
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        folders = {str(Path(f).resolve().parent.relative_to(top)) for f in files}
        archive = subprocess.run(  # noqa: S603 - the ref is the analyst's own argument
            ["git", "-C", top, "archive", ref, *sorted(folders)],  # noqa: S607
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(into, filter="data")
    except (OSError, ValueError, tarfile.TarError, subprocess.CalledProcessError):
        msg = f"cannot read the committed mapping at git {ref}: give it with --base FILE"
        raise HistoryError(msg) from None
    return [str(into / Path(f).resolve().relative_to(top)) for f in files]


def key_of(engine: MappingEngine, item: Produced) -> tuple[str, ...]:
    """The output record's identity: its stream's key properties."""
    keys = engine.outputs[item.stream].key_properties if item.stream in engine.outputs else []
    return (item.stream, *(str(item.record.get(k)) for k in keys))


@dataclass
class Diff:
    """What the changed mapping adds, removes and changes, per output stream."""

    added: list[Produced] = field(default_factory=list)
    removed: list[Produced] = field(default_factory=list)
    changed: list[tuple[Produced, Produced]] = field(default_factory=list)
    unchanged: Counter[str] = field(default_factory=Counter)
    sources: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def add(self, base: list[Produced], mine: list[Produced], engines: tuple[Any, Any]) -> None:
        old = {key_of(engines[0], item): item for item in base}
        new = {key_of(engines[1], item): item for item in mine}
        for key, item in new.items():
            if key not in old:
                self.added.append(item)
            elif old[key].record != item.record:
                self.changed.append((old[key], item))
            else:
                self.unchanged[item.stream] += 1
        self.removed.extend(item for key, item in old.items() if key not in new)
        self.errors.update(
            f"rule '{item.rule}': {item.record.get('reason')}"
            for item in mine
            if item.record.get("reason") in ("mapping_error", "invalid_output")
        )


def _label(item: Produced) -> str:
    record = item.record
    what = record.get("metric") or record.get("reason") or ""
    ident = record.get("unique_id") or record.get("update_id") or record.get("restock_key")
    ident = ident or record.get("source_key") or ""
    return f"{ident}  {what}".strip() + (f"  (rule {item.rule})" if item.rule else "")


class Report:
    """The diff as text: per stream, counts by metric or reason, then a few examples each."""

    def __init__(self, out: IO[str], examples: int, *, show_emails: bool) -> None:
        self.out = out
        self.examples = examples
        self.show_emails = show_emails

    def write(self, diff: Diff) -> None:
        streams = sorted(
            {i.stream for i in diff.added + diff.removed}
            | {new.stream for _, new in diff.changed}
            | set(diff.unchanged)
        )
        for stream in streams:
            added = [i for i in diff.added if i.stream == stream]
            removed = [i for i in diff.removed if i.stream == stream]
            changed = [pair for pair in diff.changed if pair[1].stream == stream]
            self.out.write(
                f"\n{stream}: {len(added)} added, {len(removed)} removed, {len(changed)} changed, "
                f"{diff.unchanged[stream]} unchanged\n"
            )
            self._by_kind("added", added, "+")
            self._by_kind("removed", removed, "-")
            self._changes(changed)
        if not streams:
            self.out.write("\nno output at all\n")

    def _by_kind(self, title: str, items: list[Produced], sign: str) -> None:
        if not items:
            return
        kinds = Counter(str(i.record.get("metric") or i.record.get("reason") or "") for i in items)
        summary = ", ".join(f"{kind or 'records'} {count}" for kind, count in sorted(kinds.items()))
        self.out.write(f"  {title}: {summary}\n")
        for item in items[: self.examples]:
            self.out.write(f"    {sign} {self._masked(_label(item))}\n")

    def _changes(self, pairs: list[tuple[Produced, Produced]]) -> None:
        if not pairs:
            return
        fields = Counter(m.field for old, new in pairs for m in _differences(old, new))
        summary = ", ".join(f"{name} {count}" for name, count in fields.most_common(12))
        self.out.write(f"  changed fields: {summary}\n")
        for old, new in pairs[: self.examples]:
            self.out.write(f"    ~ {self._masked(_label(new))}\n")
            for mismatch in _differences(old, new)[:6]:
                before = shown(mismatch.expected, show_emails=self.show_emails)
                after = shown(mismatch.actual, show_emails=self.show_emails)
                self.out.write(f"        {mismatch.field}: {_cut(before)} -> {_cut(after)}\n")

    def _masked(self, text: str) -> str:
        return text if self.show_emails else str(mask_emails(text))


def _differences(old: Produced, new: Produced) -> list[Mismatch]:
    """Fields that differ, read old -> new (a field only in the new record is one too)."""
    found = compare(old.record, new.record)
    known = {m.field for m in found}
    found += [
        Mismatch(m.field, m.actual, m.expected)
        for m in compare(new.record, old.record)
        if m.field not in known
    ]
    return found


def _cut(text: str, width: int = 120) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swap-transforms-history",
        description=(
            "Run a changed mapping over a window of past Swap returns (read-only) and show how "
            "its output differs from the committed mapping's. Nothing is sent anywhere."
        ),
    )
    parser.add_argument("--since", required=True, help="window start: returns updated from then")
    parser.add_argument("--until", help="window end (exclusive); default: now")
    parser.add_argument(
        "--mapping", action="append", help=f"the changed mapping file(s); default ${VARIABLE}"
    )
    parser.add_argument("--base", action="append", help="the mapping to compare with (files)")
    parser.add_argument("--base-ref", default="HEAD", help="git commit of the committed mapping")
    parser.add_argument("--input", help="read returns from this file ('-': stdin), not the tap")
    parser.add_argument(
        "--tap-command",
        default="meltano invoke tap-swapcommerce",
        help=f"command printing the tap's messages; {TAP_START} is set to --since",
    )
    parser.add_argument("--stream", default="returns", help="source stream (default returns)")
    parser.add_argument("--examples", type=int, default=5, help="examples shown per kind")
    parser.add_argument("--show-emails", action="store_true", help="print e-mails unmasked")
    return parser


def engines(args: argparse.Namespace, workdir: Path) -> tuple[MappingEngine, MappingEngine, str]:
    """(committed, changed) engines and how the committed one was found.

    The committed mapping is what the pipeline runs (`$SWAP_TRANSFORMS_MAPPING_FILES`, set by
    Meltano from `mapping_files`) as git's `--base-ref` has it; the changed one is `--mapping`,
    or the same files as they are in the working copy.
    """
    production = requested() or [DEFAULT_MAPPING]
    mine = args.mapping or production
    base = args.base or committed_copy(production, args.base_ref, workdir)
    label = ", ".join(args.base) if args.base else f"{', '.join(production)} at git {args.base_ref}"
    clock = lambda: TEST_CLOCK  # noqa: E731 - outputs comparable between the two mappings
    return load_engine(base, clock=clock), load_engine(mine, clock=clock), label


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.getLogger("swap_transforms").setLevel(logging.ERROR)
    try:
        window = Window(instant(args.since), instant(args.until) if args.until else None)
    except ValueError:
        sys.stderr.write("swap-transforms-history: --since/--until must be ISO dates or times\n")
        return EXIT_INPUT
    with tempfile.TemporaryDirectory(prefix="swap-history-") as tmp:
        try:
            base, mine, label = engines(args, Path(tmp))
        except MappingFileError as error:
            sys.stderr.write(f"swap-transforms-history: a mapping cannot be used:\n{error}\n")
            return EXIT_MAPPING
        except HistoryError as error:
            sys.stderr.write(f"swap-transforms-history: {error}\n")
            return EXIT_MAPPING
        try:
            diff = run(args, window, (base, mine))
        except (HistoryError, InputError, OSError) as error:
            sys.stderr.write(f"swap-transforms-history: {error}\n")
            return EXIT_INPUT
    out = sys.stdout
    out.write(f"Returns updated {window}: {diff.sources} mapped\n")
    out.write(f"Committed mapping: {label}\n")
    out.write(f"Changed mapping:   {', '.join(args.mapping or requested() or [DEFAULT_MAPPING])}\n")
    Report(out, args.examples, show_emails=args.show_emails).write(diff)
    if diff.errors:
        counts = "; ".join(f"{what} x{count}" for what, count in sorted(diff.errors.items()))
        out.write(f"\nThe changed mapping fails on some returns: {counts}\n")
    return 0


def run(
    args: argparse.Namespace, window: Window, pair: tuple[MappingEngine, MappingEngine]
) -> Diff:
    if args.input == "-":
        text = sys.stdin.read()
    elif args.input:
        text = Path(args.input).read_text(encoding="utf-8")
    else:
        text = "".join(tap_lines(args.tap_command, window))
    diff = Diff()
    updated_field = _updated_field(pair[1], args.stream)
    for stream, record in read_records(text, args.stream):
        if stream != args.stream or not isinstance(record, dict):
            continue
        if updated_field is not None and not window.holds(record.get(updated_field)):
            continue
        diff.sources += 1
        diff.add(map_by_rule(pair[0], stream, record), map_by_rule(pair[1], stream, record), pair)
    return diff


def _updated_field(engine: MappingEngine, stream: str) -> str | None:
    for rules in engine._streams.get(stream, ()):
        return rules.updated_at
    return None
