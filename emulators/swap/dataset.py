"""The emulated store's returns: a compact index in memory, each return rendered when asked for.

Per return, memory holds only what ordering, filtering and the lifecycle need (a few numbers in
``array``s, about 30 bytes); the object itself is drawn again from ``(seed, index)`` whenever a page
needs it. Returns that moved on after start-up also keep the times of the steps they took.

Every change happens at a fresh tick of the clock, later than any existing ``date_updated``, so
changed rows always move to the end of the API order: that is what a client paging by page
number over live data trips on.
"""

from __future__ import annotations

import functools
import random
import threading
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from emulators.swap.lifecycle import (
    CUSTOMER_STREAM,
    MAX_INDEX,
    Planner,
    Skeleton,
    Stage,
    delivery_status,
    return_status,
)
from emulators.swap.people import Customer, make_customer
from emulators.swap.query import ReturnQuery
from emulators.swap.records import ReturnRenderer
from emulators.swap.timestamps import SECOND_MS, Clock, default_now, to_iso, to_ms

_FLAGGED = 1
_PASSES_QC = 2
_FIXED_FIELDS = frozenset({"return_id", "date_updated"})


class ReturnDataset:
    """Thread-safe: the HTTP threads read pages while tests or control calls change returns."""

    def __init__(
        self,
        *,
        returns: int,
        seed: int,
        now: datetime | None,
        store_id: str,
        malformed_every: int | None = None,
    ) -> None:
        if malformed_every is not None and malformed_every < 1:
            msg = "malformed_every must be a positive number of returns"
            raise ValueError(msg)
        start = now if now is not None else default_now()
        self.now_ms = to_ms(start)
        self.clock = Clock(self.now_ms, follow_wall_clock=now is None)
        self.planner = Planner(seed, returns, self.now_ms)
        self._customer = functools.lru_cache(maxsize=8192)(self._make_customer)
        self.renderer = ReturnRenderer(
            seed=seed, store_id=store_id, customer=self._customer, malformed_every=malformed_every
        )
        self._lock = threading.RLock()
        self._submitted = array("q")
        self._updated = array("q")
        self._stage = bytearray()
        self._flags = bytearray()
        # Times of steps taken after start-up, fields given to create_return, created returns'
        # submission times: only for the returns concerned.
        self._moved: dict[int, dict[Stage, int]] = {}
        self._overrides: dict[int, dict[str, Any]] = {}
        self._anchors: dict[int, int] = {}
        self._advance_rng = random.Random(seed)
        for index in range(returns):
            skeleton = self.planner.skeleton(index)
            self._append(skeleton, skeleton.stage_at(self.now_ms))
        self._order = sorted(range(returns), key=self._sort_key)

    def __len__(self) -> int:
        return len(self._stage)

    # -- reading ---------------------------------------------------------------------------------

    def select(self, query: ReturnQuery) -> tuple[list[dict[str, Any]], int]:
        """One page of returns matching ``query`` in API order, and how many match in all."""
        offset = (query.page - 1) * query.items_per_page
        with self._lock:
            start = 0
            if query.updated_since_ms is not None:
                start = bisect_left(
                    self._order, query.updated_since_ms, key=self._updated.__getitem__
                )
            if query.filters_rows:
                matching = [i for i in self._order[start:] if self._matches(i, query)]
                total = len(matching)
                chosen = matching[offset : offset + query.items_per_page]
            else:
                total = len(self._order) - start
                begin = start + offset
                chosen = self._order[begin : begin + query.items_per_page]
            return [self._render(i) for i in chosen], total

    def get(self, return_id: str) -> dict[str, Any]:
        """Raises KeyError for an id that is not one of this data set's returns."""
        with self._lock:
            return self._render(self.index_of(return_id))

    def iter_returns(self) -> Iterator[dict[str, Any]]:
        """Every return in API order, as ordered when iteration starts."""
        with self._lock:
            order = list(self._order)
        for index in order:
            with self._lock:
                record = self._render(index)
            yield record  # never while holding the lock: the caller may call the server meanwhile

    def index_of(self, return_id: str) -> int:
        try:
            index = ReturnRenderer.index_in(return_id)
        except ValueError:
            raise KeyError(return_id) from None
        if index >= len(self) or self.renderer.return_id(self._skeleton(index)) != return_id:
            raise KeyError(return_id)
        return index

    def stats(self) -> dict[str, Any]:
        with self._lock:
            statuses: Counter[str] = Counter()
            deliveries: Counter[str] = Counter()
            stages: Counter[str] = Counter()
            for index, (stage_value, flags) in enumerate(
                zip(self._stage, self._flags, strict=True)
            ):
                stage = Stage(stage_value)
                override = self._overrides.get(index, {})
                statuses[
                    override.get("return_status")
                    or return_status(
                        stage, flagged=bool(flags & _FLAGGED), passes_qc=bool(flags & _PASSES_QC)
                    )
                ] += 1
                deliveries[override.get("delivery_status") or delivery_status(stage)] += 1
                stages[stage.name.lower()] += 1
            return {
                "total_returns": len(self),
                "by_status": dict(statuses),
                "by_delivery_status": dict(deliveries),
                "by_stage": dict(stages),
                "clock": to_iso(self.clock.ms),
            }

    # -- changing --------------------------------------------------------------------------------

    def advance(self, count: int | None = None, fraction: float | None = None) -> list[str]:
        """Move ``count`` (or ``fraction`` of the) unfinished returns one step on; their ids."""
        if (count is None) == (fraction is None):
            msg = "give exactly one of count and fraction"
            raise ValueError(msg)
        if count is not None and count < 0:
            msg = "count must not be negative"
            raise ValueError(msg)
        if fraction is not None and not 0 <= fraction <= 1:
            msg = "fraction must be between 0 and 1"
            raise ValueError(msg)
        with self._lock:
            unfinished = [i for i, stage in enumerate(self._stage) if stage < Stage.CLOSED]
            wanted = count if count is not None else round(len(unfinished) * (fraction or 0.0))
            chosen = sorted(self._advance_rng.sample(unfinished, min(wanted, len(unfinished))))
            if not chosen:
                return []
            now = self.clock.tick()
            for index in chosen:
                skeleton = self._skeleton(index)
                following = skeleton.next_stage(Stage(self._stage[index]))
                assert following is not None  # only unfinished returns were chosen
                self._moved.setdefault(index, {})[following] = now
                self._stage[index] = following
                self._updated[index] = now
            self._move_to_end(chosen)
            return [self.renderer.return_id(self._skeleton(i)) for i in chosen]

    def touch(self, return_ids: Iterable[str]) -> None:
        """Bump ``date_updated`` of these returns to a fresh tick, changing nothing else.

        Raises:
            KeyError: an id is unknown (then nothing is touched).
        """
        with self._lock:
            chosen = sorted({self.index_of(return_id) for return_id in return_ids})
            if not chosen:
                return
            now = self.clock.tick()
            for index in chosen:
                self._updated[index] = now
            self._move_to_end(chosen)

    def create(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """Add a return submitted now (status Open); ``overrides`` replace generated fields.

        Raises:
            ValueError: an override names a field the emulator must control.
        """
        fixed = _FIXED_FIELDS.intersection(overrides)
        if fixed:
            msg = f"these fields cannot be overridden: {sorted(fixed)}"
            raise ValueError(msg)
        with self._lock:
            index = len(self)
            if index > MAX_INDEX:
                msg = "the data set is full"
                raise ValueError(msg)
            now = self.clock.tick()
            self._anchors[index] = now
            if overrides:
                self._overrides[index] = dict(overrides)
            self._append(self._skeleton(index), Stage.REQUESTED)
            self._order.append(index)
            return self._render(index)

    # -- internals -------------------------------------------------------------------------------

    def _make_customer(self, number: int) -> Customer:
        return make_customer(number, self.planner.rng(number, CUSTOMER_STREAM))

    def _skeleton(self, index: int) -> Skeleton:
        return self.planner.skeleton(index, self._anchors.get(index))

    def _append(self, skeleton: Skeleton, stage: Stage) -> None:
        moved = self._moved.get(skeleton.index, {})
        self._submitted.append(skeleton.submitted_ms)
        self._updated.append(moved.get(stage, skeleton.planned_time(stage)))
        self._stage.append(stage)
        self._flags.append(
            (_FLAGGED if skeleton.flagged else 0) | (_PASSES_QC if skeleton.passes_qc else 0)
        )

    def _sort_key(self, index: int) -> tuple[int, int, int]:
        # Equal to sorting by (date_updated, return_id): ids start with the submission second.
        return self._updated[index], self._submitted[index] // SECOND_MS, index

    def _move_to_end(self, changed: list[int]) -> None:
        """Changed rows share the newest timestamp: they leave their places for the end."""
        moved = set(changed)
        kept = [i for i in self._order if i not in moved]
        kept.extend(sorted(changed, key=self._sort_key))
        self._order = kept

    def _render(self, index: int) -> dict[str, Any]:
        skeleton = self._skeleton(index)
        stage = Stage(self._stage[index])
        moved = self._moved.get(index, {})
        times: dict[Stage, int] = {}
        for step, planned in zip(skeleton.path, skeleton.planned, strict=True):
            times[step] = moved.get(step, planned)
            if step is stage:
                break
        record = self.renderer.render(skeleton, stage, times, self._updated[index])
        override = self._overrides.get(index)
        if override:
            record.update(override)
        return record

    def _matches(self, index: int, query: ReturnQuery) -> bool:
        submitted = self._submitted[index]
        if query.submitted_from_ms is not None and submitted < query.submitted_from_ms:
            return False
        if query.submitted_to_ms is not None and submitted > query.submitted_to_ms:
            return False
        if query.rma_number is not None and query.rma_number.strip() != self._field(
            index, "rma_number"
        ):
            return False
        if query.shopify_order_name is not None and _order_name(
            query.shopify_order_name
        ) != _order_name(self._field(index, "shopify_order_name")):
            return False
        if query.customer_email is not None:
            email = self._field(index, "customer_email")
            return email is not None and _normal_email(email) == _normal_email(query.customer_email)
        return True

    def _field(self, index: int, name: str) -> Any:
        """A filterable field without rendering the whole return."""
        override = self._overrides.get(index)
        if override and name in override:
            return override[name]
        if name == "rma_number":
            return self.renderer.rma_number(index)
        skeleton = self._skeleton(index)
        if name == "shopify_order_name":
            return f"#{skeleton.order_number}"
        return self._customer(skeleton.customer).email_as_typed(skeleton.email_variant)


def _normal_email(email: str) -> str:
    return email.strip().lower()


def _order_name(name: str) -> str:
    """Shopify shows ``#1001``; people type ``1001`` as often."""
    return name.strip().lstrip("#")
