"""The HTTP side: ``POST /webhooks/swap`` for Swap, ``GET /health`` and ``GET /metrics`` for us.

The webhook answer must come within Swap's patience (we aim for 100 ms), so a request only
checks, persists and wakes the runner; the pipeline run happens afterwards. Refusals carry the
HTTP status and its bare phrase: the detail (expired? which store?) is for our metrics and log,
not for whoever sent the request.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from swap_webhooks.brands import Brand, load_brands
from swap_webhooks.commit import GroupCommit
from swap_webhooks.guard import CLOSE_AFTER, check_media_type, read_body
from swap_webhooks.runner import Runner, describe_command
from swap_webhooks.settings import Settings
from swap_webhooks.store import OUTCOMES, DeliveryStore
from swap_webhooks.verify import Reason, Refused, claimed_store, verify_delivery

logger = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/swap"


@dataclass
class BrandRoute:
    """One brand of a brands file: its settings, queue (state db), runner and group commit."""

    brand: Brand
    store: DeliveryStore
    runner: Runner
    commits: GroupCommit


class Receiver:
    """What the routes share: settings, the store and the runner (both opened by the lifespan)."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.env = env
        self.store: DeliveryStore | None = None
        self.runner: Runner | None = None
        self.started_at = time.time()
        self.commits: GroupCommit | None = None  # deliveries of a burst share one commit
        # Answer times of recent accepted deliveries, in ms: the 100 ms budget, observed.
        self.answer_ms: deque[float] = deque(maxlen=1000)
        #: With ``brands_file``: each brand by its store id (the main store counts refusals).
        self.routes: dict[str, BrandRoute] = {}

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.store = DeliveryStore(self.settings.state_db)
        if self.settings.brands_file is not None:
            async with self._brand_routes():
                yield
            return
        try:
            self.runner = Runner(self.settings, self.store, env=self.env)
            self.runner.start()
            logger.info(
                "receiving Swap webhooks for store %s; runs `%s` in %s",
                self.settings.store_id,
                describe_command(self.settings),
                self.settings.project_dir,
            )
            yield
            await self.runner.stop()
        finally:
            self.store.close()

    @contextlib.asynccontextmanager
    async def _brand_routes(self) -> AsyncIterator[None]:
        """A queue, state db and runner per brand; refusals counted in the main state db."""
        assert self.store is not None
        try:
            for store_id, brand in load_brands(self.settings, self.env or os.environ).items():
                store = DeliveryStore(brand.settings.state_db)
                runner = Runner(brand.settings, store, env=self.env, brand=brand.name)
                self.routes[store_id] = BrandRoute(brand, store, runner, GroupCommit(store))
                runner.start()
            where = "launched on Dagster" if self.settings.dagster_url else "run here"
            logger.info("receiving Swap webhooks for %d brands; runs %s", len(self.routes), where)
            yield
            for route in self.routes.values():
                await route.runner.stop()
        finally:
            for route in self.routes.values():
                route.store.close()
            self.store.close()

    # -- routes ----------------------------------------------------------------------------------

    async def webhook(self, request: Request) -> Response:
        if self.routes:
            return await self.brand_webhook(request)
        received_at = time.time()
        start = time.perf_counter()
        _, runner = self._parts()
        settings = self.settings
        try:
            check_media_type(request)
            body = await read_body(
                request, limit=settings.max_body_bytes, timeout=settings.body_timeout_seconds
            )
            delivery = verify_delivery(
                body,
                settings.webhook_secret.reveal(),
                settings.store_id,
                max_age_seconds=settings.max_token_age_seconds,
                now=received_at,
            )
        except Refused as refused:
            return await self._refuse(refused.reason)
        new = await self.group_commit().add(delivery, received_at)
        if new:
            runner.notify()
            logger.info("accepted %s for return %s", delivery.event, delivery.return_id)
        else:
            logger.info("redelivered %s for return %s: ignored", delivery.event, delivery.return_id)
        self.answer_ms.append((time.perf_counter() - start) * 1000)
        return JSONResponse({"status": "accepted"})

    async def brand_webhook(self, request: Request) -> Response:
        """The store named in the token picks the brand, whose secret then verifies it."""
        received_at = time.time()
        start = time.perf_counter()
        settings = self.settings
        try:
            check_media_type(request)
            body = await read_body(
                request, limit=settings.max_body_bytes, timeout=settings.body_timeout_seconds
            )
            route = self.routes.get(claimed_store(body))
            if route is None:
                raise Refused(Reason.WRONG_STORE)
            delivery = verify_delivery(
                body,
                route.brand.settings.webhook_secret.reveal(),
                route.brand.settings.store_id,
                max_age_seconds=settings.max_token_age_seconds,
                now=received_at,
            )
        except Refused as refused:
            return await self._refuse(refused.reason)
        if await route.commits.add(delivery, received_at):
            route.runner.notify()
            logger.info("accepted %s for brand %s", delivery.event, route.brand.name)
        self.answer_ms.append((time.perf_counter() - start) * 1000)
        return JSONResponse({"status": "accepted"})

    async def health(self, request: Request) -> Response:
        """Liveness, the queue, and the last run with the end of its output and its log file.

        A failed webhook-triggered run is read here: its outcome, exit status, duration, note,
        last lines, and the file holding its whole output.
        """
        if self.routes:
            return await self.brands_health()
        store, runner = self._parts()
        queue = await run_in_threadpool(store.queue)
        last = await run_in_threadpool(store.runs, 1)
        success = await run_in_threadpool(store.last_success)
        alert_sent = await run_in_threadpool(store.stale_alert_sent)
        body = {
            "status": "ok" if runner.alive else "down",
            "runner": runner.state,
            "queue": queue,
            "current_run": runner.current_run,
            "last_run": last[0] if last else None,
            "last_success": success,
            "stale": {
                "since": runner.stale_since,
                "after_minutes": self.settings.stale_after_minutes,
                "alert_sent_at": alert_sent,
            },
            "uptime_seconds": round(time.time() - self.started_at, 3),
        }
        return JSONResponse(body, status_code=200 if runner.alive else 503)

    async def brands_health(self) -> Response:
        """Each brand's runner, queue and last run; down when any brand's runner stopped."""
        brands = {}
        for route in self.routes.values():
            last = await run_in_threadpool(route.store.runs, 1)
            brands[route.brand.name] = {
                "runner": route.runner.state,
                "queue": await run_in_threadpool(route.store.queue),
                "current_run": route.runner.current_run,
                "last_run": last[0] if last else None,
                "last_success": await run_in_threadpool(route.store.last_success),
            }
        alive = all(route.runner.alive for route in self.routes.values())
        body = {
            "status": "ok" if alive else "down",
            "brands": brands,
            "uptime_seconds": round(time.time() - self.started_at, 3),
        }
        return JSONResponse(body, status_code=200 if alive else 503)

    async def _counters(self) -> dict[str, int]:
        """The counters: the main state db's, plus every brand's (deliveries and runs)."""
        assert self.store is not None, "lifespan not started"
        counts = dict(await run_in_threadpool(self.store.counters))
        for route in self.routes.values():
            for name, value in (await run_in_threadpool(route.store.counters)).items():
                counts[name] = counts.get(name, 0) + value
        return counts

    async def _queue(self) -> dict[str, Any]:
        """The queue: the single store's, or every brand's added up (the oldest of all)."""
        if not self.routes:
            return dict(await run_in_threadpool(self._parts()[0].queue))
        queues = [await run_in_threadpool(r.store.queue) for r in self.routes.values()]
        oldest = [q["oldest_received_at"] for q in queues if q["oldest_received_at"]]
        return {
            "pending": sum(q["pending"] for q in queues),
            "in_run": sum(q["in_run"] for q in queues),
            "oldest_received_at": min(oldest) if oldest else None,
        }

    async def metrics(self, request: Request) -> Response:
        counts = await self._counters()
        queue = await self._queue()
        answers = sorted(self.answer_ms)
        body: dict[str, Any] = {
            "deliveries": {
                "accepted": counts["accepted"],
                "redelivered": counts["redelivered"],
                "coalesced": counts["coalesced"],
                "refused": {reason.key: counts[f"refused.{reason.key}"] for reason in Reason},
            },
            "runs": {name: counts[f"runs.{name}"] for name in ("started", *OUTCOMES)},
            "queue": queue,
            "answer_ms": {
                "count": len(answers),
                "median": _nearest_rank(answers, 50),
                "p95": _nearest_rank(answers, 95),
                "max": round(answers[-1], 3) if answers else None,
            },
        }
        return JSONResponse(body)

    # -- helpers ---------------------------------------------------------------------------------

    def _parts(self) -> tuple[DeliveryStore, Runner]:
        assert self.store is not None, "lifespan not started"
        assert self.runner is not None, "lifespan not started"
        return self.store, self.runner

    def group_commit(self) -> GroupCommit:
        """The store's group commit: deliveries and refusal counts of a burst share one fsync."""
        assert self.store is not None, "lifespan not started"
        store = self.store
        if self.commits is None:
            self.commits = GroupCommit(store)
        return self.commits

    async def _refuse(self, reason: Reason) -> Response:
        await self.group_commit().count_refusal(reason)
        logger.info("refused a delivery: %s", reason.key)
        headers = {"connection": "close"} if reason in CLOSE_AFTER else None
        return JSONResponse({"error": reason.phrase}, status_code=reason.status, headers=headers)


def _nearest_rank(ordered: list[float], percent: float) -> float | None:
    """The nearest-rank percentile: the smallest value with ``percent``% of values at or below.

    Always one of the values, and never lower for a higher percentile (p95 >= median).
    """
    if not ordered:
        return None
    rank = max(math.ceil(percent / 100 * len(ordered)), 1)
    return round(ordered[rank - 1], 3)


def create_app(settings: Settings, *, env: Mapping[str, str] | None = None) -> Starlette:
    """The receiver as an ASGI app; ``env`` is the environment its runs get (default: ours)."""
    receiver = Receiver(settings, env)
    app = Starlette(
        routes=[
            Route(WEBHOOK_PATH, receiver.webhook, methods=["POST"]),
            Route("/health", receiver.health, methods=["GET"]),
            Route("/metrics", receiver.metrics, methods=["GET"]),
        ],
        lifespan=receiver.lifespan,
    )
    app.state.receiver = receiver
    return app
