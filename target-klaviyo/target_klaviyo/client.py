"""Klaviyo's REST API over httpx: auth, revision, pacing to the published limits, retries.

Every request goes through one :class:`RateLimits` shared by all sinks (the SDK drains sinks in
parallel threads), paced per endpoint to Klaviyo's published burst and steady limits, so the
target rarely meets a ``429``. When it does, every request to that endpoint waits the
``Retry-After``, within the run's throttling deadline (``throttle_deadline_seconds``): a wait
beyond what is left of it, or a 429 once it is spent, raises :class:`ThrottleDeadline` at once.
``5xx``, timeouts and dropped connections are retried with exponential backoff (tenacity); a
request that keeps failing raises :class:`KlaviyoUnavailable`, and the caller records what was
already confirmed before letting the run fail.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import msgspec
from pyrate_limiter import InMemoryBucket, Limiter, Rate, SingleBucketFactory
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from target_klaviyo.dryrun import DryRunWriter

logger = logging.getLogger(__name__)
# httpx logs each request URL at INFO; a profile lookup URL carries customers' emails.
logging.getLogger("httpx").setLevel(logging.WARNING)

JSON_API = "application/vnd.api+json"
DEFAULT_REVISION = "2026-07-15"


@dataclass(frozen=True)
class Endpoint:
    """One Klaviyo operation: its method and path, and the limits Klaviyo publishes for it."""

    name: str
    method: str
    path: str
    limits: tuple[tuple[int, float], ...]  # (requests, seconds) windows


def _published(burst_per_s: int, steady_per_min: int) -> tuple[tuple[int, float], ...]:
    return ((burst_per_s, 1.0), (steady_per_min, 60.0))


#: The operations the target uses, with the limits in Klaviyo's OpenAPI specs (revision 2026-07-15).
ENDPOINTS = {
    e.name: e
    for e in (
        Endpoint("events", "POST", "/api/event-bulk-create-jobs", _published(10, 150)),
        Endpoint("profile_import", "POST", "/api/profile-bulk-import-jobs", _published(10, 150)),
        Endpoint(
            "profile_import_job",
            "GET",
            "/api/profile-bulk-import-jobs/{id}",
            _published(10, 150),
        ),
        Endpoint(
            "profile_import_errors",
            "GET",
            "/api/profile-bulk-import-jobs/{id}/import-errors",
            _published(10, 150),
        ),
        Endpoint(
            "catalog_update", "POST", "/api/catalog-variant-bulk-update-jobs", _published(75, 750)
        ),
        Endpoint(
            "catalog_update_job",
            "GET",
            "/api/catalog-variant-bulk-update-jobs/{id}",
            _published(75, 750),
        ),
        Endpoint("catalog_variants", "GET", "/api/catalog-variants", _published(350, 3500)),
        Endpoint("profiles", "GET", "/api/profiles", _published(75, 750)),
        Endpoint(
            "segments_create",
            "POST",
            "/api/segments",
            (*_published(1, 15), (100, 86400.0)),
        ),
        Endpoint("segments", "GET", "/api/segments", _published(75, 700)),
    )
}


class KlaviyoAuthError(Exception):
    """Klaviyo refused the API key: nothing can be delivered, so the run stops at once."""


class KlaviyoUnavailable(Exception):  # noqa: N818 - names the condition a person must act on
    """Klaviyo kept failing (5xx, timeouts, dropped connections) after every retry."""


class ThrottleDeadline(KlaviyoUnavailable):
    """Klaviyo throttled past the run's throttling deadline, or asked for a longer wait.

    Raised at once, without waiting: the run ends with outcome ``throttle_deadline``, keeping
    what was delivered and moving no bookmark past what was not. It names the endpoint and the
    wait Klaviyo asked for, which is what a person needs to tell a burst from a daily limit.
    """

    def __init__(self, endpoint: str, asked: float, left: float, deadline: float) -> None:
        self.endpoint = endpoint
        self.asked = asked
        spec = ENDPOINTS[endpoint]
        super().__init__(
            f"Klaviyo throttled {endpoint} ({spec.method} {spec.path}) and asked to wait "
            f"{asked:.0f} s (Retry-After); {max(left, 0.0):.0f} s were left of this run's "
            f"{deadline:.0f} s throttling deadline (throttle_deadline_seconds): stopping "
            "without moving the bookmark past what was not delivered"
        )


class _Transient(Exception):  # noqa: N818 - an internal signal to retry, never shown as is
    """A 5xx, a timeout or a dropped connection: worth another try after a pause."""


class ThrottleBudget:
    """Wall-clock time one run may spend waiting on Klaviyo's 429s, shared by every thread.

    Overlapping waits (several threads throttled at once) count once. A run that is only
    occasionally throttled never reaches it however long it runs; one that Klaviyo keeps
    throttling, or asks to wait hours, ends within it.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.used = 0.0
        self._until = 0.0
        self._clock = clock
        self._lock = threading.Lock()

    def take(self, wait: float) -> float | None:
        """Reserve ``wait`` seconds from now; None if granted, else the seconds that were left."""
        with self._lock:
            now = self._clock()
            added = max(0.0, now + wait - max(now, self._until))
            left = self.seconds - self.used
            if left <= 0 or added > left:
                return left
            self.used += added
            self._until = max(self._until, now + wait)
            return None


