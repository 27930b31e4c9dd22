"""The Singer inline mapper: reads a tap's messages, writes the mapping's output streams.

Message handling: the SCHEMA of a mapped source stream becomes the SCHEMA of each output stream
it can produce (each sent once); a RECORD becomes zero or more output records; STATE passes
through unchanged at its place in the stream, so a target never sees a state ahead of the
records it covers; ACTIVATE_VERSION and BATCH are dropped; streams without rules are dropped.
The mapping files are loaded and checked when the mapper starts, before any input is read.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any, ClassVar

import click
import msgspec
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecReader, MsgSpecWriter, decoder, encoder
from singer_sdk.helpers.capabilities import CapabilitiesEnum, PluginCapabilities
from singer_sdk.mapper_base import InlineMapper
from singer_sdk.singerlib import Message, RecordMessage, SchemaMessage, StateMessage
from singer_sdk.singerlib.exceptions import InvalidInputLine

from swap_transforms.contract import Contract
from swap_transforms.engine import MappingEngine
from swap_transforms.errors import MappingFileError

if TYPE_CHECKING:
    from pathlib import PurePath

    from singer_sdk.plugin_base import _ConfigInput
    from singer_sdk.singerlib.encoding.base import GenericSingerReader, GenericSingerWriter


class PrivateMsgSpecReader(MsgSpecReader):
    """The SDK's msgspec reader, minus logging the unparsable line (it may hold personal data).

    Standard input is read as bytes: msgspec decodes UTF-8 JSON itself, so decoding each line
    into text first only cost time.
    """

    @property
    def default_input(self) -> IO[Any]:  # type: ignore[override]
        return sys.stdin.buffer

    def deserialize_json(self, line: str | bytes) -> dict[str, Any]:
        try:
            return decoder.decode(line)  # type: ignore[no-any-return]
        except msgspec.DecodeError:
            msg = "Unable to parse an input line as JSON (not shown: it may hold personal data)"
            raise InvalidInputLine(msg) from None


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
        contract = Contract.load(self.config.get("contract_schemas"))
        self.engine = MappingEngine.from_files(
            self.config["mapping_files"],
            contract=contract,
            tolerated_rules=self.config.get("tolerated_rules") or (),
        )
        self._withheld_states = 0
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
            if name not in self._schemas_sent:
                self._schemas_sent.add(name)
                output = self.engine.outputs[name]
                messages.append(SchemaMessage(name, output.schema, output.key_properties))
        self._schemas_complete.add(stream)
        return messages

    def map_schema_message(self, message_dict: dict[str, Any]) -> Iterable[Message]:
        stream = message_dict["stream"]
        return self._schema_messages(stream) if self._mapped(stream) else []

    def _process_record_message(self, message_dict: dict[str, Any]) -> None:
        writer = self.message_writer
        if not isinstance(writer, PerInputMsgSpecWriter):
            super()._process_record_message(message_dict)
            return
        # The messages `map_record_message` gives, written without building RECORD messages.
        stream = message_dict["stream"]
        if self._mapped(stream):
            for message in self._schema_messages(stream):
                writer.write_message(message)
            for name, record in self.engine.map_record(stream, message_dict["record"]):
                writer.write_record(name, record)
        writer.flush()

    def map_record_message(self, message_dict: dict[str, Any]) -> Iterable[Message]:
        stream = message_dict["stream"]
        if not self._mapped(stream):
            return []
        # A tap that sends a RECORD before its SCHEMA still gets valid output.
        messages = self._schema_messages(stream)
        messages.extend(
            RecordMessage(stream=name, record=record)
            for name, record in self.engine.map_record(stream, message_dict["record"])
        )
        return messages

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
