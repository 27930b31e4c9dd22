"""One sink per input stream, checking records against target-klaviyo's own input contract.

Each sink validates against ``schemas/<stream>.json``, hands valid records to the run's
:class:`~target_klaviyo.intake.Intake` (the phone checks), and delivers them through components
the run's :class:`~target_klaviyo.delivery.Delivery` assembles.

A record that breaks the contract is set aside in the ledger as ``invalid_record``, naming the
field, and the run goes on (reason ``out_of_bounds`` for a length, size, range, pattern, format,
time window or nesting depth; ``invalid_record`` for a type, a required or an unknown field):
the schema a source declares in its SCHEMA message is not trusted, since the contract is what
the Klaviyo payloads are built from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import cache
from importlib import resources
from typing import Any, ClassVar, Protocol, runtime_checkable

import fastjsonschema
from jsonschema import Draft7Validator, FormatChecker
from singer_sdk import Target
from singer_sdk.helpers.conform import DatetimeErrorTreatmentEnum
from singer_sdk.sinks import BatchSink
from singer_sdk.sinks.core import BaseJSONSchemaValidator

from target_klaviyo.bounds import OUT_OF_BOUNDS, out_of_bounds
from target_klaviyo.catalog import restock_outcome
from target_klaviyo.delivery import Delivery
from target_klaviyo.events import event_outcome
from target_klaviyo.intake import Intake
from target_klaviyo.ledger import INVALID_RECORD, MAPPER_EXCEPTION, Outcome, as_utc, utcnow
from target_klaviyo.profiles import IDENTITY_FIELDS, MergedUpdate, identity_of
from target_klaviyo.profiles import STREAM as PROFILE_STREAM

CONTRACTS = resources.files("target_klaviyo") / "schemas"


@cache
def contract(stream: str) -> dict[str, Any]:
    """The JSON Schema target-klaviyo accepts for ``stream`` (its public input contract)."""
    schema: dict[str, Any] = json.loads((CONTRACTS / f"{stream}.json").read_text())
    return schema


#: Schema keywords whose failure means a value is out of bounds (not of the wrong shape).
BOUND_KEYWORDS = frozenset(
    {
        "maxLength",
        "maxItems",
        "maxProperties",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "pattern",
        "format",
    }
)


class ContractValidator(BaseJSONSchemaValidator):
    """Remembers why the last record broke the contract, instead of failing the run.

    The SDK validates each record just before handing it to ``process_record``; the sink reads
    :attr:`problem` and :attr:`reason` there. Compiled validation keeps the common case fast;
    jsonschema explains. The bounds a schema cannot say (time window, nesting) come after.
    """

    def __init__(self, schema: dict[str, Any], stream: str = "") -> None:
        super().__init__(schema)
        self._check = fastjsonschema.compile(schema, formats={"date-time": _is_datetime})
        self._explain = Draft7Validator(schema, format_checker=DATE_TIME)
        self.stream = stream
        self.problem: str | None = None
        self.reason: str = INVALID_RECORD

    def validate(self, record: dict[str, Any]) -> None:
        try:
            self._check(record)
        except fastjsonschema.JsonSchemaException:
            error = next(iter(self._explain.iter_errors(record)), None)
            where = ".".join(str(p) for p in error.absolute_path) if error else ""
            why = _describe(error) if error else "does not match the contract"
            self.problem = f"{where or 'record'}: {why}"
            bound = error is not None and error.validator in BOUND_KEYWORDS
            self.reason = OUT_OF_BOUNDS if bound else INVALID_RECORD
            return
        self.problem = out_of_bounds(self.stream, record, datetime.now(timezone.utc))
        self.reason = OUT_OF_BOUNDS


def _is_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True  # a format check applies to strings only; the type check covers the rest
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _is_time(value: object) -> bool:
    """A datetime, or a string the ledger can read as one."""
    return isinstance(value, datetime) or (isinstance(value, str) and _is_datetime(value))


#: jsonschema's own date-time check needs an optional package; this one is the same test as above.
DATE_TIME = FormatChecker(formats=())
DATE_TIME.checks("date-time")(_is_datetime)


def _loggable_key(key: Any) -> str:
    """A record's key for a log line: an id by contract, but not shown when it is not one."""
    if isinstance(key, str) and 0 < len(key) <= 255 and "@" not in key:
        return key
    return "(not shown)"


def _describe(error: Any) -> str:
    """The validation failure in words, without the offending value (it may be personal data)."""
    if error.validator == "required":
        return f"missing required field ({error.message.split()[0]})"
    if error.validator == "type":
        return f"expected {error.validator_value}, got {type(error.instance).__name__}"
    if error.validator == "anyOf":
        return "needs at least one of email, phone_number, external_id"
    if error.validator == "format":
        return f"not a valid {error.validator_value}"
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        return _unknown_fields(error.instance, error.schema.get("properties") or {})
    return f"fails '{error.validator}' ({error.validator_value})"


