"""Events: deduplicated, grouped by profile, sent as bulk create jobs, rejections set aside.

Klaviyo keeps one event per profile, metric and ``unique_id``, but fails a whole bulk request that
repeats a ``unique_id`` for one profile and metric: repeats are removed first, and events the
ledger shows as accepted in an earlier run are not sent again. A ``400`` names its bad entries in
``source.pointer``: exactly those are set aside with Klaviyo's reason and the rest is resent; when
no pointer says which entry is at fault, the request is halved until the culprit stands alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from target_klaviyo.bounds import OUT_OF_BOUNDS
from target_klaviyo.client import KlaviyoClient, encode, error_entries
from target_klaviyo.integrity import NEW_PROFILE, SUPPRESSED_PROFILE, ProfileCheck
from target_klaviyo.ledger import (
    ACCEPTED,
    DEDUPLICATED,
    HELD,
    INVALID_RECORD,
    REJECTED,
    Outcome,
    as_utc,
    profile_hash,
)
from target_klaviyo.profiles import (
    ATTRIBUTE_FIELDS,
    IDENTITY_FIELDS,
    MergedUpdate,
    PendingProfiles,
    ProfileLedger,
    apply_ordering,
    identity_key,
    remember_applied,
)
from target_klaviyo.recording import Record

STREAM = "klaviyo_events"
MAX_REQUEST_BYTES = 5 * 1024 * 1024
MAX_STRING_BYTES = 100 * 1024
POINTER_ROOT = ["data", "attributes", "events-bulk-create", "data"]
_FLAG_DETAIL = {
    NEW_PROFILE: "Klaviyo has no profile with this email: the event would create a new one",
    SUPPRESSED_PROFILE: "The profile is suppressed from email: flows will not email them",
}


def event_outcome(
    record: Mapping[str, Any], outcome: str, reason: str | None = None, detail: str | None = None
) -> Outcome:
    return Outcome(
        stream=STREAM,
        record_key=str(record.get("unique_id")),
        outcome=outcome,
        reason=reason,
        detail=detail,
        metric=record.get("metric"),
        source_id=record.get("source_id"),
        profile_hash=profile_hash(record.get("profile") or {}),
        source_time=as_utc(record.get("source_updated_at")),
        event_time=as_utc(record.get("time")),
        payload=record,
    )


@dataclass
class ProfileGroup:
    """One profile's events in a request, and the profile update riding on them, if any."""

    identity: dict[str, str]
    events: list[dict[str, Any]] = field(default_factory=list)
    update: MergedUpdate | None = None
    #: Built once: sizing a request and sending it use the same resource.
    _resource: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def resource(self, backfill_before: datetime) -> dict[str, Any]:
        if self._resource is None:
            profile = (
                self.update.profile_resource()
                if self.update is not None
                else {"type": "profile", "attributes": dict(self.identity)}
            )
            events = [event_resource(e, backfill_before) for e in self.events]
            self._resource = {
                "type": "event-bulk-create",
                "attributes": {"profile": {"data": profile}, "events": {"data": events}},
            }
        return self._resource


def event_resource(record: Mapping[str, Any], backfill_before: datetime) -> dict[str, Any]:
    time = as_utc(record["time"])
    assert time is not None  # the contract requires it
    attributes: dict[str, Any] = {
        "properties": record.get("properties") or {},
        "time": time.isoformat(),
        "metric": {"data": {"type": "metric", "attributes": {"name": record["metric"]}}},
        "unique_id": record["unique_id"],
    }
    if record.get("value") is not None:
        attributes["value"] = record["value"]
    if record.get("value_currency"):
        attributes["value_currency"] = record["value_currency"]
    if time < backfill_before or record.get("backfill") is True:
        attributes["backfill"] = True  # history: recorded, but flows must not fire on it
    return {"type": "event", "attributes": attributes}


def oversized_string(value: Any, path: str = "") -> str | None:
    """The path of the first string over Klaviyo's 100 KB limit, if any."""
    if isinstance(value, str):
        return path or "(value)" if len(value.encode()) > MAX_STRING_BYTES else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = oversized_string(item, f"{path}.{key}" if path else str(key))
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = oversized_string(item, f"{path}[{index}]")
            if found:
                return found
    return None


