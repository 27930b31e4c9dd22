"""target-klaviyo: events, profile updates and catalog inventory into Klaviyo, losing nothing."""

from __future__ import annotations

import signal
import sys
import traceback
from collections.abc import Mapping
from types import FrameType
from typing import Any, ClassVar

from singer_sdk import Sink, Target
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError
from sqlalchemy.engine import make_url

from target_klaviyo import runlog
from target_klaviyo.alerts import alert_text, post_alert, should_alert
from target_klaviyo.client import (
    DEFAULT_REVISION,
    ENDPOINTS,
    RunStats,
)
from target_klaviyo.delivery import Delivery
from target_klaviyo.dryrun import DryRunWriter
from target_klaviyo.integrity import MODES as PROFILE_CHECK_MODES
from target_klaviyo.ledger import Ledger, utcnow
from target_klaviyo.outcomes import (
    ALREADY_RUNNING,
    CRASHED,
    HOLDING_REASONS,
    MAPPING_ERRORS_HELD,
    SET_ASIDE_OVER_THRESHOLD,
    SUCCEEDED,
    AlreadyRunning,
    RunInterrupted,
    exit_code,
    first_by_precedence,
    outcome_of,
    safe_error,
)
from target_klaviyo.reader import QuarantiningReader, Unreadable, unreadable_outcome
from target_klaviyo.sinks import SINKS, KlaviyoSink
from target_klaviyo.terminal import escape_log_handlers

#: Oldest revision with ``backfill`` on bulk events, which keeps history from firing flows.
MIN_REVISION = "2026-04-15"

window = th.ObjectType(
    th.Property("requests", th.IntegerType(minimum=1), required=True),
    th.Property("seconds", th.NumberType, required=True),
)


