"""Profile updates: merged per profile into their net effect, ordered by ``as_of``, then imported.

Several updates to one profile in a batch become one: properties and ``unset`` are applied in
record order unless an update's ``as_of`` is older than one already applied (then an older return
would overwrite a newer one's "last return" properties, so its properties are dropped), and list
operations keep, per value, the last one (an append followed by an unappend of the same value
cancels the append). A merged update either rides on an event of the same profile (so the
suppression flag and the event arrive together) or goes to a bulk profile import job.

List operations are sent only where they change something the ledger's mirror knows of: an
``append`` of a value the profile already holds as appended is dropped (Klaviyo does not say
that ``append`` skips a value present, and a duplicate would outlive one ``unappend``), and so is
an ``unappend`` of a value already unappended. A value the mirror has no row for is unknown, and
its operation is sent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from target_klaviyo.client import KlaviyoClient, KlaviyoUnavailable, encode, error_entries
from target_klaviyo.ledger import (
    ACCEPTED,
    APPENDED,
    FAILED_PROFILE_IMPORT,
    REJECTED,
    UNAPPENDED,
    ListChange,
    Outcome,
    as_utc,
    list_key,
    profile_hash,
)
from target_klaviyo.masking import mask_identity
from target_klaviyo.phones import PHONE_IN_USE
from target_klaviyo.recording import LeftOut, Record

STREAM = "klaviyo_profile_updates"
IDENTITY_FIELDS = ("email", "phone_number", "external_id")
#: Klaviyo's standard profile attributes the contract carries (besides identifiers).
ATTRIBUTE_FIELDS = ("first_name", "last_name", "locale", "title", "organization")
LOCATION_FIELDS = ("address1", "address2", "city", "region", "zip", "country")
#: Klaviyo's import error code for an identifier another profile holds.
DUPLICATE_PROFILE = "duplicate_profile"
MAX_JOB_BYTES = 5 * 1024 * 1024


def identity_of(record: Mapping[str, Any]) -> dict[str, str]:
    return {k: record[k] for k in IDENTITY_FIELDS if record.get(k)}


def identity_key(identity: Mapping[str, Any]) -> str:
    """One key per Klaviyo profile: email (case-insensitive), else phone, else external id."""
    email = (identity.get("email") or "").strip().lower()
    if email:
        return f"email:{email}"
    if identity.get("phone_number"):
        return f"phone:{identity['phone_number']}"
    return f"external:{identity.get('external_id')}"


@dataclass
class MergedUpdate:
    """The net effect of one batch's updates to one profile."""

    identity: dict[str, str]
    as_of: datetime | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)
    #: Standard attributes (first_name, ...) and location fields, ordered by as_of like
    #: properties; only values that say something (never null or blank) are kept.
    attributes: dict[str, str] = field(default_factory=dict)
    location: dict[str, str] = field(default_factory=dict)
    list_ops: dict[str, dict[Any, str]] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def hash(self) -> str:
        return profile_hash(self.identity)

    def add(self, record: Mapping[str, Any]) -> None:
        self.records.append(dict(record))
        for key, value in identity_of(record).items():
            if key != "phone_number":  # the phone follows as_of (below)
                self.identity.setdefault(key, value)
        as_of = as_utc(record["as_of"])
        assert as_of is not None  # the contract requires it
        if self.as_of is None or as_of >= self.as_of:
            if record.get("phone_number"):  # a phone is ordered like the attributes
                self.identity["phone_number"] = record["phone_number"]
            for key in record.get("unset") or []:
                self.properties.pop(key, None)
                if key not in self.unset:
                    self.unset.append(key)
            for key, value in (record.get("properties") or {}).items():
                self.properties[key] = value
                if key in self.unset:
                    self.unset.remove(key)
            self.attributes.update(_filled(record, ATTRIBUTE_FIELDS))
            self.location.update(_filled(record.get("location") or {}, LOCATION_FIELDS))
            self.as_of = as_of
        for op in ("append", "unappend"):
            for prop, values in (record.get(op) or {}).items():
                ops = self.list_ops.setdefault(prop, {})
                for value in values:
                    ops.pop(value, None)  # re-insert so the last operation's order counts
                    ops[value] = op

    def drop_properties_older_than(self, newest_applied: datetime | None) -> bool:
        """Forget properties older than what the profile already has; True when dropped."""
        if newest_applied is None or self.as_of is None or self.as_of >= newest_applied:
            return False
        self.properties.clear()
        self.unset.clear()
        self.attributes.clear()
        self.location.clear()
        if len(self.identity) > 1:  # nor the phone of an older return over a newer one's
            self.identity.pop("phone_number", None)
        return True

    @property
    def sets_fields(self) -> bool:
        """Whether the update sets anything ordered by ``as_of``.

        Properties, attributes, and the phone of a profile another identifier names.
        """
        phone = "phone_number" in self.identity and len(self.identity) > 1
        return bool(self.properties or self.unset or self.attributes or self.location or phone)

    def without_phone(self) -> MergedUpdate:
        """The same update, its phone left out (when another identifier names the profile)."""
        identity = {k: v for k, v in self.identity.items() if k != "phone_number"}
        if not identity:
            return self  # the phone is the only identifier: the update is about that number
        copy = MergedUpdate(identity=identity, as_of=self.as_of)
        copy.properties, copy.unset = self.properties, self.unset
        copy.attributes, copy.location = self.attributes, self.location
        copy.list_ops, copy.records = self.list_ops, self.records
        return copy

    def phone_only(self) -> MergedUpdate | None:
        """An update that only gives the profile its phone, or None when there is none to give.

        The phone goes to Klaviyo by profile import, never riding on events: an event request
        whose phone another profile holds would be refused, events and all.
        """
        phone = self.identity.get("phone_number")
        others = {k: v for k, v in self.identity.items() if k != "phone_number"}
        if not phone or not others:
            return None
        return MergedUpdate(identity={**others, "phone_number": phone}, as_of=self.as_of)

    def drop_list_ops_already_applied(self, states: Mapping[tuple[str, str, str], str]) -> int:
        """Forget list operations the mirror says Klaviyo already reflects; return how many."""
        dropped = 0
        for prop, ops in self.list_ops.items():
            for value, op in list(ops.items()):
                held = states.get(list_key(self.hash, prop, value))
                if held == (APPENDED if op == "append" else UNAPPENDED):
                    del ops[value]
                    dropped += 1
        self.list_ops = {prop: ops for prop, ops in self.list_ops.items() if ops}
        return dropped

    def patch_properties(self) -> dict[str, Any]:
        patch: dict[str, Any] = {}
        for op in ("append", "unappend"):
            values = {
                prop: [v for v, o in ops.items() if o == op] for prop, ops in self.list_ops.items()
            }
            values = {prop: vs for prop, vs in values.items() if vs}
            if values:
                patch[op] = values
        if self.unset:
            patch["unset"] = list(self.unset)
        return patch

    def profile_resource(self) -> dict[str, Any]:
        """The profile as Klaviyo's profile resource objects spell it (import or event)."""
        attributes: dict[str, Any] = dict(self.identity)
        attributes.update(self.attributes)
        if self.location:
            attributes["location"] = dict(self.location)
        if self.properties:
            attributes["properties"] = self.properties
        resource: dict[str, Any] = {"type": "profile", "attributes": attributes}
        patch = self.patch_properties()
        if patch:
            resource["meta"] = {"patch_properties": patch}
        return resource

    def outcomes(
        self, outcome: str, reason: str | None = None, detail: str | None = None
    ) -> list[Outcome]:
        return [
            Outcome(
                stream=STREAM,
                record_key=str(r.get("update_id")),
                outcome=outcome,
                reason=reason,
                detail=detail,
                source_id=r.get("source_id"),
                profile_hash=self.hash,
                source_time=as_utc(r.get("source_updated_at")),
                event_time=as_utc(r["as_of"]),
                payload=r,
            )
            for r in self.records
        ]