class RateLimits:
    """Paces requests per endpoint, shared by every sink and thread of one target run.

    Sliding windows (pyrate-limiter's log algorithm) for each published limit, plus a gate that
    a ``429`` closes for its ``Retry-After``, so that no thread keeps hammering a throttled
    endpoint while another one waits.
    """

    #: Each window is taken a little wider than published, for clock skew and network jitter.
    MARGIN = 1.03

    def __init__(self, overrides: Mapping[str, Any] | None = None) -> None:
        self._limiters: dict[str, Limiter] = {}
        self._closed_until: dict[str, float] = {}
        self._lock = threading.Lock()
        for name, endpoint in ENDPOINTS.items():
            windows = endpoint.limits
            if overrides and name in overrides:
                windows = tuple((int(w["requests"]), float(w["seconds"])) for w in overrides[name])
            rates = [
                Rate(count, max(1, int(seconds * 1000 * self.MARGIN))) for count, seconds in windows
            ]
            # No leak thread: pyrate-limiter would start one per bucket (an asyncio loop each, ten
            # per client) that nothing ever stops. Old entries only cost memory, one per request
            # of the run, and the log's window counts skip them.
            bucket = SingleBucketFactory(InMemoryBucket(rates), schedule_leak=False)
            self._limiters[name] = Limiter(bucket, buffer_ms=10)

    def acquire(self, endpoint: str) -> None:
        while True:
            with self._lock:
                wait = self._closed_until.get(endpoint, 0.0) - time.monotonic()
            if wait <= 0:
                break
            time.sleep(wait)
        self._limiters[endpoint].try_acquire(endpoint, blocking=True)

    def close_for(self, endpoint: str, seconds: float) -> None:
        with self._lock:
            until = time.monotonic() + seconds
            self._closed_until[endpoint] = max(self._closed_until.get(endpoint, 0.0), until)


