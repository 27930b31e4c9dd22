"""The Singer inline mapper: reads a tap's messages, writes the mapping's output streams.

Message handling: the SCHEMA of a mapped source stream becomes the SCHEMA of each output stream
it can produce (each sent once); a RECORD becomes zero or more output records; STATE passes
through unchanged at its place in the stream, so a target never sees a state ahead of the
records it covers; ACTIVATE_VERSION and BATCH are dropped; streams without rules are dropped.
The mapping files are loaded and checked when the mapper starts, before any input is read.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable
from typing import IO, TYPE_CHECKING, Any, ClassVar, cast

import click
import msgspec
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecReader, MsgSpecWriter, decoder, encoder
from singer_sdk.helpers.capabilities import CapabilitiesEnum, PluginCapabilities
from singer_sdk.mapper_base import InlineMapper
from singer_sdk.singerlib import Message, RecordMessage, SchemaMessage, StateMessage
from singer_sdk.singerlib.exceptions import InvalidInputLine

from swap_transforms.contract import Contract
from swap_transforms.engine import MappingEngine, Output, utc_now
from swap_transforms.errors import MappingFileError
from swap_transforms.helpers import stable_hash
from swap_transforms.overrides import check_effective
from swap_transforms.quarantine import (
    Repairs,
    UnreadableLineError,
    fingerprint,
    read_slowly,
    record_key,
)

UNREADABLE = "unreadable_record"

if TYPE_CHECKING:
    from pathlib import PurePath

    from singer_sdk.plugin_base import _ConfigInput
    from singer_sdk.singerlib.encoding.base import GenericSingerReader, GenericSingerWriter


class PrivateMsgSpecReader(MsgSpecReader):
    """The SDK's msgspec reader, minus logging the unparsable line (it may hold personal data).

    Standard input is read as bytes: msgspec decodes UTF-8 JSON itself, so decoding each line
    into text first only cost time. A line that cannot be taken (see `quarantine`) is handed to
    `on_unreadable` and reading goes on; without that hook it stops the run, unquoted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.repairs = Repairs()
        self.on_unreadable: Callable[[UnreadableLineError, bytes | str, int], None] | None = None

    @property
    def default_input(self) -> IO[Any]:  # type: ignore[override]
        return sys.stdin.buffer

    def deserialize_json(self, line: str | bytes) -> dict[str, Any]:
        try:
            return decoder.decode(line)  # type: ignore[no-any-return]
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            pass
        if self.on_unreadable is None:
            msg = "Unable to parse an input line as JSON (not shown: it may hold personal data)"
            raise InvalidInputLine(msg) from None
        return read_slowly(line, self.repairs)

    def process_lines(
        self,
        file_input: IO[Any] | None,
        callbacks: dict[str, Callable[[dict[str, Any]], None]],
    ) -> Counter[str]:
        """The SDK's loop, with each unreadable line set aside instead of ending the run."""
        stats: Counter[str] = Counter()
        for number, line in enumerate(file_input or self.default_input, start=1):
            if not line.strip():
                continue  # an empty line holds nothing to lose
            try:
                message = self.deserialize_json(line)
                kind = message_type(message)
                callbacks[kind](message)
            except UnreadableLineError as error:
                if self.on_unreadable is None:
                    raise
                self.on_unreadable(error, line, number)
                kind = "UNREADABLE"
            stats[kind] += 1
        return stats


def message_type(message: dict[str, Any]) -> str:
    """The Singer message type, if the message has what that type needs; else unreadable."""
    kind = message.get("type")
    needs = _NEEDS.get(kind) if isinstance(kind, str) else None
    if needs is None:
        raise UnreadableLineError("the line is not a Singer message (no known type)")
    stream = message.get("stream")
    for key, expected in needs:
        if not isinstance(message.get(key), expected):
            shown = stream if isinstance(stream, str) else None
            raise UnreadableLineError(f"a {kind} message without a valid '{key}'", shown)
    return cast("str", kind)


