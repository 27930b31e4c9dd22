"""The target's own Singer reader: a line it cannot use is recorded, never fatal, never logged.

The SDK's reader logs an unparsable line whole (three times, personal data included) and stops
the run, so one bad line would stop every run for ever: the bookmark never moves past it. This
reader turns each such line into an :class:`Unreadable` handed to ``on_unreadable`` (the target
records it in the ledger as ``invalid_record`` / ``unreadable_record``) and goes on with the next
line. Nothing of a line's content reaches a log or an exception message: a problem's detail names
what is wrong and where (a field path, a line number), never a value.

A line is unreadable when it is not JSON, not UTF-8, not an object, nests deeper than
:data:`MAX_DEPTH`, holds an integer too long to read (over 4,300 digits), is a RECORD before its
stream's SCHEMA, lacks what its message type needs, or holds a lone surrogate (half of a
UTF-16 pair: valid JSON that no UTF-8 encoder accepts) in an id, a key, an email or any other
field that identifies something. A lone surrogate in free text (the values inside ``properties``,
an exception's ``detail``) is repaired to U+FFFD and counted (``on_repaired``). A readable number
outside a field's range (``value``, ``inventory_delta``) is the contract's business: the sink sets
it aside as ``out_of_bounds``, naming the field.

The common line costs one msgspec decode and a few C-level scans; the slow, careful paths run
only for lines those scans flag.
"""

from __future__ import annotations

import gc
import hashlib
import json
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any

import msgspec
from singer_sdk.contrib.msgspec import decoder
from singer_sdk.singerlib.encoding.base import GenericSingerReader
from singer_sdk.singerlib.exceptions import InvalidInputLine

from target_klaviyo.ledger import INVALID_RECORD, Outcome, utcnow

#: Deepest nesting a message may have (the envelope counts): deeper input is set aside before
#: any recursive code (validation, copies, JSON encoding) could exhaust the stack.
MAX_DEPTH = 100
#: How much of an unreadable line the ledger keeps (its payload, for a person to inspect).
KEPT_CHARS = 100_000
#: Parts of a field path a detail names (a deep path is cut short).
MAX_PATH_PARTS = 6
#: Stream of an unreadable line whose stream cannot be known.
UNKNOWN_STREAM = "(input)"
#: Top-level record fields whose string values (at any depth) are free text, per stream: names,
#: addresses, comments. Everything else (ids, keys, emails, phones, list values) identifies.
FREE_TEXT: dict[str, frozenset[str]] = {
    "klaviyo_events": frozenset({"properties"}),
    "klaviyo_profile_updates": frozenset(
        {"properties", "first_name", "last_name", "title", "organization", "location"}
    ),
    "integration_exceptions": frozenset({"detail"}),
}
#: Each stream's record key field (the ledger keys outcomes by it).
RECORD_KEYS: dict[str, str] = {
    "klaviyo_events": "unique_id",
    "klaviyo_profile_updates": "update_id",
    "klaviyo_catalog_variants": "restock_key",
    "integration_exceptions": "exception_id",
}
REQUIRED: dict[str, tuple[tuple[str, type], ...]] = {
    "RECORD": (("stream", str), ("record", dict)),
    "SCHEMA": (("stream", str), ("schema", dict)),
    "STATE": (("value", object),),
    "ACTIVATE_VERSION": (("stream", str), ("version", int)),
}
#: Messages about a stream's records, which need the stream's SCHEMA first.
NEED_SCHEMA = frozenset({"RECORD", "ACTIVATE_VERSION"})

_SURROGATE = "[\ud800-\udfff]"
_SURROGATE_TEXT = re.compile(_SURROGATE)
#: Text input (in-process callers) may hold a surrogate itself rather than its escape.
_SUSPECT_TEXT = re.compile(r"\\u[dD][89a-fA-F]|" + _SURROGATE)
_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")
_ESCAPE_TEXT = re.compile(r"\\u[dD][89a-fA-F]")
_SAFE_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_$-]{0,63}")
#: Allocations between two young collections of the cyclic garbage collector while lines are read
#: (Python's default is 700). See :func:`_collector_for_reading`.
READING_GC_THRESHOLD = 50_000


