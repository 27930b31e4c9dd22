"""What the sinks share in a run, and where the run's delivery components are assembled.

The components (:class:`EventSender`, :class:`ProfileImporter`, :class:`RestockApplier`) each take
only what they use; :class:`Delivery` holds the run-wide parts (client, ledger, settings, summary,
request pool, pending profile updates) and hands each component its share. A run's sinks and
``klaviyo-ops replay`` build components here, so both deliver the same way.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from target_klaviyo.catalog import RestockApplier
from target_klaviyo.client import KlaviyoClient, RunStats
from target_klaviyo.dryrun import DryRunWriter
from target_klaviyo.events import EventSender, RunKeys
from target_klaviyo.ledger import ACCEPTED, DEDUPLICATED, Ledger, Outcome
from target_klaviyo.profiles import PendingProfiles, ProfileImporter


@dataclass(frozen=True)
class Settings:
    """The delivery settings, read once from the target's config.

    No defaults here: the config comes from the SDK or ``klaviyo-ops``, which both fill in the
    defaults of ``TargetKlaviyo.config_jsonschema``, the one place they are declared.
    """

    events_per_request: int
    profiles_per_job: int
    variants_per_job: int
    backfill_after_hours: float
    job_timeout_seconds: float
    job_poll_seconds: float
    profile_check: str
    concurrent_requests: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        return cls(
            events_per_request=int(config["events_per_request"]),
            profiles_per_job=int(config["profiles_per_job"]),
            variants_per_job=int(config["variants_per_job"]),
            backfill_after_hours=float(config["backfill_after_hours"]),
            job_timeout_seconds=float(config["job_timeout_seconds"]),
            job_poll_seconds=float(config["job_poll_seconds"]),
            profile_check=str(config["profile_check"]),
            concurrent_requests=int(config["concurrent_requests"]),
        )


class Summary:
    """Counts of outcomes for the end-of-run summary (thread-safe)."""

    def __init__(self) -> None:
        self.accepted_by_metric: Counter[str] = Counter()
        self.accepted_by_stream: Counter[str] = Counter()
        self.deduplicated: Counter[str] = Counter()
        self.set_aside: Counter[str] = Counter()
        #: Free-text strings whose lone surrogates were repaired to U+FFFD on input.
        self.repaired_text = 0
        #: Parts of records left out while the rest went on: ``phone_invalid`` (not a valid
        #: E.164 number), ``phone_in_use`` (Klaviyo has it on another profile).
        self.left_out: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, outcomes: Iterable[Outcome]) -> None:
        with self._lock:
            for o in outcomes:
                if o.outcome == ACCEPTED:
                    self.accepted_by_stream[o.stream] += 1
                    if o.metric:
                        self.accepted_by_metric[o.metric] += 1
                elif o.outcome == DEDUPLICATED:
                    self.deduplicated[o.stream] += 1
                else:
                    self.set_aside[o.reason or o.outcome] += 1

    def add_repaired(self, count: int) -> None:
        with self._lock:
            self.repaired_text += count

    def add_left_out(self, what: str, count: int = 1) -> None:
        with self._lock:
            self.left_out[what] += count

    @property
    def total_set_aside(self) -> int:
        return sum(self.set_aside.values())

    @property
    def total(self) -> int:
        return (
            sum(self.accepted_by_stream.values())
            + sum(self.deduplicated.values())
            + self.total_set_aside
        )

    def as_dict(self, stats: RunStats) -> dict[str, Any]:
        return {
            "accepted_by_metric": dict(self.accepted_by_metric),
            "accepted_by_stream": dict(self.accepted_by_stream),
            "deduplicated": dict(self.deduplicated),
            "set_aside_by_reason": dict(self.set_aside),
            "repaired_text": self.repaired_text,
            "left_out": dict(self.left_out),
            "requests": dict(stats.requests),
            "retries": dict(stats.retries),
            "throttled_429": dict(stats.throttled),
        }


class BackgroundSender:
    """Sends batches on one background thread while the target reads the next records.

    The SDK drains a full sink on the thread that reads input, so without this the target would
    stop reading while Klaviyo answers, and stop sending while it reads. A batch's requests run
    on a pool of ``workers`` threads (paced by the shared limiter), and the next batch's requests
    start while the last ones of a batch are still in flight, so that Klaviyo's response time
    never leaves the rate limit unused. At most ``depth`` batches wait and twice ``workers``
    requests are outstanding, which keeps memory bounded. :meth:`flush` waits for all of them and
    raises what failed: the target calls it before any STATE message, so a bookmark never moves
    past a record whose outcome is not recorded.
    """

    def __init__(self, *, workers: int = 4, depth: int = 2) -> None:
        self._queue: queue.Queue[tuple[Callable[[list[dict[str, Any]]], None], list[Any]] | None]
        self._queue = queue.Queue(maxsize=depth)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="klaviyo-request")
        self._slots = threading.BoundedSemaphore(2 * workers)
        self._pending: set[Future[Any]] = set()
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="klaviyo-sender", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                send, records = item
                if self._error is None:  # after a failure, later batches wait for a rerun
                    send(records)
            except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
                self._fail(exc)
            finally:
                self._queue.task_done()

    def submit(self, send: Callable[[list[dict[str, Any]]], None], records: list[Any]) -> None:
        """Queue a batch for the background thread (blocks while ``depth`` batches wait)."""
        self._raise()
        self._queue.put((send, records))

    def spawn(self, request: Callable[..., None], *args: Any) -> None:
        """Run one request on the pool without waiting for it (blocks while too many are out)."""
        self._slots.acquire()
        future = self._pool.submit(request, *args)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)
        self._slots.release()
        error = future.exception()
        if error is not None:
            self._fail(error)

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = error

    def flush(self) -> None:
        self._queue.join()
        with self._lock:
            pending = list(self._pending)
        wait(pending)
        self._raise()

    def cancel_queued(self, reason: BaseException) -> None:
        """Send no batch still queued; requests already in flight finish and are recorded.

        For a run that must stop soon (a signal): what was not sent is re-read by the next run,
        since no STATE moves past it.
        """
        self._fail(reason)

    def close(self) -> None:
        """Stop after what is queued (never raises: the run's outcome is already decided)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._pool.shutdown(wait=True)

    def _raise(self) -> None:
        with self._lock:
            error, self._error = self._error, None
        if error is not None:
            raise error


class Delivery:
    """The run-wide context the sinks deliver through."""

    def __init__(self, *, client: KlaviyoClient, ledger: Ledger, settings: Settings) -> None:
        self.client = client
        self.ledger = ledger
        self.settings = settings
        self.pending_profiles = PendingProfiles()
        self.background = BackgroundSender(workers=max(1, settings.concurrent_requests))
        self.summary = Summary()
        self.started_at = datetime.now(timezone.utc)
        #: Events claimed for sending in this run (``events.EventSender``).
        self.events_this_run = RunKeys()

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        *,
        ledger: Ledger,
        stats: RunStats,
        dry_run: DryRunWriter | None = None,
    ) -> Delivery:
        """The delivery a target run (or a replay) uses, from target-klaviyo's settings."""
        client = KlaviyoClient.from_config(config, stats=stats, dry_run=dry_run)
        return cls(client=client, ledger=ledger, settings=Settings.from_config(config))

    def record(self, outcomes: list[Outcome]) -> None:
        self.summary.add(outcomes)
        self.ledger.record(outcomes)

    def event_sender(self) -> EventSender:
        """A sender for one batch of events (it keeps the batch's profile flags)."""
        return EventSender(
            client=self.client,
            ledger=self.ledger,
            record=self.record,
            pending_profiles=self.pending_profiles,
            events_this_run=self.events_this_run,
            spawn=self.background.spawn,
            events_per_request=self.settings.events_per_request,
            backfill_after_hours=self.settings.backfill_after_hours,
            profile_check=self.settings.profile_check,
        )

    def profile_importer(self) -> ProfileImporter:
        return ProfileImporter(
            client=self.client,
            ledger=self.ledger,
            record=self.record,
            left_out=self.summary.add_left_out,
            profiles_per_job=self.settings.profiles_per_job,
            job_timeout_seconds=self.settings.job_timeout_seconds,
            job_poll_seconds=self.settings.job_poll_seconds,
        )

    def restock_applier(self) -> RestockApplier:
        """An applier for the run (it settles restocks a crash left pending on its first batch)."""
        return RestockApplier(
            client=self.client,
            ledger=self.ledger,
            record=self.record,
            variants_per_job=self.settings.variants_per_job,
            job_timeout_seconds=self.settings.job_timeout_seconds,
            job_poll_seconds=self.settings.job_poll_seconds,
        )
