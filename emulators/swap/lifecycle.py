"""Where each return is in its life, and when it got (or will get) to each step.

A return's *skeleton* is everything that decides its place in the API order and its status: when
it was submitted, its fate (processed, cancelled or expired), its lines' types and QC outcomes, and
the planned time of every step of its path. It is drawn from ``(seed, index)`` alone, so the data
set needs no storage beyond a few numbers per return; everything else (items, money, addresses) is
drawn later, when a page is rendered, from a second stream of the same seed (see ``records``).

Some steps happen in bulk at one shared timestamp, as they do in Swap: merchants close processed
returns with a bulk action every few weeks, and nightly jobs close and expire returns at a fixed
second. That is what gives clients pages made of a single ``date_updated``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import IntEnum

from emulators.swap.people import EMAIL_VARIANT_WEIGHTS, EmailVariant
from emulators.swap.timestamps import DAY_MS, HOUR_MS, start_of_day_ms

# Swap's value sets (documented for V1 webhooks, assumed identical in V2).
RETURN_STATUSES = ("Open", "Needs Review", "On Hold", "Closed", "Expired", "Cancelled")
OPEN_STATUSES = frozenset({"Open", "Needs Review", "On Hold"})
DELIVERY_STATUSES = ("Pre-Transit", "In-Transit", "Delivered")
RETURN_TYPES = (
    "Refund",
    "Shop Now Credit",
    "Shop Later Credit",
    "Exchange",
    "Additional Payment",
    "Recycle",
    "Warranty",
)
QUALITY_CONTROL_STATUSES = ("pending", "passed", "failed", "partial")

# What a single line can be returned for ("Additional Payment" only ever joins an exchange).
_LINE_TYPES = ("Refund", "Exchange", "Shop Now Credit", "Shop Later Credit", "Recycle", "Warranty")
_LINE_TYPE_WEIGHTS = (50, 20, 9, 9, 6, 6)

HISTORY_DAYS = 120
_BULK_CLOSE_DAYS_AGO = (97, 69, 41, 13, -15)  # the last one is still to come
_BULK_CLOSE_TIME = 10 * HOUR_MS + 30 * 60_000
_NIGHTLY_CLOSE_HOUR = 3
_NIGHTLY_EXPIRY_HOUR = 4
_EXPIRY_DAYS = 30

# Streams of random numbers drawn from one seed: one per purpose, so that drawing more of one
# never shifts another.
SKELETON_STREAM = 0
CUSTOMER_CHOICE_STREAM = 1
DETAIL_STREAM = 2
CUSTOMER_STREAM = 3

MAX_INDEX = 2**24 - 1


class Stage(IntEnum):
    """The steps of a return's life, in order; the last three are terminal."""

    REQUESTED = 0
    IN_TRANSIT = 1
    DELIVERED = 2
    INSPECTED = 3
    REFUNDED_PARTLY = 4
    # Resolved: refunded, or credit issued and exchange sent for returns without refund lines.
    REFUNDED = 5
    CLOSED = 6
    CANCELLED = 7
    EXPIRED = 8


TERMINAL_STAGES = frozenset({Stage.CLOSED, Stage.CANCELLED, Stage.EXPIRED})


class Fate(IntEnum):
    """How a return ends: most are processed and closed, a few cancelled or left to expire."""

    PROCESSED = 0
    CANCELLED = 1
    EXPIRED = 2


@dataclass(frozen=True, slots=True)
class Skeleton:
    """What decides a return's order and status; ``planned[k]`` is the time of ``path[k]``."""

    index: int
    submitted_ms: int
    customer: int
    email_variant: EmailVariant
    order_number: int
    fate: Fate
    line_types: tuple[str, ...]
    line_passes_qc: tuple[bool, ...]
    flagged: bool
    path: tuple[Stage, ...]
    planned: tuple[int, ...]

    @property
    def passes_qc(self) -> bool:
        return all(self.line_passes_qc)

    def next_stage(self, stage: Stage) -> Stage | None:
        position = self.path.index(stage)
        return self.path[position + 1] if position + 1 < len(self.path) else None

    def stage_at(self, ms: int) -> Stage:
        reached = self.path[0]
        for stage, planned in zip(self.path, self.planned, strict=True):
            if planned > ms:
                break
            reached = stage
        return reached

    def planned_time(self, stage: Stage) -> int:
        return self.planned[self.path.index(stage)]


def return_status(stage: Stage, *, flagged: bool, passes_qc: bool) -> str:
    """Swap's ``return_status`` for a step: review and hold states depend on the return's QC."""
    if stage is Stage.REQUESTED:
        return "Needs Review" if flagged else "Open"
    if stage is Stage.INSPECTED:
        return "Needs Review" if passes_qc else "On Hold"
    if stage is Stage.CLOSED:
        return "Closed"
    if stage is Stage.CANCELLED:
        return "Cancelled"
    if stage is Stage.EXPIRED:
        return "Expired"
    return "Open"


def delivery_status(stage: Stage) -> str:
    if stage in (Stage.REQUESTED, Stage.CANCELLED, Stage.EXPIRED):
        return "Pre-Transit"
    if stage is Stage.IN_TRANSIT:
        return "In-Transit"
    return "Delivered"