@dataclass
class Unreadable:
    """One input line the target could not use, described without its content."""

    line: int
    detail: str
    stream: str | None = None
    record_key: str | None = None
    #: The line as text (surrogates and invalid bytes escaped), for the ledger's payload only.
    raw: str = ""


class _RefusedError(Exception):
    """Internal: why a line cannot be used, as ``where: what`` (no value in it)."""

    def __init__(self, what: str, where: str = "line") -> None:
        super().__init__(f"{where}: {what}")
        self.what = what
        self.where = where


class QuarantiningReader(GenericSingerReader[Any]):
    """Reads Singer messages; hands each unusable line to :attr:`on_unreadable` and goes on."""

    def __init__(self) -> None:
        super().__init__()
        #: Called for each unusable line; the target records it (nothing is dropped unseen).
        self.on_unreadable: Callable[[Unreadable], None] | None = None
        #: Called with how many free-text strings of a message had lone surrogates repaired.
        self.on_repaired: Callable[[int], None] | None = None
        self._schemas: set[str] = set()

    @property
    def default_input(self) -> IO[Any]:
        return sys.stdin.buffer

    def deserialize_json(self, line: Any) -> dict[str, Any]:
        """One line as a message; raises with a detail that never quotes the line."""
        message = _decode(line)
        if not isinstance(message, dict):
            raise _RefusedError("not a JSON object")
        return message

    @staticmethod
    def assert_line_requires(line_dict: dict[str, Any], requires: set[str]) -> None:
        """The SDK's check, minus quoting the message (it may hold personal data)."""
        missing = sorted(requires - set(line_dict))
        if missing:
            msg = f"A message is missing required key(s) {', '.join(missing)} (not shown)"
            raise InvalidInputLine(msg)

    def process_lines(
        self, file_input: IO[Any] | None, callbacks: dict[str, Callable[[dict[str, Any]], None]]
    ) -> Counter[str]:
        stats: dict[str, int] = defaultdict(int)
        with _collector_for_reading():
            for number, line in enumerate(file_input or self.default_input, start=1):
                if not line.strip():
                    continue
                message = self._message(line, number)
                if message is None:
                    stats["UNREADABLE"] += 1
                    continue
                kind = message["type"]
                callbacks[kind](message)
                if kind == "SCHEMA":
                    self._schemas.add(message["stream"])
                stats[kind] += 1
        return Counter(stats)

    def _message(self, line: Any, number: int) -> dict[str, Any] | None:
        """The line's message, checked; None once an unusable line was handed on."""
        message: dict[str, Any] | None = None
        try:
            message = self.deserialize_json(line)
            self._check(message)
            repaired = _inspect(message, MAX_DEPTH) if _suspect(line) else 0
            if repaired and self.on_repaired is not None:
                self.on_repaired(repaired)
        except _RefusedError as refused:
            self._refuse(line, number, refused, message)
            return None
        return message

    def _check(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        record, stream = message.get("record"), message.get("stream")
        if kind == "RECORD" and type(record) is dict and _name(stream) in self._schemas:
            return  # the usual line, quickly
        if kind not in ("RECORD", "SCHEMA", "STATE", "ACTIVATE_VERSION", "BATCH"):
            raise _RefusedError("not a Singer message type", "type")
        for name, kind_of in REQUIRED.get(kind, ()):
            if name not in message or not isinstance(message[name], kind_of):
                raise _RefusedError(f"a {kind} message without a usable '{name}'", name)
        if kind == "BATCH":  # records in files would bypass the contract's checks
            raise _RefusedError("a BATCH message (this target reads RECORD messages only)", "type")
        if kind == "SCHEMA" and "properties" not in message["schema"]:
            raise _RefusedError("a SCHEMA message whose schema has no 'properties'", "schema")
        if kind in NEED_SCHEMA and message["stream"] not in self._schemas:
            raise _RefusedError(f"a {kind} message before its stream's SCHEMA", "stream")

    def _refuse(
        self, line: Any, number: int, refused: _RefusedError, message: dict[str, Any] | None
    ) -> None:
        stream, key = _identify(message, line)
        problem = Unreadable(
            line=number,
            detail=f"{refused} (input line {number})",
            stream=stream,
            record_key=key,
            raw=_as_text(line),
        )
        if self.on_unreadable is None:
            raise ValueError(f"unreadable input: {problem.detail}")
        self.on_unreadable(problem)


@contextmanager
def _collector_for_reading() -> Iterator[None]:
    """Python's cyclic garbage collector tuned for a run's reading loop, as it was afterwards.

    Each record allocates dozens of containers (decoded dicts, resources, outcome rows) that live
    until their batch is delivered, and the collector scanned them again and again: about 4.6 of
    the target's 16 CPU seconds on 10,000 returns (95,000 records), most in full collections that
    also walked every object of start-up (SQLAlchemy, singer_sdk, jsonschema). Start-up objects
    live for the whole run: frozen, the collector no longer scans them; young collections every
    50,000 allocations rather than 700 leave the rest about a sixth of the work (0.8 CPU s). Only
    when garbage is collected changes; what is collected does not, and nothing is disabled.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(READING_GC_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _decode(line: Any) -> Any:
    try:
        return decoder.decode(line)
    except RecursionError:
        raise _RefusedError(f"nested deeper than {MAX_DEPTH} levels") from None
    except msgspec.ValidationError:  # the only one an untyped decode raises: a huge integer
        raise _RefusedError("a number out of range") from None
    except ArithmeticError:  # Decimal refuses an exponent beyond its limits (1e999999999999999)
        raise _RefusedError("a number out of range") from None
    except UnicodeEncodeError:  # text holding a lone surrogate itself (in-process input)
        return _decode_keeping_surrogates(line)
    except msgspec.DecodeError as error:
        if _has_surrogate_escape(line):
            return _decode_keeping_surrogates(line)
        what = "not valid UTF-8" if "UTF-8" in str(error) else "not valid JSON"
        raise _RefusedError(what) from None


def _has_surrogate_escape(line: Any) -> bool:
    if isinstance(line, bytes | bytearray):
        return _ESCAPE_BYTES.search(line) is not None
    return _ESCAPE_TEXT.search(line) is not None


def _decode_keeping_surrogates(line: Any) -> Any:
    """Python's JSON parser, which keeps lone surrogates (msgspec refuses the whole line)."""
    try:
        text = line.decode("utf-8") if isinstance(line, bytes | bytearray) else line
        return json.loads(text, parse_float=Decimal)
    except UnicodeDecodeError:
        raise _RefusedError("not valid UTF-8") from None
    except RecursionError:
        raise _RefusedError(f"nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError:
        raise _RefusedError("not valid JSON") from None
    except (ValueError, ArithmeticError):  # over 4,300 digits (as msgspec), a huge exponent
        raise _RefusedError("a number out of range") from None


def _suspect(line: Any) -> bool:
    """Whether the line may nest too deep or hold a lone surrogate: then it is walked.

    Scans in C only (a regular expression over each line cost more than decoding it): the
    usual line has no unicode escape at all (msgspec writes UTF-8) and few brackets.
    """
    if isinstance(line, bytes | bytearray):
        if line.count(b"{") + line.count(b"[") > MAX_DEPTH:
            return True
        return b"\\u" in line and _ESCAPE_BYTES.search(line) is not None
    brackets = line.count("{") + line.count("[")
    return brackets > MAX_DEPTH or _SUSPECT_TEXT.search(line) is not None


def _inspect(message: dict[str, Any], max_depth: int) -> int:
    """Check depth and surrogates without recursion; repair free text; count repairs.

    Raises :class:`_RefusedError` naming the first problem's path.
    """
    free = FREE_TEXT.get(_name(message.get("stream")), frozenset())
    repaired = 0
    record = message.get("record") if message.get("type") == "RECORD" else None
    for container, key, value, path, depth in _walk(message):
        if depth > max_depth:
            raise _RefusedError(f"nested deeper than {max_depth} levels", _path(path))
        if isinstance(key, str) and _SURROGATE_TEXT.search(key):
            raise _RefusedError(
                "a lone surrogate (half of a broken character) in a key", _path(path)
            )
        if isinstance(value, str) and _SURROGATE_TEXT.search(value):
            is_free = record is not None and len(path) > 2 and path[0] == "record"
            if not (is_free and path[1] in free):
                raise _RefusedError("a lone surrogate (half of a broken character)", _path(path))
            container[key] = _SURROGATE_TEXT.sub("\ufffd", value)
            repaired += 1
    return repaired


def _walk(root: Any) -> Iterator[tuple[Any, Any, Any, tuple[Any, ...], int]]:
    """``(container, key, value, path, depth)`` of every value under ``root``, iteratively."""
    stack: list[tuple[Any, tuple[Any, ...], int]] = [(root, (), 1)]
    while stack:
        node, path, depth = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in list(items):
            where = (*path, key)
            yield node, key, value, where, depth
            if isinstance(value, dict | list):
                stack.append((value, where, depth + 1))


def _path(path: tuple[Any, ...]) -> str:
    """A field path for a detail: the record's own fields, safe names, indexes; never a value."""
    parts = list(path[1:] if len(path) > 1 and path[0] == "record" else path)
    cut = len(parts) > MAX_PATH_PARTS  # a path 100 levels deep says no more than its start
    parts = parts[:MAX_PATH_PARTS]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = part if _SAFE_NAME.fullmatch(part) else "<key>"
            text += f".{name}" if text else name
    if cut:
        text += "..."
    return text or "record"


def _identify(message: dict[str, Any] | None, line: Any) -> tuple[str | None, str]:
    """The line's stream (when the target knows it) and a key: the record's, or the line's hash."""
    stream: str | None = _name(message.get("stream")) if message else None
    if stream not in RECORD_KEYS:
        stream = None
    record = message.get("record") if message else None
    if stream is not None and isinstance(record, dict):
        key = record.get(RECORD_KEYS[stream])
        if isinstance(key, str) and 0 < len(key) <= 255 and _clean(key):
            return stream, key
    data = line if isinstance(line, bytes | bytearray) else line.encode("utf-8", "surrogatepass")
    return stream, f"unreadable:{hashlib.sha256(data).hexdigest()[:20]}"


def _name(value: Any) -> str:
    """A stream name from a message, or "" when it is not a string (a list cannot be looked up)."""
    return value if isinstance(value, str) else ""


def _clean(text: str) -> bool:
    return "\x00" not in text and _SURROGATE_TEXT.search(text) is None


def _as_text(line: Any) -> str:
    """The line as storable text: invalid bytes and lone surrogates escaped, size bounded."""
    if isinstance(line, bytes | bytearray):
        text = bytes(line).decode("utf-8", "backslashreplace")
    else:
        text = line.encode("utf-8", "backslashreplace").decode("utf-8")
    text = text.rstrip("\r\n")
    if len(text) > KEPT_CHARS:
        text = text[:KEPT_CHARS] + f"... ({len(text) - KEPT_CHARS} more characters not kept)"
    return text


UNREADABLE_RECORD = "unreadable_record"


def unreadable_outcome(problem: Unreadable) -> Outcome:
    """The ledger's row for an unusable line: its text kept as the payload, for a person."""
    return Outcome(
        stream=problem.stream or UNKNOWN_STREAM,
        record_key=problem.record_key or f"line-{problem.line}",
        outcome=INVALID_RECORD,
        reason=UNREADABLE_RECORD,
        detail=problem.detail,
        event_time=utcnow(),
        payload={"input_line": problem.raw},
    )