class PendingProfiles:
    """Profile updates received but not yet sent, merged per profile as they arrive."""

    def __init__(self) -> None:
        self._updates: dict[str, MergedUpdate] = {}
        self._lock = threading.Lock()

    def add(self, record: Mapping[str, Any]) -> None:
        identity = identity_of(record)
        key = identity_key(identity)
        with self._lock:
            merged = self._updates.get(key)
            if merged is None:
                merged = self._updates[key] = MergedUpdate(identity=dict(identity))
            merged.add(record)

    def claim(self, keys: set[str]) -> dict[str, MergedUpdate]:
        """Take the pending updates of these profiles (to ride on their events)."""
        with self._lock:
            return {k: self._updates.pop(k) for k in keys if k in self._updates}

    def claim_all(self) -> list[MergedUpdate]:
        with self._lock:
            updates = list(self._updates.values())
            self._updates.clear()
            return updates

    def put_back(self, updates: list[MergedUpdate]) -> None:
        """Return updates whose event could not carry them: a profile import will."""
        with self._lock:
            for update in updates:
                key = identity_key(update.identity)
                existing = self._updates.get(key)
                if existing is None:
                    self._updates[key] = update
                else:  # newer records arrived meanwhile: replay ours first, in order
                    for record in existing.records:
                        update.add(record)
                    self._updates[key] = update

    def __len__(self) -> int:
        with self._lock:
            return len(self._updates)


