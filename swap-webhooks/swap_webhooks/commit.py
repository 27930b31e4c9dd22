"""Group commit: deliveries (and refusal counts) that arrive together are made durable together.

Each accepted delivery is committed with ``synchronous=FULL`` before Swap gets its 200, and a
commit costs an fsync (about 5 ms on this project's CI disk). One transaction per delivery put a
burst of 200 behind 200 fsyncs in a row, so the last answers took about a second; and under a
flood of bad requests, each refusal's counter commit queued ahead of the real deliveries. Here
one commit is in flight at a time and everything that arrived meanwhile goes into the next one:
a lone delivery still costs one fsync, a burst or a flood a handful.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Protocol

from starlette.concurrency import run_in_threadpool

from swap_webhooks.verify import Delivery, Reason


class _Store(Protocol):
    def add(self, delivery: Delivery, received_at: float) -> bool: ...

    def count_refusal(self, reason: Reason) -> None: ...


class GroupCommit:
    """Queues deliveries and refusals and commits them in batches, one at a time, off the loop."""

    def __init__(self, store: _Store) -> None:
        self._store = store
        self._deliveries: list[tuple[Delivery, float, asyncio.Future[bool]]] = []
        self._refusals: list[tuple[Reason, asyncio.Future[bool] | None]] = []
        self._draining = False

    async def add(self, delivery: Delivery, received_at: float) -> bool:
        """Like ``store.add``: True for a new delivery, once it is committed."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._deliveries.append((delivery, received_at, future))
        self._start()
        return await asyncio.shield(future)

    async def count_refusal(self, reason: Reason) -> None:
        """Count a refused request; returns once the count is committed."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._refusals.append((reason, future))
        self._start()
        await asyncio.shield(future)

    def note_refusal(self, reason: Reason) -> None:
        """Count a refusal without waiting (a connection cut before the app saw a request)."""
        self._refusals.append((reason, None))
        self._start()

    def _start(self) -> None:
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._deliveries or self._refusals:
                deliveries, self._deliveries = self._deliveries, []
                refusals, self._refusals = self._refusals, []
                items = [(delivery, at) for delivery, at, _ in deliveries]
                counts = Counter(reason for reason, _ in refusals)
                futures = [f for _, _, f in deliveries] + [f for _, f in refusals if f]
                try:
                    results = await run_in_threadpool(self._commit, items, counts)
                except Exception as error:  # noqa: BLE001 - each waiting request gets it
                    _settle(futures, error=error)
                    continue
                _settle(futures, results=results + [True] * (len(futures) - len(results)))
        finally:
            self._draining = False

    def _commit(
        self, items: Sequence[tuple[Delivery, float]], refusals: Mapping[Reason, int]
    ) -> list[bool]:
        """One transaction with the store's ``add_many``; one per item with older stores."""
        add_many = getattr(self._store, "add_many", None)
        if add_many is not None:
            return list(add_many(items, refusals))
        for reason, count in refusals.items():
            for _ in range(count):
                self._store.count_refusal(reason)
        return [self._store.add(delivery, received_at) for delivery, received_at in items]


def _settle(
    futures: list[asyncio.Future[bool]],
    *,
    results: list[bool] | None = None,
    error: Exception | None = None,
) -> None:
    for index, future in enumerate(futures):
        if future.done():
            continue  # the request went away; its commit stands
        if error is not None:
            future.set_exception(error)
        elif results is not None:
            future.set_result(results[index])
