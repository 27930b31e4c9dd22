"""A realistic delivery ledger for the report tests, written through the Ledger class API.

The ledger stamps ``recorded_at`` with ``target_klaviyo.ledger.utcnow``; the ``clock``
fixture (tests/conftest.py) replaces that clock so every latency and bucket in the report is
known exactly, and nothing depends on how fast the machine is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from target_klaviyo.client import RunStats
from target_klaviyo.delivery import Summary
from target_klaviyo.ledger import (
    ACCEPTED,
    FAILED_PROFILE_IMPORT,
    HELD,
    MAPPER_EXCEPTION,
    REJECTED,
    Ledger,
    ListChange,
    Outcome,
    profile_hash,
)
from target_klaviyo.masking import mask_identity
from tests.support.ledger import migrated_ledger

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=timezone.utc)

ALICE = "alice.martin@example.com"
BOB = "bob.okafor@example.org"
CHLOE = "chloe.dubois@example.net"
DMITRI = "dmitri.ivanov@example.com"
EVA = "eva.schmidt@example.de"
FARAH = "farah.khan@example.co.uk"
GINA = "gina.rossi@example.it"
HUGO = "hugo.lemaire@example.fr"
EMAILS = (ALICE, BOB, CHLOE, DMITRI, EVA, FARAH, GINA, HUGO)

#: Accepted events: (metric, return id, latency in seconds, hours after T0 Klaviyo accepted it).
ACCEPTED_EVENTS = [
    ("Return Started", "R1000", 30, 0),
    ("Return Started", "R1001", 45, 0),
    ("Return Started", "R1002", 60, 1),
    ("Return Started", "R1003", 60, 2),
    ("Return Started", "R1004", 90, 5),
    ("Return Started", "R1005", 120, 9),
    ("Return Started", "R1006", 120, 24),
    ("Return Started", "R1007", 150, 30),
    ("Return Received", "R1000", 180, 3),
    ("Return Received", "R1001", 200, 7),
    ("Return Received", "R1002", 240, 12),
    ("Return Received", "R1003", 300, 25),
    ("Return Received", "R1004", 300, 26),
    ("Return Received", "R1005", 360, 31),
    ("Return Processed", "R1000", 420, 8),
    ("Return Processed", "R1001", 480, 27),
    ("Return Processed", "R1002", 600, 28),
    ("Return Processed", "R1003", 900, 32),
    ("Refunded Order", "R1000", 1200, 29),
    # Rejected in the first run ("request_refused"), accepted 90 minutes after its update.
    ("Refunded Order", "R1009", 5400, 33),
]
METRIC_TOTALS = {
    "Return Started": 8,
    "Return Received": 6,
    "Return Processed": 4,
    "Refunded Order": 2,
}


@dataclass
class Clock:
    """The ledger's clock, moved by the test (every row it records is stamped with ``now``)."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Run:
    """One target run: its own Ledger (run id) and the Summary the target would keep."""

    ledger: Ledger
    clock: Clock
    summary: Summary = field(default_factory=Summary)
    stats: RunStats = field(default_factory=RunStats)

    def record(self, at: datetime, *outcomes: Outcome) -> None:
        self.clock.now = at
        self.summary.add(outcomes)
        self.ledger.record(outcomes)

    def accept_updates(self, at: datetime, *updates: Outcome) -> None:
        """Profile updates Klaviyo accepted: recorded, then their list operations mirrored."""
        assert all(u.outcome == ACCEPTED for u in updates)
        self.record(at, *updates)
        self.ledger.apply_list_operations(change for u in updates for change in list_changes(u))

    def finish(self, at: datetime, status: str) -> None:
        self.clock.now = at
        self.ledger.finish_run(status, self.summary.as_dict(self.stats))
        self.ledger.close()


def event(
    metric: str,
    return_id: str,
    email: str,
    outcome: str,
    *,
    updated: datetime,
    reason: str | None = None,
    detail: str | None = None,
) -> Outcome:
    slug = metric.lower().replace(" ", "_")
    record: dict[str, Any] = {
        "unique_id": f"swap:{return_id}:{slug}",
        "metric": metric,
        "profile": {"email": email},
        "time": updated.isoformat(),
        "properties": {"RMA": f"RMA-{return_id[1:]}", "ReturnId": return_id},
        "source_id": return_id,
        "source_updated_at": updated.isoformat(),
    }
    return Outcome(
        stream="klaviyo_events",
        record_key=record["unique_id"],
        outcome=outcome,
        reason=reason,
        detail=detail,
        metric=metric,
        source_id=return_id,
        profile_hash=profile_hash({"email": email}),
        source_time=updated,
        event_time=updated,
        payload=record,
    )