class ProfileLedger(Protocol):
    """What profile updates read and write of the ledger: update order and list memberships."""

    def profile_as_of(self, hashes: Sequence[str]) -> dict[str, datetime]: ...

    def set_profile_as_of(self, versions: Mapping[str, datetime]) -> None: ...

    def list_states(self, hashes: Sequence[str]) -> dict[tuple[str, str, str], str]: ...

    def apply_list_operations(self, changes: Iterable[ListChange]) -> None: ...


def apply_ordering(ledger: ProfileLedger, updates: list[MergedUpdate]) -> None:
    """Drop what each profile already has (by the ledger): older properties, list operations.

    Properties older than the profile's newest applied update would overwrite newer ones; an
    append of a value already appended would repeat it (see the module's docstring).
    """
    hashes = [u.hash for u in updates]
    newest = ledger.profile_as_of(hashes)
    with_lists = [u.hash for u in updates if u.list_ops]
    states = ledger.list_states(with_lists) if with_lists else {}
    for update in updates:
        update.drop_properties_older_than(newest.get(update.hash))
        update.drop_list_ops_already_applied(states)


def remember_applied(ledger: ProfileLedger, updates: list[MergedUpdate]) -> None:
    """After Klaviyo accepted updates: their ``as_of`` order and their list memberships."""
    ledger.set_profile_as_of(
        {u.hash: u.as_of for u in updates if u.as_of is not None and u.sets_fields}
    )
    ledger.apply_list_operations(
        ListChange(u.hash, mask_identity(u.identity), prop, value, operation)
        for u in updates
        for prop, ops in u.list_ops.items()
        for value, operation in ops.items()
    )