class Planner:
    """Draws the skeletons of ``count`` returns submitted over the days before ``now``."""

    def __init__(self, seed: int, count: int, now_ms: int) -> None:
        if not 0 <= count <= MAX_INDEX:
            msg = f"returns must be between 0 and {MAX_INDEX}"
            raise ValueError(msg)
        self.seed = seed
        self.count = count
        self.now_ms = now_ms
        self.start_ms = now_ms - HISTORY_DAYS * DAY_MS
        self.customers = max(8, count // 3)
        today = start_of_day_ms(now_ms)
        self._bulk_closes = [
            today - days * DAY_MS + _BULK_CLOSE_TIME for days in _BULK_CLOSE_DAYS_AGO
        ]

    def rng(self, number: int, stream: int) -> random.Random:
        """The random stream ``stream`` of return (or customer) ``number``."""
        return random.Random((self.seed << 28) | (number << 4) | stream)

    def customer_of(self, index: int) -> int:
        # Every 11th return belongs to the customer of the one before: two returns sent off
        # within hours of each other, so some customers have two returns open at once.
        chooser = self.rng(index - 1 if index % 11 == 5 else index, CUSTOMER_CHOICE_STREAM)
        if chooser.random() < 0.2:
            return chooser.randrange(max(1, self.customers // 10))  # frequent returners
        return chooser.randrange(self.customers)

    def skeleton(self, index: int, anchor_ms: int | None = None) -> Skeleton:
        """Return ``index``'s skeleton; ``anchor_ms`` pins a created return's submission."""
        rng = self.rng(index, SKELETON_STREAM)
        spread = max(self.count, 1)
        submitted = self.start_ms + int((index + rng.random()) * HISTORY_DAYS * DAY_MS / spread)
        if anchor_ms is not None:
            submitted = anchor_ms
        fate_draw = rng.random()
        fate = Fate.PROCESSED
        if fate_draw < 0.1:
            fate = Fate.CANCELLED if fate_draw < 0.05 else Fate.EXPIRED
        lines = rng.choices((1, 2, 3, 4, 5), weights=(52, 26, 13, 6, 3))[0]
        first_type = rng.choices(_LINE_TYPES, weights=_LINE_TYPE_WEIGHTS)[0]
        line_types = tuple(
            first_type
            if position == 0 or rng.random() < 0.7
            else rng.choices(_LINE_TYPES, weights=_LINE_TYPE_WEIGHTS)[0]
            for position in range(lines)
        )
        passes = tuple(
            rng.random() < (0.35 if line_type == "Warranty" else 0.85) for line_type in line_types
        )
        # Some requests wait for review; a return created on demand starts plainly Open.
        flagged = rng.random() < 0.12 and anchor_ms is None
        split_refund = line_types.count("Refund") >= 2 and rng.random() < 0.6
        email_variant = EmailVariant(
            rng.choices(range(len(EMAIL_VARIANT_WEIGHTS)), weights=EMAIL_VARIANT_WEIGHTS)[0]
        )
        order_number = 1001 + index * 2 + rng.randrange(2)
        path, planned = self._plan(rng, fate, submitted, split_refund, passes_qc=all(passes))
        return Skeleton(
            index=index,
            submitted_ms=submitted,
            customer=self.customer_of(index),
            email_variant=email_variant,
            order_number=order_number,
            fate=fate,
            line_types=line_types,
            line_passes_qc=passes,
            flagged=flagged,
            path=path,
            planned=planned,
        )

    def _plan(
        self, rng: random.Random, fate: Fate, submitted: int, split_refund: bool, *, passes_qc: bool
    ) -> tuple[tuple[Stage, ...], tuple[int, ...]]:
        def later(start: int, low_days: float, high_days: float) -> int:
            return start + int(rng.uniform(low_days, high_days) * DAY_MS)

        if fate is Fate.CANCELLED:
            return (Stage.REQUESTED, Stage.CANCELLED), (submitted, later(submitted, 0.02, 3))
        if fate is Fate.EXPIRED:
            expiry = _next_daily(submitted + _EXPIRY_DAYS * DAY_MS, _NIGHTLY_EXPIRY_HOUR)
            return (Stage.REQUESTED, Stage.EXPIRED), (submitted, expiry)
        in_transit = later(submitted, 0.2, 4)
        delivered = later(in_transit, 1, 6)
        inspected = later(delivered, 0.05, 3)
        # Returns that failed QC sit on hold while the merchant and customer sort it out.
        held = 0 if passes_qc else int(rng.uniform(2, 10) * DAY_MS)
        first_refund = later(inspected + held, 0.01, 1)
        path = [Stage.REQUESTED, Stage.IN_TRANSIT, Stage.DELIVERED, Stage.INSPECTED]
        planned = [submitted, in_transit, delivered, inspected]
        if split_refund:
            path.append(Stage.REFUNDED_PARTLY)
            planned.append(first_refund)
            refunded = later(first_refund, 0.5, 6)
        else:
            refunded = first_refund
        path.append(Stage.REFUNDED)
        planned.append(refunded)
        close_draw = rng.random()
        if close_draw < 0.45:
            # Closed by the merchant's next bulk action (a far-off one when none is planned).
            closed = next(
                (moment for moment in self._bulk_closes if moment >= refunded),
                refunded + HISTORY_DAYS * DAY_MS,
            )
        elif close_draw < 0.7:
            closed = _next_daily(refunded, _NIGHTLY_CLOSE_HOUR)
        else:
            closed = later(refunded, 0, 3)
        path.append(Stage.CLOSED)
        planned.append(closed)
        return tuple(path), tuple(planned)


def _next_daily(after_ms: int, hour: int) -> int:
    """The first run at or after ``after_ms`` of a job that runs daily at ``hour``:00:00.000."""
    run = start_of_day_ms(after_ms) + hour * HOUR_MS
    return run if run >= after_ms else run + DAY_MS
