"""Delivery components built with only what they use: fakes for the ledger, lists for outcomes.

No Klaviyo and no ledger database here: what these paths decide (deduplication, ordering, which
restocks may be applied, the phone checks) is decided before any request, from the few ledger
methods each component names in its protocol. A client is built but never sends (its URL is a
closed port): a request would fail the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from target_klaviyo.catalog import RestockApplier
from target_klaviyo.client import KlaviyoClient, RateLimits, RunStats
from target_klaviyo.events import EventSender, RunKeys
from target_klaviyo.intake import INVALID_PHONE, Intake
from target_klaviyo.ledger import APPENDED, ListChange, Outcome, list_key, profile_hash
from target_klaviyo.profiles import MergedUpdate, PendingProfiles, apply_ordering, remember_applied

T1 = "2026-02-01T10:00:00+00:00"
T2 = "2026-02-02T10:00:00+00:00"
PHONE = "+44 7400 123456"  # phonenumbers.example_number_for_type("GB", MOBILE), as typed
PHONE_E164 = "+447400123456"


def client() -> KlaviyoClient:
    return KlaviyoClient(
        api_url="http://127.0.0.1:9",
        api_key="pk_test",
        revision="2026-07-15",
        limits=RateLimits(),
        stats=RunStats(),
        max_tries=1,
    )


class ProfileMemory:
    """The profile part of a ledger (``ProfileLedger``), in memory."""

    def __init__(self) -> None:
        self.as_of: dict[str, datetime] = {}
        self.lists: dict[tuple[str, str, str], str] = {}
        self.changes: list[ListChange] = []

    def profile_as_of(self, hashes: Sequence[str]) -> dict[str, datetime]:
        return {h: self.as_of[h] for h in hashes if h in self.as_of}

    def set_profile_as_of(self, versions: Mapping[str, datetime]) -> None:
        self.as_of.update(versions)

    def list_states(self, hashes: Sequence[str]) -> dict[tuple[str, str, str], str]:
        return {k: v for k, v in self.lists.items() if k[0] in hashes}

    def apply_list_operations(self, changes: Iterable[ListChange]) -> None:
        self.changes.extend(changes)


class EventMemory(ProfileMemory):
    """The event part of a ledger (``EventLedger``): events accepted earlier."""

    def __init__(self, accepted: Iterable[tuple[str, str | None, str | None]] = ()) -> None:
        super().__init__()
        self.accepted = set(accepted)

    def already_accepted(
        self, stream: str, keys: Sequence[str]
    ) -> set[tuple[str, str | None, str | None]]:
        return {a for a in self.accepted if a[0] in keys}


class RestockMemory:
    """The restock part of a ledger (``RestockLedger``)."""

    def __init__(self, rows: Mapping[str, dict[str, Any]]) -> None:
        self.rows = dict(rows)
        self.pending_asked = 0

    def restocks(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {k: self.rows[k] for k in keys if k in self.rows}

    def pending_restocks(self) -> list[dict[str, Any]]:
        self.pending_asked += 1
        return [r for r in self.rows.values() if r["status"] == "pending"]

    def save_restocks(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self.rows.update({r["restock_key"]: dict(r) for r in rows})

    def forget_restocks(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.rows.pop(key, None)


def reasons(outcomes: list[Outcome]) -> dict[str, tuple[str, str | None]]:
    return {o.record_key: (o.outcome, o.reason) for o in outcomes}


def event(unique_id: str, email: str, metric: str = "Return Started") -> dict[str, Any]:
    return {
        "unique_id": unique_id,
        "metric": metric,
        "profile": {"email": email},
        "time": T1,
        "properties": {"return_id": unique_id},
    }


# -- profiles: ordering and memory, from the profile part of the ledger ----------------------------


def test_apply_ordering_drops_older_properties_and_list_operations_already_applied() -> None:
    ledger = ProfileMemory()
    update = MergedUpdate(identity={"email": "ana@example.com"})
    update.add(
        {
            "update_id": "u-1",
            "email": "ana@example.com",
            "as_of": T1,
            "properties": {"status": "requested"},
            "append": {"returned_skus": ["A", "B"]},
        }
    )
    ledger.as_of[update.hash] = datetime.fromisoformat(T2)
    ledger.lists[list_key(update.hash, "returned_skus", "A")] = APPENDED

    apply_ordering(ledger, [update])

    assert update.properties == {}, "older than what the profile has"
    assert update.list_ops == {"returned_skus": {"B": "append"}}


def test_remember_applied_keeps_order_and_list_membership() -> None:
    ledger = ProfileMemory()
    update = MergedUpdate(identity={"email": "ana@example.com"})
    update.add(
        {
            "update_id": "u-1",
            "email": "ana@example.com",
            "as_of": T2,
            "properties": {"status": "requested"},
            "append": {"returned_skus": ["A"]},
        }
    )
    remember_applied(ledger, [update])
    assert ledger.as_of == {update.hash: datetime(2026, 2, 2, 10, tzinfo=timezone.utc)}
    assert [(c.property, c.value, c.operation) for c in ledger.changes] == [
        ("returned_skus", "A", "append")
    ]


# -- events: screened before any request ----------------------------------------------------------


def sender(
    ledger: EventMemory,
    recorded: list[Outcome],
    spawned: list[tuple[Callable[..., None], tuple[Any, ...]]],
    *,
    pending: PendingProfiles | None = None,
    run_keys: RunKeys | None = None,
) -> EventSender:
    return EventSender(
        client=client(),
        ledger=ledger,
        record=recorded.extend,
        pending_profiles=pending or PendingProfiles(),
        events_this_run=run_keys or RunKeys(),
        spawn=lambda request, *args: spawned.append((request, args)),
        events_per_request=2,
        backfill_after_hours=24,
        profile_check="off",
    )


def test_event_sender_dedupes_and_spawns_requests_of_events_per_request() -> None:
    earlier = ("e-old", profile_hash({"email": "ana@example.com"}), "Return Started")
    ledger = EventMemory(accepted=[earlier])
    recorded: list[Outcome] = []
    spawned: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
    run_keys = RunKeys()
    run_keys.claim(("e-sent", profile_hash({"email": "bob@example.com"}), "Return Started"))
    records = [
        event("e-old", "ana@example.com"),
        event("e-1", "ana@example.com"),
        event("e-1", "ana@example.com"),
        event("e-sent", "bob@example.com"),
        event("e-2", "cy@example.com"),
        event("e-3", "dan@example.com"),
    ]
    sender(ledger, recorded, spawned, run_keys=run_keys).send(records)

    assert reasons(recorded) == {
        "e-old": ("deduplicated", "accepted_earlier"),
        "e-1": ("deduplicated", "repeated_in_batch"),
        "e-sent": ("deduplicated", "repeated_in_run"),
    }
    chunks = [args[0] for _, args in spawned]
    assert [[e["unique_id"] for g in chunk for e in g.events] for chunk in chunks] == [
        ["e-1", "e-2"],
        ["e-3"],
    ]


def test_a_pending_profile_update_rides_on_its_profiles_events_without_the_phone() -> None:
    ledger = EventMemory()
    pending = PendingProfiles()
    pending.add(
        {
            "update_id": "u-1",
            "email": "ana@example.com",
            "phone_number": PHONE_E164,
            "as_of": T1,
            "properties": {"status": "requested"},
        }
    )
    recorded: list[Outcome] = []
    spawned: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
    sender(ledger, recorded, spawned, pending=pending).send([event("e-1", "ana@example.com")])

    [(_, (chunk, _backfill_before))] = spawned
    [group] = chunk
    assert group.update is not None
    assert group.update.properties == {"status": "requested"}
    assert "phone_number" not in group.update.identity
    # The phone goes by profile import later: it waits among the pending updates.
    [phone_only] = pending.claim_all()
    assert phone_only.identity == {"email": "ana@example.com", "phone_number": PHONE_E164}
    assert recorded == []


# -- restocks: what may be applied, from the restock part of the ledger ----------------------------


def test_restock_applier_sets_aside_what_it_must_not_apply_before_any_request() -> None:
    ledger = RestockMemory(
        {
            "r-done": {"restock_key": "r-done", "status": "applied"},
            "r-unsure": {"restock_key": "r-unsure", "status": "uncertain"},
        }
    )
    recorded: list[Outcome] = []
    applier = RestockApplier(
        client=client(),
        ledger=ledger,
        record=recorded.extend,
        variants_per_job=100,
        job_timeout_seconds=1,
        job_poll_seconds=0.01,
    )

    def restock(key: str, variant: str) -> dict[str, Any]:
        return {"restock_key": key, "variant_id": variant, "inventory_delta": 1, "time": T1}

    applier.send(
        [
            restock("r-done", "$custom:::$default:::SKU-1"),
            restock("r-unsure", "$custom:::$default:::SKU-1"),
            restock("r-shopify", "$shopify:::$default:::SKU-2"),
        ]
    )
    assert reasons(recorded) == {
        "r-done": ("deduplicated", "applied_earlier"),
        "r-unsure": ("rejected", "restock_uncertain"),
        "r-shopify": ("rejected", "catalog_not_writable"),
    }
    assert ledger.pending_asked == 1, "restocks a crash left pending are settled first"


# -- intake: the phone checks of a run and a replay ------------------------------------------------


def intake(recorded: list[Outcome], left_out: list[tuple[str, int]]) -> Intake:
    def invalid(stream: str, record: dict[str, Any], problem: str, reason: str) -> Outcome:
        key = str(record.get("update_id") or record.get("unique_id"))
        return Outcome(stream, key, "invalid_record", reason, problem, payload=record)

    return Intake(
        record=recorded.extend,
        left_out=lambda what, count: left_out.append((what, count)),
        invalid=invalid,
    )


def test_intake_normalises_a_phone_and_leaves_an_invalid_one_out() -> None:
    recorded: list[Outcome] = []
    left_out: list[tuple[str, int]] = []
    check = intake(recorded, left_out)
    typed = {**event("e-1", "ana@example.com"), "profile": {"phone_number": PHONE}}
    bad = {**event("e-2", "bob@example.com")}
    bad["profile"] = {"email": "bob@example.com", "phone_number": "+1 555"}

    admitted = check.admit("klaviyo_events", typed)
    assert admitted is not None
    assert admitted["profile"] == {"phone_number": PHONE_E164}
    admitted = check.admit("klaviyo_events", bad)
    assert admitted is not None
    assert admitted["profile"] == {"email": "bob@example.com"}
    assert left_out == [("phone_invalid", 1)]
    assert recorded == []
    unchanged = event("e-3", "cy@example.com")
    assert check.admit("klaviyo_events", unchanged) is unchanged


def test_intake_sets_aside_a_record_whose_only_identifier_is_an_invalid_phone() -> None:
    recorded: list[Outcome] = []
    left_out: list[tuple[str, int]] = []
    record = {"update_id": "u-1", "phone_number": "12", "as_of": T1}
    assert intake(recorded, left_out).admit("klaviyo_profile_updates", record) is None
    [outcome] = recorded
    assert (outcome.record_key, outcome.outcome, outcome.reason) == (
        "u-1",
        "invalid_record",
        INVALID_PHONE,
    )
    assert outcome.detail is not None
    assert "12" not in outcome.detail, "no customer data in the detail"
    assert left_out == [("phone_invalid", 1)]