class EventLedger(ProfileLedger, Protocol):
    """What events read and write of the ledger: earlier acceptances, and riding updates'."""

    def already_accepted(
        self, stream: str, keys: Sequence[str]
    ) -> set[tuple[str, str | None, str | None]]: ...


class Spawn(Protocol):
    """Runs one request without waiting for it (``BackgroundSender.spawn`` in a run)."""

    def __call__(self, request: Callable[..., None], *args: Any) -> None: ...


class RunKeys:
    """Keys claimed once per run (thread-safe): an event goes out once, whatever the batches.

    The ledger's "accepted earlier" check cannot see an event whose first copy is still in
    flight in another batch of the same run: this set can.
    """

    def __init__(self) -> None:
        self._keys: set[tuple[str, ...]] = set()
        self._lock = threading.Lock()

    def claim(self, key: tuple[str, ...]) -> bool:
        """True the first time ``key`` is claimed in this run, False after."""
        with self._lock:
            if key in self._keys:
                return False
            self._keys.add(key)
            return True


class EventSender:
    """Delivers one batch of event records.

    Built with what it uses, not with the run: the client, the ledger's event and profile part,
    where outcomes go, the run's pending profile updates (to ride on events) and claimed event
    keys, how requests are spawned, and three settings.
    """

    def __init__(
        self,
        *,
        client: KlaviyoClient,
        ledger: EventLedger,
        record: Record,
        pending_profiles: PendingProfiles,
        events_this_run: RunKeys,
        spawn: Spawn,
        events_per_request: int,
        backfill_after_hours: float,
        profile_check: str,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.record = record
        self.pending_profiles = pending_profiles
        self.events_this_run = events_this_run
        self.spawn = spawn
        self.events_per_request = events_per_request
        self.backfill_after_hours = backfill_after_hours
        self.profile_check = profile_check
        #: unique_id -> new_profile / suppressed_profile, for events sent anyway (flagged).
        self._flags: dict[str, str] = {}

    def send(self, records: list[dict[str, Any]]) -> None:
        fresh = self._check_profiles(self._screen(records))
        if not fresh:
            return
        groups = self._group(fresh)
        backfill_before = datetime.now(timezone.utc) - timedelta(hours=self.backfill_after_hours)
        # Requests go out concurrently on the run's request pool (the shared limiter paces
        # them); `Delivery.background.flush()` waits for them before any STATE.
        for chunk in self._chunks(groups, backfill_before):
            self.spawn(self._send, chunk, backfill_before)

    # -- before sending ----------------------------------------------------------------------

    def _screen(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Drop repeats, events accepted before, and events Klaviyo would refuse for size."""
        outcomes: list[Outcome] = []
        seen: set[tuple[str, str, str]] = set()
        candidates = []
        for record in records:
            key = (identity_key(record["profile"]), record["metric"], record["unique_id"])
            if key in seen:
                outcomes.append(event_outcome(record, DEDUPLICATED, "repeated_in_batch"))
                continue
            seen.add(key)
            too_long = oversized_string(record.get("properties"), "properties")
            if too_long:
                detail = f"{too_long} is longer than Klaviyo's 100 KB limit for a string"
                outcomes.append(event_outcome(record, REJECTED, "string_too_long", detail))
                continue
            candidates.append(record)
        delivered = self.ledger.already_accepted(STREAM, [r["unique_id"] for r in candidates])
        fresh = []
        for record in candidates:
            event_key = (record["unique_id"], profile_hash(record["profile"]), record["metric"])
            if event_key in delivered:
                outcomes.append(event_outcome(record, DEDUPLICATED, "accepted_earlier"))
            elif not self.events_this_run.claim(event_key):
                # Sent (or in flight) from an earlier batch of this run: once per run.
                outcomes.append(event_outcome(record, DEDUPLICATED, "repeated_in_run"))
            else:
                fresh.append(record)
        self.record(outcomes)
        return fresh

    def _check_profiles(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Flag (or hold) events that would create a new profile or reach a suppressed one."""
        mode = self.profile_check
        if mode == "off" or not records:
            return records
        emails = {str(r["profile"].get("email") or "").strip().lower() for r in records}
        flags = ProfileCheck(self.client).classify(e for e in emails if e)
        keep, held = [], []
        for record in records:
            flag = flags.get(str(record["profile"].get("email") or "").strip().lower())
            if flag is None:
                keep.append(record)
            elif flag == OUT_OF_BOUNDS:
                detail = "profile.email: too long to be looked up in Klaviyo (URL length)"
                held.append(event_outcome(record, INVALID_RECORD, OUT_OF_BOUNDS, detail))
            elif mode == "hold":
                held.append(event_outcome(record, HELD, flag, _FLAG_DETAIL[flag]))
            else:
                self._flags[record["unique_id"]] = flag
                keep.append(record)
        self.record(held)
        return keep

    def _group(self, records: list[dict[str, Any]]) -> list[ProfileGroup]:
        groups: dict[str, ProfileGroup] = {}
        for record in records:
            identity = {
                k: record["profile"][k] for k in IDENTITY_FIELDS if record["profile"].get(k)
            }
            key = identity_key(identity)
            group = groups.get(key)
            if group is None:
                group = groups[key] = ProfileGroup(identity=identity)
            group.events.append(record)
        riding = self.pending_profiles.claim(set(groups))
        if riding:
            apply_ordering(self.ledger, list(riding.values()))
            phones = [p for p in (u.phone_only() for u in riding.values()) if p is not None]
            riding = {key: update.without_phone() for key, update in riding.items()}
            # A phone never rides on events (one held by another profile would cost the events):
            # it goes by profile import, after them.
            self.pending_profiles.put_back(phones)
            for key, update in riding.items():
                groups[key].update = update
        return list(groups.values())

    def _chunks(
        self, groups: list[ProfileGroup], backfill_before: datetime
    ) -> Iterator[list[ProfileGroup]]:
        """Requests of at most ``events_per_request`` events and 5 MB; a big group is split."""
        limit = self.events_per_request
        chunk: list[ProfileGroup] = []
        count = size = 0
        for group in groups:
            for part in _split(group, limit):
                entry = len(encode(part.resource(backfill_before))) + 1
                if chunk and (
                    count + len(part.events) > limit or size + entry > MAX_REQUEST_BYTES - 1024
                ):
                    yield chunk
                    chunk, count, size = [], 0, 0
                chunk.append(part)
                count += len(part.events)
                size += entry
        if chunk:
            yield chunk

    # -- sending -----------------------------------------------------------------------------

    def _send(self, chunk: list[ProfileGroup], backfill_before: datetime) -> None:
        body = {
            "data": {
                "type": "event-bulk-create-job",
                "attributes": {
                    "events-bulk-create": {"data": [g.resource(backfill_before) for g in chunk]}
                },
            }
        }
        response = self.client.request("events", body=body)
        if response.status_code == 202:
            self._accepted(chunk)
            return
        if response.status_code == 413 or not 400 <= response.status_code < 500:
            self._bisect(chunk, backfill_before, None)
            return
        errors = error_entries(response)
        rejected = self._pointed(chunk, errors)
        if not rejected:
            self._bisect(chunk, backfill_before, errors[0])
            return
        remaining = self._set_aside(chunk, rejected)
        if remaining:
            self._send(remaining, backfill_before)

    def _pointed(
        self, chunk: list[ProfileGroup], errors: list[dict[str, Any]]
    ) -> dict[tuple[int, int | None], dict[str, Any]]:
        """Which (group, event) each error's ``source.pointer`` names; event None = whole group."""
        found: dict[tuple[int, int | None], dict[str, Any]] = {}
        for error in errors:
            parts = ((error.get("source") or {}).get("pointer") or "").strip("/").split("/")
            if parts[:4] != POINTER_ROOT or len(parts) < 5 or not parts[4].isdigit():
                continue
            group = int(parts[4])
            if group >= len(chunk):
                continue
            event: int | None = None
            names_event = parts[5:8] == ["attributes", "events", "data"] and len(parts) > 8
            if names_event and parts[8].isdigit() and int(parts[8]) < len(chunk[group].events):
                event = int(parts[8])
            found.setdefault((group, event), error)
        return found

    def _set_aside(
        self,
        chunk: list[ProfileGroup],
        rejected: Mapping[tuple[int, int | None], dict[str, Any]],
    ) -> list[ProfileGroup]:
        outcomes: list[Outcome] = []
        remaining: list[ProfileGroup] = []
        orphans: list[MergedUpdate] = []
        for index, group in enumerate(chunk):
            whole = rejected.get((index, None))
            if whole is not None and group.update is not None and _blames_update(whole):
                # Klaviyo refused the profile update riding on these events, not the events:
                # the update goes by import (which records its own outcome), the events again.
                orphans.append(group.update)
                remaining.append(ProfileGroup(group.identity, group.events, None))
                continue
            keep = []
            for position, record in enumerate(group.events):
                error = whole or rejected.get((index, position))
                if error is None:
                    keep.append(record)
                else:
                    outcomes.append(event_outcome(record, REJECTED, _code(error), _detail(error)))
            if keep:
                remaining.append(ProfileGroup(group.identity, keep, group.update))
            elif group.update is not None:
                orphans.append(group.update)
        self.record(outcomes)
        if orphans:
            self.pending_profiles.put_back(orphans)
        return remaining

    def _bisect(
        self, chunk: list[ProfileGroup], backfill_before: datetime, error: dict[str, Any] | None
    ) -> None:
        """Find the refused entries by halving, when Klaviyo does not point at them."""
        events = sum(len(g.events) for g in chunk)
        if events == 1:
            reason = error or {"code": "request_refused", "detail": "Klaviyo refused the request"}
            remaining = self._set_aside(chunk, {(0, None): reason})
            if remaining:  # the event stands, without the update that was refused
                self._send(remaining, backfill_before)
            return
        if len(chunk) == 1:
            group = chunk[0]
            middle = len(group.events) // 2
            halves = [
                [ProfileGroup(group.identity, group.events[:middle], group.update)],
                [ProfileGroup(group.identity, group.events[middle:], None)],
            ]
        else:
            middle = len(chunk) // 2
            halves = [chunk[:middle], chunk[middle:]]
        for half in halves:
            self._send(half, backfill_before)

    def _accepted(self, chunk: list[ProfileGroup]) -> None:
        outcomes = [
            event_outcome(r, ACCEPTED, self._flags.get(r["unique_id"]))
            for g in chunk
            for r in g.events
        ]
        riding = [g.update for g in chunk if g.update is not None]
        for update in riding:
            outcomes += update.outcomes(ACCEPTED, "sent_with_event")
        self.record(outcomes)
        remember_applied(self.ledger, riding)


def _split(group: ProfileGroup, limit: int) -> Iterator[ProfileGroup]:
    """A profile with more events than a request holds goes out in several parts."""
    if len(group.events) <= limit:
        yield group
        return
    for start in range(0, len(group.events), limit):
        yield ProfileGroup(
            group.identity,
            group.events[start : start + limit],
            group.update if start == 0 else None,
        )


#: Where a riding update's content sits in an entry, below ``.../data/<i>``: its properties and
#: its patch. The identity beside them is the events' own.
_UPDATE_POINTERS = (
    ["attributes", "profile", "data", "attributes", "properties"],
    ["attributes", "profile", "data", "meta"],
    *(
        ["attributes", "profile", "data", "attributes", name]
        for name in (*ATTRIBUTE_FIELDS, "location")
    ),
)


def _blames_update(error: Mapping[str, Any]) -> bool:
    """Whether Klaviyo's pointer names the riding update's part of the profile."""
    parts = ((error.get("source") or {}).get("pointer") or "").strip("/").split("/")[5:]
    return any(parts[: len(prefix)] == prefix for prefix in _UPDATE_POINTERS)


def _code(error: Mapping[str, Any]) -> str:
    return str(error.get("code") or "invalid")


def _detail(error: Mapping[str, Any]) -> str:
    pointer = (error.get("source") or {}).get("pointer")
    detail = str(error.get("detail") or error.get("title") or "no detail given")
    return f"{detail} ({pointer})" if pointer else detail