#: What each message type the mapper reads must hold.
_NEEDS: dict[str, tuple[tuple[str, type | tuple[type, ...]], ...]] = {
    "RECORD": (("stream", str), ("record", dict)),
    "SCHEMA": (("stream", str), ("schema", dict)),
    "STATE": (("value", (dict, list, str, int, float, type(None))),),
    "ACTIVATE_VERSION": (("stream", str),),
    "BATCH": (("stream", str),),
}


class PerInputMsgSpecWriter(MsgSpecWriter):
    """The SDK's msgspec writer, writing the messages made from one input message at once.

    The SDK's writer writes and flushes each message: a system call per output record (and
    with PYTHONUNBUFFERED, standard output has no buffer at all). The mapper calls `flush`
    after each input message, so a target still gets each input's outputs as soon as they
    exist, in the same order.
    """

    def __init__(self) -> None:
        super().__init__()
        self._pending = bytearray()

    def write_message(self, message: Message) -> None:
        self._pending += self.format_message(message)

    def write_record(self, stream: str, record: dict[str, Any]) -> None:
        """What `write_message(RecordMessage(stream, record))` writes, without the message."""
        pending = self._pending
        start = len(pending)
        try:
            encoder.encode_into({"type": "RECORD", "stream": stream, "record": record}, pending, -1)
        except BaseException:
            del pending[start:]
            raise
        pending += b"\n"

    def flush(self) -> None:
        if self._pending:
            out = sys.stdout.buffer
            with memoryview(self._pending) as data:
                done = 0
                while done < len(data):  # an unbuffered stream may take part of it per call
                    done += out.write(data[done:]) or 0
            self._pending.clear()
        sys.stdout.flush()