class ProfileImporter:
    """Sends merged updates as bulk profile import jobs and waits for each to finish.

    Built with what it uses (the client, the profile part of the ledger, where outcomes and
    left-out phones go, three settings), not with the run: a replay builds it the same way.
    """

    def __init__(
        self,
        *,
        client: KlaviyoClient,
        ledger: ProfileLedger,
        record: Record,
        left_out: LeftOut,
        profiles_per_job: int,
        job_timeout_seconds: float,
        job_poll_seconds: float,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.record = record
        self.left_out = left_out
        self.profiles_per_job = profiles_per_job
        self.job_timeout_seconds = job_timeout_seconds
        self.job_poll_seconds = job_poll_seconds

    def send(self, updates: list[MergedUpdate]) -> None:
        if not updates:
            return
        apply_ordering(self.ledger, updates)
        jobs = [(self._submit(chunk), chunk) for chunk in self._chunks(updates)]
        for job_id, chunk in jobs:
            if job_id is not None:
                self._finish(job_id, chunk)

    def _chunks(self, updates: list[MergedUpdate]) -> Iterator[list[MergedUpdate]]:
        limit = self.profiles_per_job
        chunk: list[MergedUpdate] = []
        size = 0
        for update in updates:
            entry = len(encode(update.profile_resource())) + 1
            if chunk and (len(chunk) >= limit or size + entry > MAX_JOB_BYTES - 1024):
                yield chunk
                chunk, size = [], 0
            chunk.append(update)
            size += entry
        if chunk:
            yield chunk

    def _submit(self, chunk: list[MergedUpdate]) -> str | None:
        body = {
            "data": {
                "type": "profile-bulk-import-job",
                "attributes": {"profiles": {"data": [u.profile_resource() for u in chunk]}},
            }
        }
        response = self.client.request("profile_import", body=body)
        if response.status_code == 202 and self.client.dry_run:
            self._accepted(chunk)
            return None
        if response.status_code in (200, 201, 202):
            return str(response.json()["data"]["id"])
        # The whole job was refused (a malformed profile): find which, one by one.
        if len(chunk) > 1:
            middle = len(chunk) // 2
            for half in (chunk[:middle], chunk[middle:]):
                job_id = self._submit(half)
                if job_id is not None:
                    self._finish(job_id, half)
            return None
        error = error_entries(response)[0]
        self.record(chunk[0].outcomes(REJECTED, str(error.get("code")), _detail(error)))
        return None

    def _finish(self, job_id: str, chunk: list[MergedUpdate]) -> None:
        job = self._wait(job_id)
        status = job["attributes"]["status"]
        failed: dict[int, dict[str, Any]] = {}
        if status == "cancelled":
            for index in range(len(chunk)):
                failed[index] = {"code": "job_cancelled", "detail": "Klaviyo cancelled the job"}
        elif job["attributes"].get("failed_count"):
            failed = self._import_errors(job_id, chunk)
        outcomes: list[Outcome] = []
        succeeded = []
        resend = []
        for index, update in enumerate(chunk):
            if index in failed:
                error = failed[index]
                if _phone_in_use(error, update):
                    resend.append(update.without_phone())
                    continue
                outcomes += update.outcomes(
                    FAILED_PROFILE_IMPORT, str(error.get("code")), _detail(error)
                )
            else:
                succeeded.append(update)
        self._accepted(succeeded)
        self.record(outcomes)
        if resend:
            # Klaviyo has the phone on another profile: the rest of the update goes without it.
            self.left_out(PHONE_IN_USE, len(resend))
            self.send([u for u in resend if u.records])

    def _accepted(self, updates: list[MergedUpdate]) -> None:
        self.record([o for u in updates for o in u.outcomes(ACCEPTED)])
        remember_applied(self.ledger, updates)

    def _wait(self, job_id: str) -> dict[str, Any]:
        job = self.client.wait_for_job(
            "profile_import_job",
            job_id,
            timeout=self.job_timeout_seconds,
            first_pause=self.job_poll_seconds,
        )
        if job is None:
            msg = f"Klaviyo lost profile import job {job_id}; its profiles stay undelivered"
            raise KlaviyoUnavailable(msg)
        return job

    def _import_errors(self, job_id: str, chunk: list[MergedUpdate]) -> dict[int, dict[str, Any]]:
        """Map each import error to the profile it concerns (its index in the job)."""
        by_identity = {identity_key(u.identity): i for i, u in enumerate(chunk)}
        failed: dict[int, dict[str, Any]] = {}
        for page in self.client.pages(
            "profile_import_errors", path_id=job_id, what="list a job's import errors"
        ):
            for entry in page.get("data") or []:
                attributes = entry.get("attributes") or {}
                index = _error_index(attributes, by_identity)
                if index is not None:
                    failed[index] = attributes
        return failed


def _error_index(attributes: Mapping[str, Any], by_identity: Mapping[str, int]) -> int | None:
    pointer = ((attributes.get("source") or {}).get("pointer")) or ""
    parts = pointer.strip("/").split("/")
    if len(parts) >= 4 and parts[:3] == ["data", "attributes", "profiles"]:
        try:
            return int(parts[4] if parts[3] == "data" else parts[3])
        except (ValueError, IndexError):
            pass
    payload = attributes.get("original_payload") or {}
    identity = payload.get("attributes", payload) if isinstance(payload, dict) else {}
    if isinstance(identity, dict) and identity_of(identity):
        return by_identity.get(identity_key(identity_of(identity)))
    return None


def _phone_in_use(error: Mapping[str, Any], update: MergedUpdate) -> bool:
    """Whether Klaviyo failed the update because another profile holds its phone."""
    return str(error.get("code")) == DUPLICATE_PROFILE and "phone_number" in update.identity


def _filled(source: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, str]:
    """The fields of ``names`` that hold text: a null or blank value never clears Klaviyo's."""
    return {
        name: value.strip()
        for name in names
        if isinstance(value := source.get(name), str) and value.strip()
    }


def _detail(error: Mapping[str, Any]) -> str:
    return str(error.get("detail") or error.get("title") or "no detail given")
