"""The Swap Returns API emulator: ``GET /v2/external/returns`` over real HTTP, plus controls.

Auth, validation and errors follow the contract (``/work/shared/swap-returns-api.md``): Nest.js
style error bodies, 401 for a missing or unknown key, 403 for a key or store that do not go
together, 400 for bad parameters, 429 with ``Retry-After`` past the per-key rate limit.

Control endpoints (no auth: loopback only) let another process drive the data set the way the
Python methods do: ``POST /_emulator/advance``, ``POST /_emulator/touch``,
``POST /_emulator/returns`` (``"_raw": {field: JSON text}`` for values written verbatim),
``GET /_emulator/returns/{id}``, ``GET /_emulator/stats`` and
``POST /_emulator/update-during-paging``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from emulators.http import CONTROL_PREFIX, EmulatorServer, RateLimiter, Request, Response, route
from emulators.swap.dataset import ReturnDataset
from emulators.swap.query import QueryError, parse_query
from emulators.swap.raw import encode_page, raw_overrides
from emulators.swap.webhooks import WebhookResult, create_return_and_notify

LIST_PATH = "/v2/external/returns"
DEFAULT_RATE_LIMIT_PER_MINUTE = 120


@dataclass
class _ListHook:
    remaining: int
    action: Callable[[], None]


class SwapEmulator(EmulatorServer):
    """Swap's Returns API for one store, over a deterministic data set of ``returns`` returns.

    ``now`` fixes the end of the data set's history and starts the clock; without it, it is the
    current second and the clock keeps up with real time. ``other_keys`` maps further valid API
    keys to the stores they belong to (their stores have no returns here).
    """

    name = "swap"

    def __init__(
        self,
        returns: int = 2000,
        *,
        seed: int = 7,
        now: datetime | None = None,
        api_key: str = "swap_test_key",
        store_id: str = "store_test",
        rate_limit_per_minute: int | None = DEFAULT_RATE_LIMIT_PER_MINUTE,
        time_scale: float = 1.0,
        malformed_every: int | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        other_keys: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(host, port, seed=seed)
        if rate_limit_per_minute is not None and rate_limit_per_minute < 1:
            msg = "rate_limit_per_minute must be positive, or None for no limit"
            raise ValueError(msg)
        self.api_key = api_key
        self.store_id = store_id
        self.data = ReturnDataset(
            returns=returns, seed=seed, now=now, store_id=store_id, malformed_every=malformed_every
        )
        self.limiter = (
            RateLimiter([(rate_limit_per_minute, 60.0)], time_scale)
            if rate_limit_per_minute is not None
            else None
        )
        self._stores_by_key = {**(other_keys or {}), api_key: store_id}
        self._hooks: list[_ListHook] = []
        self._hooks_lock = threading.Lock()
        self.list_requests_answered = 0

    def start(self) -> SwapEmulator:
        super().start()
        return self

    def __enter__(self) -> SwapEmulator:
        return self.start()

    # -- the Python interface tests and the demo drive ------------------------------------------

    @property
    def clock(self) -> datetime:
        """The emulator's now: the time the next change will be stamped with, less a tick."""
        return datetime.fromtimestamp(self.data.clock.ms / 1000, UTC)

    def advance(self, count: int | None = None, fraction: float | None = None) -> list[str]:
        """Move ``count`` returns (or ``fraction`` of the unfinished ones) one lifecycle step on.

        Picks are drawn from the seed, so the same calls on the same data set change the same
        returns. Returns the ids changed, in API order.
        """
        return self.data.advance(count=count, fraction=fraction)

    def touch(self, return_ids: list[str]) -> None:
        self.data.touch(return_ids)

    def create_return(self, **overrides: Any) -> dict[str, Any]:
        """Add a return; an override may be a :class:`RawJSON` (written into pages verbatim)."""
        return self.data.create(overrides)

    def create_return_and_notify(
        self, url: str, secret: str, **overrides: Any
    ) -> tuple[dict[str, Any], WebhookResult]:
        """Create a return, then POST its signed ``returnCreated`` webhook to ``url``."""
        return create_return_and_notify(self, url, secret, **overrides)

    def get_return(self, return_id: str) -> dict[str, Any]:
        return self.data.get(return_id)

    def all_returns(self) -> Iterator[dict[str, Any]]:
        return self.data.iter_returns()

    def stats(self) -> dict[str, Any]:
        return {**self.data.stats(), "list_requests_answered": self.list_requests_answered}

    def after_list_requests(self, count: int, action: Callable[[], None]) -> None:
        """Run ``action`` once ``count`` more list requests have been answered successfully."""
        if count < 1:
            msg = "count must be at least 1"
            raise ValueError(msg)
        with self._hooks_lock:
            self._hooks.append(_ListHook(count, action))

    def update_during_paging(self, after_requests: int, return_ids: list[str]) -> None:
        """Touch these returns right after the ``after_requests``-th next list page is served.

        They jump to the end of the order and every later row shifts back by one position, so a
        client asking for the next page by number skips rows: the bug keyset paging avoids.
        """
        for return_id in return_ids:
            self.data.index_of(return_id)  # unknown ids fail now, not in a server thread
        ids = list(return_ids)
        self.after_list_requests(after_requests, lambda: self.data.touch(ids))

    # -- the API ---------------------------------------------------------------------------------

    def error_response(self, status: int, code: str, detail: str, **extra: Any) -> Response:
        """Nest.js's error body: ``{"statusCode", "message", "error"}``; never the key."""
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        return Response(status, {"statusCode": status, "message": detail, "error": phrase})

    @route("GET", LIST_PATH)
    def _list_returns(self, request: Request) -> Response:
        key = request.header("x-api-key")
        if not key:
            return self.error_response(401, "unauthorized", "Missing API key")
        key_store = self._stores_by_key.get(key)
        if key_store is None:
            return self.error_response(401, "unauthorized", "Invalid API key")
        if self.limiter is not None:
            wait = self.limiter.acquire(key)
            if wait is not None:
                return self.throttled(wait)
        try:
            query, echo = parse_query(request.query)
        except QueryError as exc:
            return self.error_response(400, "bad_request", str(exc))
        if query.store_id != key_store:
            return self.error_response(403, "forbidden", "API key is not valid for this store")
        if key_store == self.store_id:
            returns, total = self.data.select(query)
        else:
            returns, total = [], 0
        total_pages = -(-total // query.items_per_page)
        body = {
            "returns": returns,
            "version": "v2",
            "query_params": echo,
            "pagination": {
                "page": query.page,
                "items_per_page": query.items_per_page,
                "total_pages": total_pages,
                "total_items": total,
                "has_next_page": query.page < total_pages,
            },
        }
        self._list_request_answered()
        return Response(200, encode_page(body))

    def _list_request_answered(self) -> None:
        with self._hooks_lock:
            self.list_requests_answered += 1
            due = []
            for hook in list(self._hooks):
                hook.remaining -= 1
                if hook.remaining <= 0:
                    self._hooks.remove(hook)
                    due.append(hook)
        for hook in due:
            hook.action()

    # -- control endpoints -----------------------------------------------------------------------

    @route("POST", CONTROL_PREFIX + "/advance")
    def _control_advance(self, request: Request) -> Response:
        try:
            spec = request.json()
            changed = self.advance(count=spec.get("count"), fraction=spec.get("fraction"))
        except (AttributeError, TypeError, ValueError) as exc:
            return self.error_response(400, "bad_request", f"advance: {exc}")
        return Response(200, {"changed": changed})

    @route("POST", CONTROL_PREFIX + "/touch")
    def _control_touch(self, request: Request) -> Response:
        try:
            ids = request.json()["return_ids"]
            if not isinstance(ids, list):
                raise TypeError("return_ids must be a list")
            self.touch(ids)
        except KeyError as exc:
            return self.error_response(404, "not_found", f"no such return or field: {exc}")
        except (TypeError, ValueError) as exc:
            return self.error_response(400, "bad_request", f"touch: {exc}")
        return Response(200, {"touched": len(ids)})

    @route("POST", CONTROL_PREFIX + "/update-during-paging")
    def _control_update_during_paging(self, request: Request) -> Response:
        try:
            spec = request.json()
            self.update_during_paging(int(spec["after_requests"]), list(spec["return_ids"]))
        except KeyError as exc:
            return self.error_response(404, "not_found", f"no such return or field: {exc}")
        except (TypeError, ValueError) as exc:
            return self.error_response(400, "bad_request", f"update-during-paging: {exc}")
        return Response(202, {"scheduled": True})

    @route("POST", CONTROL_PREFIX + "/returns")
    def _control_create(self, request: Request) -> Response:
        try:
            overrides = request.json() or {}
            if not isinstance(overrides, dict):
                raise TypeError("the body must be a JSON object of fields")
            overrides.update(raw_overrides(overrides.pop("_raw", {})))
            created = self.create_return(**overrides)
        except (TypeError, ValueError) as exc:
            return self.error_response(400, "bad_request", f"create: {exc}")
        return Response(201, encode_page(created))

    @route("GET", CONTROL_PREFIX + "/returns/{return_id}")
    def _control_get(self, request: Request) -> Response:
        try:
            return Response(200, encode_page(self.get_return(request.params["return_id"])))
        except KeyError:
            return self.error_response(404, "not_found", "no such return")

    @route("GET", CONTROL_PREFIX + "/stats")
    def _control_stats(self, request: Request) -> Response:
        return Response(200, self.stats())