class TargetKlaviyo(Target):
    """Loads its input streams (``schemas/``) into Klaviyo, and every outcome into a ledger."""

    name = "target-klaviyo"
    message_reader_class = QuarantiningReader

    config_jsonschema: ClassVar[dict[str, Any]] = th.PropertiesList(
        th.Property(
            "api_key",
            th.StringType(min_length=1),
            required=True,
            secret=True,
            title="Private API key",
            description="Klaviyo private API key (events, profiles and catalogs write scopes).",
        ),
        th.Property(
            "api_url",
            th.URIType,
            default="https://a.klaviyo.com",
            title="API URL",
            description="Base URL of Klaviyo's API.",
        ),
        th.Property(
            "revision",
            th.StringType(pattern=r"^\d{4}-\d{2}-\d{2}(\.[a-z0-9]+)?$"),
            default=DEFAULT_REVISION,
            title="API revision",
            description=f"Klaviyo API revision header; {MIN_REVISION} or later.",
        ),
        th.Property(
            "ledger_url",
            th.StringType(min_length=1),
            default="sqlite:///klaviyo-ledger.sqlite",
            title="Ledger URL",
            description="SQLAlchemy URL of the delivery ledger (SQLite file or Postgres).",
        ),
        th.Property(
            "dry_run",
            th.BooleanType,
            default=False,
            title="Dry run",
            description="Write the request bodies to `dry_run_path` instead of sending them.",
        ),
        th.Property(
            "dry_run_path",
            th.StringType,
            default="klaviyo-dry-run.jsonl",
            title="Dry-run file",
            description="Where a dry run writes its request bodies (JSON Lines).",
        ),
        th.Property(
            "backfill_after_hours",
            th.NumberType(minimum=0),
            default=24,
            title="Backfill after (hours)",
            description="Events older than this are sent with backfill=true: no flow fires.",
        ),
        th.Property(
            "events_per_request",
            th.IntegerType(minimum=1, maximum=1000),
            default=1000,
            title="Events per request",
            description="Events sent in one bulk create request (Klaviyo allows at most 1,000).",
        ),
        th.Property(
            "profiles_per_job",
            th.IntegerType(minimum=1, maximum=10000),
            default=10000,
            title="Profiles per import job",
            description="Profiles in one bulk profile import job (Klaviyo allows at most 10,000).",
        ),
        th.Property(
            "variants_per_job",
            th.IntegerType(minimum=1, maximum=100),
            default=100,
            title="Variants per update job",
            description="Catalog variants in one bulk update job (Klaviyo allows at most 100).",
        ),
        th.Property(
            "batch_size_rows",
            th.IntegerType(minimum=1),
            default=10000,
            title="Records per delivery",
            description="Records buffered per stream before they are sent.",
        ),
        th.Property(
            "concurrent_requests",
            th.IntegerType(minimum=1, maximum=16),
            default=4,
            title="Concurrent requests",
            description="Event requests in flight at once (paced by the shared rate limiter).",
        ),
        th.Property(
            "request_timeout",
            th.NumberType(minimum=1),
            default=30,
            title="Request timeout (seconds)",
            description="Seconds to wait for Klaviyo's answer to one request before retrying it.",
        ),
        th.Property(
            "max_retries",
            th.IntegerType(minimum=0),
            default=5,
            title="Retries",
            description="Retries of a request failing with 5xx, a timeout or a dropped connection.",
        ),
        th.Property(
            "throttle_deadline_seconds",
            th.NumberType(minimum=0),
            default=300,
            title="Throttling deadline (seconds)",
            description="How long a run may wait on Klaviyo's 429s in all: a Retry-After beyond "
            "what is left, or a 429 once it is spent, ends the run with outcome "
            "throttle_deadline (delivered work kept, no bookmark past what was not delivered).",
        ),
        th.Property(
            "job_timeout_seconds",
            th.NumberType(minimum=1),
            default=600,
            title="Job timeout (seconds)",
            description="How long to wait for a Klaviyo import or update job to finish.",
        ),
        th.Property(
            "job_poll_seconds",
            th.NumberType(minimum=0),
            default=0.25,
            title="Job poll interval (seconds)",
            description="First wait between checks of a job's status; it doubles up to 5 s.",
        ),
        th.Property(
            "rate_limits",
            th.ObjectType(additional_properties=th.ArrayType(window)),
            title="Rate limits",
            description=(
                "Override Klaviyo's published limits per endpoint ("
                + ", ".join(ENDPOINTS)
                + "), as a list of {requests, seconds} windows."
            ),
        ),
        th.Property(
            "profile_check",
            th.StringType(allowed_values=list(PROFILE_CHECK_MODES)),
            default="off",
            title="Profile check",
            description=(
                "Look the events' emails up in Klaviyo first: `record` flags events that would "
                "create a new profile or reach a suppressed one, `hold` sets them aside."
            ),
        ),
        th.Property(
            "alert_webhook_url",
            th.URIType,
            secret=True,
            title="Alert webhook URL",
            description="Slack-compatible incoming webhook: posted to when a run fails or "
            "newly sets records aside.",
        ),
        th.Property(
            "alert_name",
            th.StringType(max_length=64),
            title="Alert name",
            description="Names this pipeline in its alerts (the brand, when one channel or "
            "one team takes the alerts of several).",
        ),
        th.Property(
            "lock_timeout_seconds",
            th.NumberType(minimum=0),
            default=1800,
            title="Lock timeout (seconds)",
            description="How long to wait for another run on the same ledger to finish.",
        ),
        th.Property(
            "retention_days",
            th.NumberType(minimum=0),
            default=30,
            title="Retention (days)",
            description="Set-aside records' payloads (personal data) are cleared after this.",
        ),
        th.Property(
            "max_set_aside",
            th.IntegerType(minimum=0),
            title="Max set-aside records",
            description="Exit non-zero when more records than this were set aside in a run.",
        ),
        th.Property(
            "max_set_aside_ratio",
            th.NumberType(minimum=0, maximum=1),
            default=0.25,
            title="Max set-aside ratio",
            description="Exit non-zero when more than this share of a run's records was set aside.",
        ),
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        revision = str(self.config["revision"])
        if revision[:10] < MIN_REVISION:
            msg = (
                f"revision {revision} is older than {MIN_REVISION}, the first revision where "
                f"bulk events take `backfill`: set `revision` to {MIN_REVISION} or later"
            )
            raise ConfigValidationError(msg, errors=[msg])
        self.threshold_exceeded: str | None = None
        #: This run's outcome once decided (``target_klaviyo.outcomes``); set by :meth:`finish`.
        self.outcome: str | None = None
        #: Why it did not succeed: the error's type and a safe message, or the held records.
        self.error: str | None = None
        self.interrupted_found = 0
        self._finishing = False
        self._started = False
        self._listening = False
        self._pending_signal: int | None = None
        self._summary: dict[str, Any] = {}
        # Sinks drain one at a time, events first, so that profile updates ride on their events.
        self.max_parallelism = 1
        self.stats = RunStats()
        dry_run = bool(self.config.get("dry_run"))
        self.dry_run_writer = DryRunWriter(self.config["dry_run_path"]) if dry_run else None
        self.ledger = Ledger(self.config["ledger_url"], read_only=dry_run)
        self._lock_ledger(float(self.config["lock_timeout_seconds"]))
        self._migrate_ledger()
        self._mark_interrupted()
        self.ledger.purge(float(self.config["retention_days"]))
        self.delivery = Delivery.from_config(
            self.config, ledger=self.ledger, stats=self.stats, dry_run=self.dry_run_writer
        )
        self._wire_reader()
        # Last: from here on a signal waits until listening starts (where the run finishes), so
        # that a run whose row says `running` never ends without its outcome.
        self._started = True
        self.ledger.start_run()

    def _wire_reader(self) -> None:
        """An unusable input line becomes a ledger outcome (the run goes on), never a log of it."""
        reader = self.message_reader
        if isinstance(reader, QuarantiningReader):
            reader.on_unreadable = self._set_aside_unreadable
            reader.on_repaired = self.delivery.summary.add_repaired

    def _set_aside_unreadable(self, problem: Unreadable) -> None:
        self.delivery.record([unreadable_outcome(problem)])
        self.logger.warning("Set aside an unreadable input line: %s", problem.detail)

    def _lock_ledger(self, timeout: float) -> None:
        self.logger.info("Taking the ledger's run lock (another run of this pipeline may hold it)")
        if not self.ledger.lock_run(timeout):
            msg = (
                f"another target-klaviyo run has held the ledger for {timeout:.0f} s "
                "(lock_timeout_seconds); this run stops before reading anything"
            )
            self._record_refused(msg)
            raise AlreadyRunning(msg)

    def _record_refused(self, message: str) -> None:
        """A finished ``already_running`` row: a refused start shows in the summary too."""
        try:
            runlog.record_refused_run(self.ledger, ALREADY_RUNNING, message)
        except Exception as exc:  # noqa: BLE001 - without the lock the schema may be changing
            self.logger.warning("Could not record the refused run: %s", safe_error(exc))
        self.ledger.close()

    def _mark_interrupted(self) -> None:
        """Runs left ``running`` died without an outcome (the lock says none is alive)."""
        self.interrupted_found = runlog.mark_interrupted(self.ledger)
        if self.interrupted_found:
            self.logger.warning(
                "%d earlier run(s) were still marked running: marked interrupted",
                self.interrupted_found,
            )

    def _migrate_ledger(self) -> None:
        """Under the run lock, before anything reads the ledger: this release's schema.

        A migration that fails ends the run ``crashed`` like any other error, but before the run
        has a row: so one is written here (as far as the schema allows) and alerted, or every
        later run would fail the same way with nothing in ``summary`` or the alerts.
        """
        before = self.ledger.schema_version
        try:
            self.ledger_schema_version = self.ledger.migrate()
        except Exception as exc:
            self._end_before_start(exc)
            raise
        if before not in (None, self.ledger_schema_version):
            self.logger.info(
                "Ledger schema upgraded from revision %s to %s", before, self.ledger_schema_version
            )

    def _end_before_start(self, error: Exception) -> None:
        """A run stopped while it started: recorded ``crashed``, alerted, the ledger released."""
        message = safe_error(error, self._secrets())
        try:
            runlog.record_refused_run(self.ledger, CRASHED, message)
        except Exception as exc:  # noqa: BLE001 - the ledger may be what failed: the log says it
            self.logger.warning("Could not record the crashed run: %s", safe_error(exc))
        self._alert(CRASHED, message)
        self.ledger.release_run()
        self.ledger.close()

    def get_sink_class(self, stream_name: str) -> type[Sink]:
        try:
            return SINKS[stream_name]
        except KeyError:
            msg = (
                f"target-klaviyo does not accept stream '{stream_name}'; it accepts "
                f"{', '.join(SINKS)} (see target-klaviyo's README for their schemas)"
            )
            raise ValueError(msg) from None

    def drain_stream(self, stream_name: str) -> None:
        """Drain one stream's sink now (the profile sink lets events go first)."""
        sink = self._sinks_active.get(stream_name)
        if isinstance(sink, KlaviyoSink) and sink.current_size:
            self.drain_one(sink)

    def _write_state_message(self, state: dict[str, Any]) -> None:
        """STATE only once every record before it has its outcome recorded.

        Events are sent in the background while input is read: wait for them (a failure raises
        here, and no STATE is written). A dry run sends nothing, so it moves no bookmark either.
        """
        self.delivery.background.flush()
        if self.dry_run_writer is None:
            super()._write_state_message(state)

    def process_endofpipe(self) -> None:
        super().process_endofpipe()
        self.delivery.background.flush()  # also when no STATE came: failures must surface
        # Everything was delivered or recorded, and STATE written: now judge the run.
        self.threshold_exceeded = self.over_threshold()
        held = self.mapping_errors_held()
        outcome = first_by_precedence(
            ([MAPPING_ERRORS_HELD] if held else [])
            + ([SET_ASIDE_OVER_THRESHOLD] if self.threshold_exceeded else [])
        )
        reasons = [r for r in (held, self.threshold_exceeded) if r]
        self.finish(outcome, "; ".join(reasons) or None)

    def mapping_errors_held(self) -> str | None:
        """Why the run fails for a wrong mapping (the mapper holds the bookmark), if it does."""
        counts = {r: n for r, n in self.delivery.summary.set_aside.items() if r in HOLDING_REASONS}
        if not counts:
            return None
        listed = ", ".join(f"{reason} {count}" for reason, count in sorted(counts.items()))
        return (
            f"{sum(counts.values())} records not mapped ({listed}): everything else was "
            "delivered; the bookmark stays until the mapping is fixed (see the health report)"
        )

    def fail(self, error: BaseException) -> str:
        """End the run that ``error`` stopped: its outcome recorded, logged and alerted."""
        outcome = outcome_of(error)
        message = safe_error(error, self._secrets())
        self.logger.error("Run stopped: %s", message)
        if outcome == CRASHED:
            self.logger.error("Crashed at %s", _where(error))
        # Batches still queued are not sent: the run has failed, and no STATE moves past them.
        self.delivery.background.cancel_queued(error)
        self.finish(outcome, message)
        return outcome

    def _secrets(self) -> list[str]:
        """Values no message may show: the API key, the alert URL, the ledger's password."""
        found = [str(self.config.get(k) or "") for k in ("api_key", "alert_webhook_url")]
        return [*found, _password(str(self.config.get("ledger_url") or ""))]

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM/SIGINT: stop reading, record what is in flight, end ``interrupted``.

        The SDK's own handler drains every sink from inside the signal handler (while the main
        thread may be half-way through a batch) and exits 0. Here the main thread unwinds
        instead; a second signal stops the process at once.
        """
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if getattr(self, "_finishing", False):
            self.logger.warning("Signal %d while the run finishes: finishing first", signum)
            return
        if getattr(self, "_started", False) and not self._listening:
            self._pending_signal = signum  # raised as listening starts, where the run finishes
            return
        raise RunInterrupted(signum)

    def _start_listening(self) -> None:
        """From here a signal stops the run at once; one that came while it started, now."""
        self._listening = True
        if self._pending_signal is not None:
            raise RunInterrupted(self._pending_signal)

    def finish(self, status: str, error: str | None = None) -> dict[str, Any]:
        """Record the run's outcome (once), release the ledger, log the summary and alert.

        Never raises: a ledger that cannot be written (the cause of a crash, perhaps) is logged,
        and the outcome line still ends the run.
        """
        if self.outcome is not None:
            return self._summary
        self._finishing = True
        self.outcome = status
        self.error = error
        self.delivery.background.close()
        summary = self.delivery.summary.as_dict(self.stats)
        summary["ledger_schema_version"] = self.ledger_schema_version
        self._summary = summary
        try:
            runlog.finish_run(self.ledger, status, summary, error)
        except Exception as exc:  # noqa: BLE001 - the outcome line must still be written
            self.logger.error("Could not record the run's outcome: %s", safe_error(exc))
        self.ledger.release_run()
        self._log_summary(status, summary)
        self._alert(status, error)
        self.delivery.client.close()
        if self.dry_run_writer is not None:
            self.logger.info(
                "Dry run: %d request bodies written to %s",
                self.dry_run_writer.requests,
                self.dry_run_writer.path,
            )
            self.dry_run_writer.close()
        return summary

    def _alert(self, status: str, error: str | None) -> None:
        url = self.config.get("alert_webhook_url")
        if not url or self.dry_run_writer is not None:
            return
        try:
            new = self.ledger.new_set_aside()
            previous = runlog.previous_outcomes(self.ledger)
        except Exception as exc:  # noqa: BLE001 - a broken ledger must not silence the alert
            self.logger.warning("Could not read the ledger for the alert: %s", safe_error(exc))
            new, previous = {}, []
        due = runlog.outcome_alert_due(status, previous, utcnow())
        if should_alert(due, new, self.interrupted_found):
            text = alert_text(
                status,
                self.ledger.run_id,
                new,
                error,
                interrupted_found=self.interrupted_found,
                name=self.config.get("alert_name"),
            )
            post_alert(url, {"text": text})

    def _log_summary(self, status: str, summary: Mapping[str, Any]) -> None:
        log = self.logger.info if status == SUCCEEDED else self.logger.error
        log("Run %s (%s); ledger run id %s", status, self.name, self.ledger.run_id)
        for metric, count in sorted(summary["accepted_by_metric"].items()):
            log("  accepted  %-24s %d", metric, count)
        for stream, count in sorted(summary["accepted_by_stream"].items()):
            if stream != "klaviyo_events":
                log("  accepted  %-24s %d", stream, count)
        for stream, count in sorted(summary["deduplicated"].items()):
            log("  deduplicated %-21s %d", stream, count)
        for reason, count in sorted(summary["set_aside_by_reason"].items()):
            log("  set aside %-24s %d", reason, count)
        for what, count in sorted(summary.get("left_out", {}).items()):
            log("  left out  %-24s %d", what, count)
        if summary.get("repaired_text"):  # delivered, but a person may ask why a name reads "�"
            log("  repaired  %-24s %d", "free text (U+FFFD)", summary["repaired_text"])
        log(
            "  requests %d, retries %d, 429s %d",
            sum(summary["requests"].values()),
            sum(summary["retries"].values()),
            sum(summary["throttled_429"].values()),
        )

    def over_threshold(self) -> str | None:
        """Why the run must exit non-zero for its set-aside records, if it must.

        Only records newly set aside count: the tap's lookback re-reads recent returns, and a
        return set aside by an earlier run (a missing e-mail) met again is neither news nor
        delivered work, so it counts on neither side of the ratio. Otherwise a brand whose few
        recent returns include one without an e-mail fails every idle run.
        """
        summary = self.delivery.summary
        set_aside = summary.total_set_aside
        if not self.ledger.read_only:  # a dry run records nothing to compare with
            set_aside = sum(self.ledger.new_set_aside().values())
        total = summary.total - (summary.total_set_aside - set_aside)
        limit = self.config.get("max_set_aside")
        if limit is not None and set_aside > int(limit):
            return f"{set_aside} records newly set aside, more than max_set_aside={limit}"
        ratio = self.config.get("max_set_aside_ratio")
        if ratio is not None and total and set_aside / total > float(ratio):
            return (
                f"{set_aside} of {total} records newly set aside ({set_aside / total:.1%}), "
                f"more than max_set_aside_ratio={ratio}"
            )
        return None

    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: Any = None,
        file_input: Any = None,
    ) -> None:
        """Run the target; however it ends, its last log line is ``run outcome: <outcome>``."""
        if about or config is None:
            super().invoke(about=about, about_format=about_format, config=config)
            return
        cls.print_version(print_fn=cls.logger.info)
        outcome = cls._run(config, file_input)
        log = cls.logger.info if outcome == SUCCEEDED else cls.logger.error
        log("run outcome: %s", outcome)
        code = exit_code(outcome)
        if code:
            sys.exit(code)

    @classmethod
    def _run(cls, config: Any, file_input: Any) -> str:
        """The outcome of one run, whatever stopped it (one line each, never a traceback)."""
        escape_log_handlers()
        try:
            target = cls(
                config=config.config, validate_config=True, parse_env_config=config.parse_env
            )
        except ConfigValidationError as exc:
            for error in exc.errors:
                cls.logger.error("%s", error)
            cls.logger.error("Config validation failed")
            return CRASHED
        except BaseException as exc:  # noqa: BLE001 - every ending has an outcome
            outcome = outcome_of(exc)
            cls.logger.error("%s", safe_error(exc) if outcome == CRASHED else exc)
            return outcome
        try:
            target._start_listening()
            target.listen(file_input)
        except BaseException as exc:  # noqa: BLE001 - every ending has an outcome
            return target.fail(exc)
        if target.error is not None:
            target.logger.error(
                "Failing the run: %s (see `klaviyo-ops dead-letters`)", target.error
            )
        return target.outcome or SUCCEEDED


def _where(error: BaseException) -> str:
    """Where an exception was raised (file, line, function): enough to find it, no values."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "(no traceback)"
    last = frames[-1]
    return f"{last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name}"


def _password(url: str) -> str:
    """The password of a database URL, to keep it out of messages ('' if none)."""
    try:
        return make_url(url).password or ""
    except Exception:  # noqa: BLE001 - not a URL: nothing to hide
        return ""


if __name__ == "__main__":
    TargetKlaviyo.cli()