def profile_update(
    return_id: str,
    email: str,
    outcome: str,
    *,
    as_of: datetime,
    append: list[str] | None = None,
    unappend: list[str] | None = None,
    reason: str | None = None,
    detail: str | None = None,
) -> Outcome:
    record: dict[str, Any] = {
        "update_id": f"swap:{return_id}:profile",
        "email": email,
        "as_of": as_of.isoformat(),
        "append": {"swap_open_returns": append} if append else {},
        "unappend": {"swap_open_returns": unappend} if unappend else {},
        "properties": {"swap_last_return_status": "open" if append else "closed"},
        "source_id": return_id,
        "source_updated_at": as_of.isoformat(),
    }
    return Outcome(
        stream="klaviyo_profile_updates",
        record_key=record["update_id"],
        outcome=outcome,
        reason=reason,
        detail=detail,
        source_id=return_id,
        profile_hash=profile_hash({"email": email}),
        source_time=as_of,
        event_time=as_of,
        payload=record,
    )


def list_changes(update: Outcome) -> list[ListChange]:
    """An accepted profile update's list operations, as ``remember_applied`` hands them over."""
    payload = update.payload or {}
    assert update.profile_hash is not None
    return [
        ListChange(update.profile_hash, mask_identity(payload), prop, value, operation)
        for operation in ("append", "unappend")
        for prop, values in (payload.get(operation) or {}).items()
        for value in values
    ]


def restock(return_id: str, sku: str, reason: str, detail: str, *, updated: datetime) -> Outcome:
    record: dict[str, Any] = {
        "restock_key": f"swap:{return_id}:{sku}",
        "variant_id": f"$custom:::$default:::{sku}",
        "inventory_delta": 1,
        "source_id": return_id,
    }
    return Outcome(
        stream="klaviyo_catalog_variants",
        record_key=record["restock_key"],
        outcome=REJECTED,
        reason=reason,
        detail=detail,
        source_id=return_id,
        source_time=updated,
        event_time=updated,
        payload=record,
    )


def mapper_exception(return_id: str, reason: str, detail: str, *, updated: datetime) -> Outcome:
    record: dict[str, Any] = {
        "exception_id": f"returns:{return_id}:return_started:{reason}",
        "source_stream": "returns",
        "source_key": return_id,
        "rule": "return_started",
        "reason": reason,
        "detail": detail,
        "occurred_at": updated.isoformat(),
    }
    return Outcome(
        stream="integration_exceptions",
        record_key=record["exception_id"],
        outcome=MAPPER_EXCEPTION,
        reason=reason,
        detail=detail,
        metric="return_started",
        source_id=return_id,
        source_time=updated,
        event_time=updated,
        payload=record,
    )


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


def _accepted(index: int) -> Outcome:
    metric, return_id, latency, at_hour = ACCEPTED_EVENTS[index]
    accepted_at = T0 + hours(at_hour)
    email = EMAILS[index % 3]
    return event(
        metric, return_id, email, ACCEPTED, updated=accepted_at - timedelta(seconds=latency)
    )