def _unknown_fields(instance: Mapping[Any, Any], known: Mapping[str, Any]) -> str:
    """Name the fields a closed object of the contract does not know (names, never values).

    A name is shown escaped and cut at 64 characters: a key is the source's choice, not data,
    but nothing long or unprintable reaches a log line.
    """
    extra = sorted(str(k) for k in instance if k not in known)
    shown = ", ".join(ascii(name[:64]) for name in extra[:5])
    more = f" and {len(extra) - 5} more" if len(extra) > 5 else ""
    return f"unknown field{'s' if len(extra) > 1 else ''} {shown}{more} (not in the contract)"


@runtime_checkable
class SinkHost(Protocol):
    """What a sink uses of its target: the run's delivery, and draining another stream first."""

    delivery: Delivery

    def drain_stream(self, stream_name: str) -> None: ...


class KlaviyoSink(BatchSink):
    """Behaviour every stream shares; subclasses say how a batch is delivered."""

    #: How the ledger keys this stream's records.
    record_key: ClassVar[str]

    def __init__(
        self,
        target: Target,
        stream_name: str,
        schema: dict[str, Any],
        key_properties: list[str] | None,
    ) -> None:
        # The target's own contract replaces the SCHEMA message's schema, and keys are ours.
        super().__init__(target, stream_name, contract(stream_name), [])
        if not isinstance(target, SinkHost):
            msg = f"{type(self).__name__} delivers through a target with a delivery (TargetKlaviyo)"
            raise TypeError(msg)
        self.delivery = target.delivery
        self.target = target
        self.intake = run_intake(self.delivery)

    def get_validator(self) -> ContractValidator:
        self.contract_validator = ContractValidator(self.schema, self.stream_name)
        return self.contract_validator

    @property
    def datetime_error_treatment(self) -> DatetimeErrorTreatmentEnum:
        """A bad timestamp was already reported by the validator: never crash on it."""
        return DatetimeErrorTreatmentEnum.NULL

    def _parse_timestamps_in_record(
        self, record: dict[str, Any], schema: dict[str, Any], treatment: DatetimeErrorTreatmentEnum
    ) -> None:
        """Leave timestamps as the source wrote them.

        The contract validator already checked their format; the code that needs a datetime
        parses the one field it uses. The SDK's parser would cost time on every record, raise
        ``TypeError`` on a date-time field holding a number (stopping the run), and turn the
        payload kept for a replay into something the source never sent.
        """

    @property
    def max_size(self) -> int:
        return int(self.config["batch_size_rows"])

    def process_record(self, record: dict[str, Any], context: dict[str, Any]) -> None:
        problem = self.contract_validator.problem
        if problem is not None:
            reason = self.contract_validator.reason
            self.delivery.record([self.invalid(record, problem, reason)])
            self.logger.warning(
                "Set aside a record of %s (%s, %s=%s): %s",
                self.stream_name,
                reason,
                self.record_key,
                _loggable_key(record.get(self.record_key)),
                problem,
            )
            return
        admitted = self.intake.admit(self.stream_name, record)
        if admitted is not None:
            self.accept(admitted, context)

    def accept(self, record: dict[str, Any], context: dict[str, Any]) -> None:
        context.setdefault("records", []).append(record)

    def process_batch(self, context: dict[str, Any]) -> None:
        records = context.get("records") or []
        if records:
            self.deliver(records)

    def deliver(self, records: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def invalid(
        self, record: dict[str, Any], problem: str, reason: str = INVALID_RECORD
    ) -> Outcome:
        return invalid_outcome(self.stream_name, record, problem, reason)

    @classmethod
    def outcome_of_invalid(
        cls, stream: str, record: dict[str, Any], problem: str, reason: str
    ) -> Outcome:
        """The outcome of a record of ``stream`` set aside as invalid (subclasses add more)."""
        return Outcome(
            stream=stream,
            record_key=str(record.get(cls.record_key) or "(missing)"),
            outcome=INVALID_RECORD,
            reason=reason,
            detail=problem,
            source_id=record.get("source_id") or record.get("source_key"),
            payload=record,
        )


def readable(stream: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """The invalid ``record`` with what an outcome reads (times, identifiers) made safe.

    A record that broke the contract may hold anything there, a number for a time or a
    string for the profile: recording why it is invalid must not fail on the same values.
    Those become None (the outcome's payload stays the record as it came).
    """
    safe = dict(record)
    for name, spec in contract(stream)["properties"].items():
        value = safe.get(name)
        if spec.get("format") == "date-time" and value is not None and not _is_time(value):
            safe[name] = None
    for name in IDENTITY_FIELDS:
        if not isinstance(safe.get(name), str):
            safe.pop(name, None)
    profile = safe.get("profile")
    if profile is not None:
        profile = profile if isinstance(profile, Mapping) else {}
        safe["profile"] = {k: v for k, v in profile.items() if isinstance(v, str)}
    return safe


def invalid_outcome(
    stream: str, record: dict[str, Any], problem: str, reason: str = INVALID_RECORD
) -> Outcome:
    """The outcome of a ``stream`` record set aside as invalid, as a run records it."""
    return SINKS[stream].outcome_of_invalid(stream, record, problem, reason)


def run_intake(delivery: Delivery) -> Intake:
    """The checks between the contract and delivery, as a run (and a replay) makes them."""
    return Intake(
        record=delivery.record, left_out=delivery.summary.add_left_out, invalid=invalid_outcome
    )


class EventsSink(KlaviyoSink):
    """``klaviyo_events``: bulk event create jobs."""

    record_key = "unique_id"

    def deliver(self, records: list[dict[str, Any]]) -> None:
        self.delivery.background.submit(self.delivery.event_sender().send, records)

    @classmethod
    def outcome_of_invalid(
        cls, stream: str, record: dict[str, Any], problem: str, reason: str
    ) -> Outcome:
        outcome = event_outcome(readable(stream, record), INVALID_RECORD, reason, problem)
        outcome.record_key = str(record.get("unique_id") or "(missing)")
        outcome.payload = record
        return outcome


class ProfileUpdatesSink(KlaviyoSink):
    """``klaviyo_profile_updates``: merged per profile; riding on events, else import jobs."""

    record_key = "update_id"

    def accept(self, record: dict[str, Any], context: dict[str, Any]) -> None:
        self.delivery.pending_profiles.add(record)

    def process_batch(self, context: dict[str, Any]) -> None:
        # Events first, so that updates can ride on their profile's events.
        self.target.drain_stream("klaviyo_events")
        self.delivery.background.flush()
        self.delivery.profile_importer().send(self.delivery.pending_profiles.claim_all())

    @classmethod
    def outcome_of_invalid(
        cls, stream: str, record: dict[str, Any], problem: str, reason: str
    ) -> Outcome:
        merged = MergedUpdate(identity=identity_of(readable(stream, record)))
        merged.records.append(record)
        return Outcome(
            stream=PROFILE_STREAM,
            record_key=str(record.get("update_id") or "(missing)"),
            outcome=INVALID_RECORD,
            reason=reason,
            detail=problem,
            source_id=record.get("source_id"),
            profile_hash=merged.hash,
            payload=record,
        )


class CatalogVariantsSink(KlaviyoSink):
    """``klaviyo_catalog_variants``: inventory deltas applied once per restock key."""

    record_key = "restock_key"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.applier = self.delivery.restock_applier()

    def deliver(self, records: list[dict[str, Any]]) -> None:
        self.applier.send(records)

    @classmethod
    def outcome_of_invalid(
        cls, stream: str, record: dict[str, Any], problem: str, reason: str
    ) -> Outcome:
        outcome = restock_outcome(readable(stream, record), INVALID_RECORD, reason, problem)
        outcome.record_key = str(record.get("restock_key") or "(missing)")
        outcome.payload = record
        return outcome


class IntegrationExceptionsSink(KlaviyoSink):
    """``integration_exceptions``: what a source could not map, kept in the ledger with why."""

    record_key = "exception_id"

    def deliver(self, records: list[dict[str, Any]]) -> None:
        self.delivery.record(
            [
                Outcome(
                    stream=self.stream_name,
                    record_key=str(r["exception_id"]),
                    outcome=MAPPER_EXCEPTION,
                    reason=str(r["reason"]),
                    detail=r.get("detail"),
                    metric=r.get("rule"),
                    source_id=r.get("source_key"),
                    source_time=as_utc(r.get("source_updated_at")),
                    event_time=as_utc(r.get("occurred_at")) or utcnow(),
                    payload=r,
                )
                for r in records
            ]
        )


#: The streams target-klaviyo accepts, and their sinks.
SINKS: dict[str, type[KlaviyoSink]] = {
    "klaviyo_events": EventsSink,
    "klaviyo_profile_updates": ProfileUpdatesSink,
    "klaviyo_catalog_variants": CatalogVariantsSink,
    "integration_exceptions": IntegrationExceptionsSink,
}
