"""``POST /api/event-bulk-create-jobs``: what Klaviyo rejects, and what it applies.

A request is checked whole before anything is applied, because Klaviyo fails the whole request
on any bad event (a repeated ``unique_id`` for one profile and metric included). Accepted events
create or update their profile, then land in the :class:`~emulators.klaviyo.event_log.EventLog`,
which silently drops repeats of an already stored (profile, metric, unique_id).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from openapi_client.models.events_bulk_create_job import EventsBulkCreateJob

from emulators.klaviyo import payload
from emulators.klaviyo.contacts import email_problem, phone_problem
from emulators.klaviyo.event_log import EventLog
from emulators.klaviyo.jsonapi import ApiError
from emulators.klaviyo.limits import (
    EARLIEST_EVENT_YEAR,
    LATEST_EVENT_DAYS_AHEAD,
    MAX_EVENT_PROPERTIES,
    MAX_EVENTS_PER_REQUEST,
    MAX_METRIC_NAME_CHARS,
)
from emulators.klaviyo.profiles import Identity, ProfileChange, ProfileStore

ENTRIES = "/data/attributes/events-bulk-create/data"
_EARLIEST = datetime(EARLIEST_EVENT_YEAR, 1, 1, tzinfo=timezone.utc).timestamp()

# Resolves a request's profile identity to a stable key ("the same profile"), or None when it
# names a Klaviyo profile id that does not exist.
ProfileKey = Callable[[Identity], str | None]


@dataclass(slots=True)
class PlannedEvent:
    """One validated event, waiting for the whole request to pass before it is applied."""

    metric: str
    unique_id: str | None
    time: float
    value: float | None
    value_currency: str | None
    backfill: bool
    properties: dict[str, Any]


@dataclass(slots=True)
class PlannedEntry:
    """One profile of the request with its events, validated."""

    change: ProfileChange
    events: list[PlannedEvent]


def identity_problem(identity: Identity, where: str) -> tuple[str, str] | None:
    """What is wrong with a profile's identifiers, as ``(detail, pointer)``, or None.

    ``where`` is the pointer of the profile resource (the object holding ``attributes``).
    """
    if identity.is_empty():
        detail = "A profile identifier is required (id, email, phone_number or external_id)."
        return detail, where + "/attributes"
    if identity.email is not None:
        problem = email_problem(identity.email)
        if problem:
            return f"Invalid email address: {problem}", where + "/attributes/email"
    if identity.phone_number is not None:
        problem = phone_problem(identity.phone_number)
        if problem:
            return f"Invalid phone number: {problem}", where + "/attributes/phone_number"
    return None


def parse(
    raw: bytes,
    now: float,
    profile_key: ProfileKey,
    conflicting: Callable[[Identity], str | None] = lambda _identity: None,
) -> list[PlannedEntry]:
    """Validate a bulk-create body; raise :class:`ApiError` (400) for anything Klaviyo rejects.

    ``conflicting`` names an identifier of a profile that another profile holds (a 409
    ``duplicate_profile``, as Klaviyo answers).
    """
    job = payload.load(EventsBulkCreateJob, raw)
    entries = job.data.attributes.events_bulk_create.data
    total = sum(len(entry.attributes.events.data) for entry in entries)
    if total > MAX_EVENTS_PER_REQUEST:
        detail = f"At most {MAX_EVENTS_PER_REQUEST} events per request; this one has {total}."
        raise ApiError.invalid(detail, ENTRIES)
    payload.check_string_sizes(job, raw)
    latest = now + LATEST_EVENT_DAYS_AHEAD * 86_400
    seen: set[tuple[str, str, str]] = set()
    plan: list[PlannedEntry] = []
    for i, entry in enumerate(entries):
        where = f"{ENTRIES}/{i}/attributes"
        resource = entry.attributes.profile.data
        profile_where = where + "/profile/data"
        change = ProfileChange.from_model(resource, profile_where)
        key = _entry_profile_key(change, profile_where, profile_key, conflicting)
        entry_backfill = bool(entry.attributes.backfill)
        events: list[PlannedEvent] = []
        for j, event in enumerate(entry.attributes.events.data):
            at = f"{where}/events/data/{j}/attributes"
            attributes = event.attributes
            metric = attributes.metric.data.attributes.name
            if not metric.strip() or len(metric) > MAX_METRIC_NAME_CHARS:
                detail = f"Metric names must be 1 to {MAX_METRIC_NAME_CHARS} characters."
                raise ApiError.invalid(detail, at + "/metric/data/attributes/name")
            if len(attributes.properties) > MAX_EVENT_PROPERTIES:
                count = len(attributes.properties)
                detail = f"At most {MAX_EVENT_PROPERTIES} event properties; this event has {count}."
                raise ApiError.invalid(detail, at + "/properties")
            moment = _event_time(attributes.time, now, latest, at + "/time")
            unique_id = attributes.unique_id
            if unique_id is not None:
                repeat = (key, metric, unique_id)
                if repeat in seen:
                    detail = (
                        f"unique_id {unique_id!r} is repeated for the same profile and metric "
                        "in this request: no event of the request was processed."
                    )
                    raise ApiError.invalid(detail, at + "/unique_id")
                seen.add(repeat)
            backfill = entry_backfill
            if "backfill" in attributes.model_fields_set and attributes.backfill is not None:
                backfill = attributes.backfill
            events.append(
                PlannedEvent(
                    metric=metric,
                    unique_id=unique_id,
                    time=moment,
                    value=attributes.value,
                    value_currency=attributes.value_currency,
                    backfill=backfill,
                    properties=attributes.properties,
                )
            )
        plan.append(PlannedEntry(change, events))
    return plan


def _entry_profile_key(
    change: ProfileChange,
    where: str,
    profile_key: ProfileKey,
    conflicting: Callable[[Identity], str | None],
) -> str:
    """The key of the entry's profile; an :class:`ApiError` for what Klaviyo refuses in it."""
    problem = identity_problem(change.identity, where)
    if problem:
        raise ApiError.invalid(*problem)
    key = profile_key(change.identity)
    if key is None:
        raise ApiError.invalid("No profile has this id.", where + "/id")
    conflict = conflicting(change.identity)
    if conflict is not None:
        detail = f"A profile already exists with this {conflict}."
        pointer = f"{where}/attributes/{conflict}"
        raise ApiError.one(409, "duplicate_profile", detail, pointer=pointer)
    return key


def _event_time(value: datetime | None, now: float, latest: float, where: str) -> float:
    """Seconds since the epoch, truncated to the second as Klaviyo stores event times."""
    if value is None:
        return float(int(now))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    moment = float(int(value.timestamp()))
    if moment < _EARLIEST or moment > latest:
        detail = (
            f"Event time must be after {EARLIEST_EVENT_YEAR} and at most "
            f"{timedelta(days=LATEST_EVENT_DAYS_AHEAD).days} days in the future."
        )
        raise ApiError.invalid(detail, where)
    return moment


def apply(plan: list[PlannedEntry], profiles: ProfileStore, log: EventLog, now: float) -> None:
    """Apply a validated request. The caller holds the emulator's lock."""
    for entry in plan:
        profile = profiles.upsert(entry.change, now)
        for event in entry.events:
            stored = log.add(
                profile.index,
                event.metric,
                event.unique_id,
                event.time,
                value=event.value,
                value_currency=event.value_currency,
                backfill=event.backfill,
                properties=event.properties,
            )
            if stored and (profile.last_event_date is None or event.time > profile.last_event_date):
                profile.last_event_date = event.time