def write_ledger(url: str, clock: Clock) -> None:
    """Three runs over a day and a half: deliveries, set-asides, replays and a failed run."""

    def start(at: datetime, run_id: str) -> Run:
        clock.now = at
        run = Run(migrated_ledger(url, run_id=run_id), clock)
        run.ledger.start_run()
        return run

    # -- run 1: the first day -------------------------------------------------------------------
    run = start(T0, "11111111-aaaa-4aaa-8aaa-111111111111")
    for index, (_, _, _, at_hour) in enumerate(ACCEPTED_EVENTS[:-1]):
        if at_hour < 24:
            run.record(T0 + hours(at_hour), _accepted(index))
    day1 = T0 + hours(1)
    run.record(
        day1,
        event(
            "Refunded Order",
            "R1009",
            ALICE,
            REJECTED,
            updated=T0 + hours(33) - timedelta(seconds=5400),
            reason="request_refused",
            detail="Klaviyo refused the request",
        ),
        mapper_exception(
            "R2001", "missing_email", "customer_email is null, empty or blank", updated=day1
        ),
        mapper_exception(
            "R2002",
            "invalid_email",
            "customer_email is not a valid e-mail address",
            updated=day1,
        ),
        event(
            "Return Started",
            "R2003",
            CHLOE,
            REJECTED,
            updated=day1,
            reason="string_too_long",
            detail="properties.Comment is longer than Klaviyo's 100 KB limit for a string",
        ),
        event(
            "Return Received",
            "R2004",
            DMITRI,
            REJECTED,
            updated=day1,
            reason="invalid",
            # Klaviyo quotes the address it refused: the report must mask it.
            detail=f"'{DMITRI}' is not a valid email. <script>alert(1)</script>",
        ),
        restock(
            "R2005",
            "SKU-TEE-M",
            "variant_not_found",
            "No catalog variant $custom:::$default:::SKU-TEE-M in Klaviyo",
            updated=day1,
        ),
        restock(
            "R2006",
            "SKU-CAP",
            "catalog_not_writable",
            "Only $custom catalogs can be written through Klaviyo's API",
            updated=day1,
        ),
        event("Return Started", "R2007", FARAH, HELD, updated=day1, reason="new_profile"),
        event(
            "Return Started",
            "R2008",
            BOB,
            HELD,
            updated=day1,
            reason="suppressed_profile",
            detail="The profile is suppressed from email (unsubscribed)",
        ),
        profile_update(
            "R3001",
            BOB,
            REJECTED,
            as_of=T0,
            append=["RMA-3001"],
            reason="invalid",
            detail="Klaviyo refused the update",
        ),
        profile_update("R3002", ALICE, REJECTED, as_of=T0, append=["RMA-3002"], reason="invalid"),
        profile_update("R3003", CHLOE, REJECTED, as_of=T0, append=["RMA-3003"], reason="invalid"),
        profile_update("R3004", DMITRI, REJECTED, as_of=T0, append=["RMA-3004"], reason="invalid"),
        profile_update(
            "R3005",
            EVA,
            FAILED_PROFILE_IMPORT,
            as_of=T0 + hours(1),
            append=["RMA-3005"],
            reason="import_failed",
            detail="The profile import job failed",
        ),
    )
    # Accepted profile updates: Klaviyo now flags Gina, Hugo and Alice.
    run.accept_updates(
        day1,
        profile_update("R3006", GINA, ACCEPTED, as_of=T0, append=["RMA-3006"]),
        profile_update("R3007", HUGO, ACCEPTED, as_of=T0, append=["RMA-3007"]),
        profile_update("R3010", ALICE, ACCEPTED, as_of=T0, append=["RMA-3010"]),
    )
    run.finish(T0 + hours(23), "succeeded")

    # -- run 2: the second day; it meets R2003 again, then fails --------------------------------
    run = start(T0 + hours(24), "22222222-bbbb-4bbb-8bbb-222222222222")
    for index, (_, _, _, at_hour) in enumerate(ACCEPTED_EVENTS):
        if at_hour >= 24:
            run.record(T0 + hours(at_hour), _accepted(index))
    day2 = T0 + hours(30)
    run.record(
        day2,
        event(
            "Return Started",
            "R2003",
            CHLOE,
            REJECTED,
            updated=T0 + hours(1),
            reason="string_too_long",
            detail="properties.Comment is longer than Klaviyo's 100 KB limit for a string",
        ),
    )
    run.accept_updates(
        day2,
        # Bob's update is replayed and accepted: its payload stays on the rejected row.
        profile_update("R3001", BOB, ACCEPTED, as_of=T0, append=["RMA-3001"]),
        # Chloe's newer return reached Klaviyo (her older one, R3003, never did).
        profile_update("R3009", CHLOE, ACCEPTED, as_of=T0 + hours(22), append=["RMA-3009"]),
    )
    run.record(
        day2,
        # Alice's return R3002 closed and a new one opened (both updates set aside): Klaviyo
        # still flags her with RMA-3010 only, and that flag may be out of date.
        profile_update(
            "R3002",
            ALICE,
            REJECTED,
            as_of=T0 + hours(20),
            unappend=["RMA-3002"],
            reason="invalid",
        ),
        profile_update(
            "R3008", ALICE, REJECTED, as_of=T0 + hours(21), append=["RMA-3008"], reason="invalid"
        ),
        # Dmitri's return closed, but never reached Klaviyo either way.
        profile_update(
            "R3004",
            DMITRI,
            REJECTED,
            as_of=T0 + hours(23),
            unappend=["RMA-3004"],
            reason="invalid",
        ),
    )
    run.accept_updates(
        T0 + hours(31),
        # Gina opens a second return; Hugo's only return closes, so he is no longer flagged.
        profile_update("R3011", GINA, ACCEPTED, as_of=T0 + hours(25), append=["RMA-3011"]),
        profile_update("R3007", HUGO, ACCEPTED, as_of=T0 + hours(25), unappend=["RMA-3007"]),
    )
    run.stats.count(run.stats.requests, "events")
    for _ in range(3):
        run.stats.count(run.stats.retries, "events")
    for _ in range(2):
        run.stats.count(run.stats.throttled, "events")
    run.finish(T0 + hours(34), "failed")

    # -- run 3: still running when the report is built ------------------------------------------
    run = start(T0 + hours(35), "33333333-cccc-4ccc-8ccc-333333333333")
    run.ledger.close()