class RunStats:
    """Counters the run summary reports: retries and 429s, per endpoint."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, counter: Counter[str], endpoint: str) -> None:
        with self._lock:
            counter[endpoint] += 1


_encoder = msgspec.json.Encoder(decimal_format="number")


def encode(body: Any) -> bytes:
    """JSON bytes for a request body (Decimal numbers and datetimes come from the SDK)."""
    return _encoder.encode(body)


class KlaviyoClient:
    """Sends requests to Klaviyo and answers with the final response (2xx or a 4xx to handle)."""

    def __init__(
        self,
        *,
        api_url: str,
        api_key: str,
        revision: str,
        limits: RateLimits,
        stats: RunStats,
        timeout: float = 30.0,
        max_tries: int = 6,
        backoff_base: float = 1.0,
        throttle_deadline: float = 300.0,
        dry_run: DryRunWriter | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=api_url.rstrip("/"),
            headers={
                "Authorization": f"Klaviyo-API-Key {api_key}",
                "revision": revision,
                "Accept": JSON_API,
                "Content-Type": JSON_API,
                "User-Agent": "target-klaviyo",
            },
            timeout=timeout,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
        )
        self._limits = limits
        self.stats = stats
        self._max_tries = max_tries
        self._backoff_base = backoff_base
        self.throttle_budget = ThrottleBudget(throttle_deadline)
        self._dry_run = dry_run

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, stats: RunStats, dry_run: DryRunWriter | None = None
    ) -> KlaviyoClient:
        """A client from target-klaviyo's settings (a run, a replay, a provisioning command).

        ``config`` has the schema's defaults filled in (by the SDK or ``klaviyo-ops``).
        """
        return cls(
            api_url=config["api_url"],
            api_key=config["api_key"],
            revision=str(config["revision"]),
            limits=RateLimits(config.get("rate_limits")),
            stats=stats,
            timeout=float(config["request_timeout"]),
            max_tries=int(config["max_retries"]) + 1,
            throttle_deadline=float(config["throttle_deadline_seconds"]),
            dry_run=dry_run,
        )

    def close(self) -> None:
        self._http.close()

    @property
    def dry_run(self) -> bool:
        return self._dry_run is not None

    def request(
        self,
        endpoint_name: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        path_id: str | None = None,
        url: str | None = None,
    ) -> httpx.Response:
        endpoint = ENDPOINTS[endpoint_name]
        path = url or endpoint.path.replace("{id}", path_id or "")
        content = None if body is None else encode(body)
        if self._dry_run is not None and endpoint.method != "GET":
            self._dry_run.write(endpoint.method, path, content)
            return httpx.Response(202, request=httpx.Request(endpoint.method, path))
        retrying = Retrying(
            retry=retry_if_exception_type(_Transient),
            stop=stop_after_attempt(self._max_tries),
            wait=wait_exponential(multiplier=self._backoff_base, max=60)
            + wait_random(0, self._backoff_base / 4),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            response: httpx.Response = retrying(
                self._until_not_throttled, endpoint_name, path, content, params
            )
        except _Transient as exc:
            msg = (
                f"Klaviyo {endpoint.method} {endpoint.path} failed {self._max_tries} times "
                f"(last: {exc}); stopping without moving the bookmark past it"
            )
            raise KlaviyoUnavailable(msg) from None
        return response

    def _until_not_throttled(
        self,
        endpoint_name: str,
        path: str,
        content: bytes | None,
        params: Mapping[str, str] | None,
    ) -> httpx.Response:
        """One attempt, repeated while Klaviyo answers 429 and the throttling deadline allows.

        A 429 is an attempt like any other, but its bound is time, not a count: the run's
        :class:`ThrottleBudget`. A ``Retry-After`` longer than what is left of it (a daily limit
        asks for hours), or a 429 once it is spent, raises :class:`ThrottleDeadline` at once,
        instead of holding the ledger lock every later run waits on.
        """
        endpoint = ENDPOINTS[endpoint_name]
        while True:
            self._limits.acquire(endpoint_name)
            self.stats.count(self.stats.requests, endpoint_name)
            try:
                response = self._http.request(endpoint.method, path, content=content, params=params)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                raise _Transient(type(exc).__name__) from None
            if response.status_code == 429:
                self._throttled(endpoint_name, _retry_after(response))
                continue
            if response.status_code in (401, 403):
                raise KlaviyoAuthError(_auth_message(response.status_code))
            if response.status_code >= 500:
                raise _Transient(f"HTTP {response.status_code}")
            return response

    def _throttled(self, endpoint_name: str, wait: float) -> None:
        """Wait out a 429 on every thread (the endpoint's gate), within the deadline."""
        self.stats.count(self.stats.throttled, endpoint_name)
        left = self.throttle_budget.take(wait)
        if left is not None:
            raise ThrottleDeadline(endpoint_name, wait, left, self.throttle_budget.seconds)
        self._limits.close_for(endpoint_name, wait)
        logger.warning("Klaviyo throttled %s; waiting %.1f s", endpoint_name, wait)

    def _log_retry(self, state: RetryCallState) -> None:
        """Count and log a retry of a 5xx, a timeout or a dropped connection."""
        endpoint_name = str(state.args[0])
        failure = state.outcome.exception() if state.outcome else None
        pause = state.next_action.sleep if state.next_action else 0.0
        self.stats.count(self.stats.retries, endpoint_name)
        logger.warning(
            "Klaviyo %s failed (%s); retry %d of %d in %.1f s",
            endpoint_name,
            failure,
            state.attempt_number,
            self._max_tries - 1,
            pause,
        )

    def pages(
        self,
        endpoint_name: str,
        params: Mapping[str, str] | None = None,
        *,
        path_id: str | None = None,
        what: str,
    ) -> Iterator[dict[str, Any]]:
        """Each page of a paginated GET, following JSON:API ``links.next``.

        A refusal raises :class:`KlaviyoUnavailable` saying what could not be read (``what``):
        a run must not guess what it could not see.
        """
        url: str | None = None
        while True:
            response = self.request(
                endpoint_name, params=None if url else params, path_id=path_id, url=url
            )
            if response.status_code != 200:
                error = error_entries(response)[0]
                msg = f"Klaviyo refused to {what}: {error.get('detail')}"
                raise KlaviyoUnavailable(msg)
            body: dict[str, Any] = response.json()
            yield body
            url = (body.get("links") or {}).get("next")
            if not url:
                return

    def wait_for_job(
        self, endpoint_name: str, job_id: str, *, timeout: float, first_pause: float
    ) -> dict[str, Any] | None:
        """A bulk job once finished (``complete`` or ``cancelled``); None if Klaviyo has none.

        Polls with a doubling pause (up to 5 s), paced like every request; a job still running
        after ``timeout`` seconds raises :class:`KlaviyoUnavailable`.
        """
        deadline = time.monotonic() + timeout
        pause = first_pause
        while True:
            response = self.request(endpoint_name, path_id=job_id)
            if response.status_code == 404:
                return None
            if response.status_code == 200:
                job: dict[str, Any] = response.json()["data"]
                if job["attributes"]["status"] in ("complete", "cancelled"):
                    return job
            if time.monotonic() > deadline:
                msg = f"Klaviyo job {job_id} ({endpoint_name}) did not finish in {timeout:.0f} s"
                raise KlaviyoUnavailable(msg)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def _auth_message(status: int) -> str:
    problem = "rejected the API key" if status == 401 else "refused the API key this access"
    return (
        f"Klaviyo {problem} (HTTP {status}): check the `api_key` setting "
        "(TARGET_KLAVIYO_API_KEY): a private key with the events, profiles and catalogs "
        "write scopes."
    )


def _retry_after(response: httpx.Response) -> float:
    """Seconds Klaviyo asks to wait: ``Retry-After`` in seconds or as an HTTP date; 1 if none."""
    value = response.headers.get("Retry-After", "1").strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 1.0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max((moment - datetime.now(timezone.utc)).total_seconds(), 0.0)


def error_entries(response: httpx.Response) -> list[dict[str, Any]]:
    """Klaviyo's JSON:API ``errors`` list, or one synthetic entry when the body has none."""
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        errors = None
    if isinstance(errors, list) and errors:
        return [e for e in errors if isinstance(e, dict)]
    return [{"code": f"http_{response.status_code}", "detail": response.reason_phrase}]