class SwapTransformsMapper(InlineMapper):
    """Applies YAML/Jinja mapping files (see transforms/README.md) to a Singer stream."""

    name = "swap-transforms"
    capabilities: ClassVar[list[CapabilitiesEnum]] = [
        PluginCapabilities.ABOUT,
        PluginCapabilities.STRUCTURED_LOGGING,
    ]
    message_reader_class = PrivateMsgSpecReader
    message_writer_class = PerInputMsgSpecWriter
    config_jsonschema: ClassVar[dict[str, Any]] = th.PropertiesList(
        th.Property(
            "mapping_files",
            th.ArrayType(th.StringType),
            required=True,
            description=(
                "Mapping files to apply, in order. Relative paths resolve against the current "
                "directory (the project root under Meltano)."
            ),
        ),
        th.Property(
            "contract_schemas",
            th.StringType,
            description=(
                "Folder of the target's input schemas (one <stream>.json each): the only output "
                "streams and schemas a mapping may declare. Default: transforms/schemas, the "
                "copies of target-klaviyo's schemas shipped with the mapper."
            ),
        ),
        th.Property(
            "vars",
            th.ObjectType(additional_properties=True),
            description=(
                "Values for the mapping files' vars: (named values rules test), overriding the "
                'files\' own for this deployment, e.g. {"send_customer_block": false}. A name '
                "no file declares, or a value of another type, stops the mapper at start-up."
            ),
        ),
        th.Property(
            "tolerated_rules",
            th.ArrayType(th.StringType),
            description=(
                "Rules whose failures (mapping_error, invalid_output) are set aside as "
                "tolerated_mapping_error and do not hold the bookmark. By default every rule "
                "failure holds it: no STATE after the first, so the next run re-reads the records."
            ),
        ),
    ).to_dict()

    def __init__(
        self,
        *,
        config: dict[str, Any] | PurePath | str | list[PurePath | str] | None = None,
        parse_env_config: bool = False,
        validate_config: bool = True,
        message_reader: GenericSingerReader[Any] | None = None,
        message_writer: GenericSingerWriter[Any, Any] | None = None,
    ) -> None:
        super().__init__(
            config=config,
            parse_env_config=parse_env_config,
            validate_config=validate_config,
            message_reader=message_reader,
            message_writer=message_writer,
        )
        # SWAP_TRANSFORMS_MAPPING_FILES that this run's config overrides would go unnoticed.
        check_effective(self.config["mapping_files"])
        contract = Contract.load(self.config.get("contract_schemas"))
        self.engine = MappingEngine.from_files(
            self.config["mapping_files"],
            contract=contract,
            tolerated_rules=self.config.get("tolerated_rules") or (),
            variables=self.config.get("vars") or {},
        )
        self._withheld_states = 0
        self._set_aside_lines = 0
        self._source_schemas: set[str] = set()  # source streams whose SCHEMA was read
        self._checked_schemas: dict[str, dict[str, Any]] = {}  # the last schema checked
        reader = self.message_reader
        if isinstance(reader, PrivateMsgSpecReader):
            reader.on_unreadable = self._set_aside_line
        self._schemas_sent: set[str] = set()
        self._schemas_complete: set[str] = set()  # source streams whose outputs all had one
        self._dropped: set[str] = set()

    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: _ConfigInput | None = None,
        file_input: Any = None,
    ) -> None:
        """Run the mapper; a mapping that does not load exits 2 with its problems, no traceback."""
        try:
            super().invoke(
                about=about, about_format=about_format, config=config, file_input=file_input
            )
        except MappingFileError as error:
            click.echo(f"{cls.name}: the mapping cannot be used:\n{error}", err=True)
            sys.exit(2)

    def _passed_through(self, stream: str) -> bool:
        """A source's own exceptions stream (the tap's set-aside records): sent on unchanged."""
        return stream in self.engine.exception_streams and not self.engine.handles(stream)

    def _mapped(self, stream: str) -> bool:
        if self.engine.handles(stream):
            return True
        if stream not in self._dropped:
            self._dropped.add(stream)
            self.logger.info("Stream '%s' has no mapping rules: its messages are dropped", stream)
        return False

    def _write_messages(self, messages: Iterable[Message]) -> None:
        # The outputs of one input message, then one write (see PerInputMsgSpecWriter).
        for message in messages:
            self.write_message(message)
        self._flush()

    def _flush(self) -> None:
        writer = self.message_writer
        if isinstance(writer, PerInputMsgSpecWriter):
            writer.flush()
        else:
            sys.stdout.flush()

    def process_endofpipe(self) -> None:
        self._flush()
        self._log_held_failures()
        reader = self.message_reader
        if isinstance(reader, PrivateMsgSpecReader) and reader.repairs.counts:
            repaired = ", ".join(f"{k} {n}" for k, n in sorted(reader.repairs.counts.items()))
            self.logger.warning("Lone surrogates in free text repaired to U+FFFD: %s", repaired)
        if self._set_aside_lines:
            self.logger.warning(
                "%d input line(s) set aside as %s", self._set_aside_lines, UNREADABLE
            )
        super().process_endofpipe()

    def _log_held_failures(self) -> None:
        """One line per failing rule: where it is written and how many records it failed on."""
        engine = self.engine
        for (stream, rule, reason), count in sorted(engine.held.items(), key=str):
            where = engine.locations.get(rule) or "a check"
            self.logger.error(
                "%s: rule '%s' of stream '%s' failed on %d record(s) (%s); fix the mapping: "
                "the next run re-reads them",
                where,
                rule,
                stream,
                count,
                reason,
            )
        if engine.holding:
            self.logger.error(
                "Mapping errors held the bookmark: %d STATE message(s) withheld",
                self._withheld_states,
            )

    def _schema_messages(self, stream: str) -> list[Message]:
        messages: list[Message] = []
        if stream in self._schemas_complete:
            return messages
        for name in self.engine.output_streams(stream):
            messages.extend(self._output_schema(name))
        self._schemas_complete.add(stream)
        return messages

    def _output_schema(self, name: str) -> list[Message]:
        """The SCHEMA of output `name` if it was not sent yet (the contract's schema)."""
        if name in self._schemas_sent:
            return []
        self._schemas_sent.add(name)
        output = self.engine.outputs[name]
        return [SchemaMessage(name, output.schema, output.key_properties)]

    def map_schema_message(self, message_dict: dict[str, Any]) -> Iterable[Message]:
        stream = message_dict["stream"]
        if self._passed_through(stream):
            return self._output_schema(stream)
        if not self._mapped(stream):
            return []
        self._check_source(stream, message_dict["schema"])
        self._source_schemas.add(stream)
        return self._schema_messages(stream)

    def _check_source(self, stream: str, schema: dict[str, Any]) -> None:
        """The mapping against the stream's schema, before any of its records is mapped.

        A field the schema does not have (a typo) stops the run here (`MappingFileError`, exit
        2, every problem with file and line); a field that may be null used where null fails
        is logged with its fix once per stream.
        """
        if self._checked_schemas.get(stream) == schema:
            return  # a tap may repeat a stream's SCHEMA: checked once per schema
        first = stream not in self._checked_schemas
        self.engine.check_source(stream, schema)
        self._checked_schemas[stream] = schema
        if first:
            for warning in self.engine.source_warnings.get(stream, []):
                self.logger.warning("Mapping: %s", warning)

    def _record_outputs(self, message_dict: dict[str, Any]) -> tuple[list[Message], list[Output]]:
        """SCHEMA messages still to send and the output records of one RECORD message."""
        stream, record = message_dict["stream"], message_dict["record"]
        if self._passed_through(stream):
            return self._output_schema(stream), [(stream, record)]
        if not self._mapped(stream):
            return [], []
        if stream not in self._source_schemas:
            raise UnreadableLineError(
                f"a RECORD of stream '{stream}' before its SCHEMA", stream, record
            )
        return self._schema_messages(stream), self.engine.map_record(stream, record)

    def _process_record_message(self, message_dict: dict[str, Any]) -> None:
        writer = self.message_writer
        if not isinstance(writer, PerInputMsgSpecWriter):
            super()._process_record_message(message_dict)
            return
        # The messages `map_record_message` gives, written without building RECORD messages.
        schemas, outputs = self._record_outputs(message_dict)
        for message in schemas:
            writer.write_message(message)
        for name, record in outputs:
            writer.write_record(name, record)
        writer.flush()

    def map_record_message(self, message_dict: dict[str, Any]) -> Iterable[Message]:
        schemas, outputs = self._record_outputs(message_dict)
        schemas.extend(RecordMessage(stream=name, record=record) for name, record in outputs)
        return schemas

    def _set_aside_line(self, error: UnreadableLineError, line: bytes | str, number: int) -> None:
        """An input line that cannot be taken becomes an `unreadable_record` exception."""
        stream = error.stream
        if stream is not None and not self._passed_through(stream) and not self._mapped(stream):
            return  # a stream the mapping drops anyway: nothing of it would be sent
        key = record_key(error.record, self.engine.key_field(stream))
        name = self.engine.exceptions_stream_for(stream)
        record = {
            "exception_id": stable_hash(stream, key or fingerprint(line), None, UNREADABLE),
            "source_stream": stream or "(unknown)",
            "source_key": key,
            "rule": None,
            "reason": UNREADABLE,
            "detail": f"input line {number}: {error.what}",
            "source_updated_at": None,
            "occurred_at": utc_now(),
        }
        self._set_aside_lines += 1
        self.logger.warning(
            "Input line %d (stream %s, key %s) set aside as %s: %s",
            number,
            stream or "unknown",
            key or "unreadable",
            UNREADABLE,
            error.what,
        )
        self._write_messages([*self._output_schema(name), RecordMessage(name, record)])

    def map_state_message(self, message_dict: dict[str, Any]) -> Iterable[Message]:
        """STATE passes through, unless a record has failed in a way that holds the bookmark.

        After the first `mapping_error` or `invalid_output` no STATE reaches the target: the
        bookmark stays where this run started, so once the mapping is fixed the next run reads
        the failed records again (decisions.md §1). Every other record is still mapped and sent.
        """
        if self.engine.holding:
            if not self._withheld_states:
                self.logger.warning(
                    "A rule failed (see the integration_exceptions records): STATE is withheld "
                    "for the rest of this run, the bookmark stays where the run started"
                )
            self._withheld_states += 1
            return []
        return [StateMessage(value=message_dict["value"])]

    def map_activate_version_message(self, message_dict: dict[str, Any]) -> Iterable[Message]:
        return []

    def map_batch_message(self, message_dict: dict[str, Any]) -> Iterable[Message]:
        return []
