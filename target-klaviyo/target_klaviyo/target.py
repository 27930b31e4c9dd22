"""target-klaviyo: events, profile updates and catalog inventory into Klaviyo, losing nothing."""

from __future__ import annotations

import sys
from typing import Any, ClassVar

from singer_sdk import Sink, Target
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecReader
from singer_sdk.exceptions import ConfigValidationError

from target_klaviyo.alerts import alert_text, post_alert, should_alert
from target_klaviyo.client import (
    DEFAULT_REVISION,
    ENDPOINTS,
    KlaviyoAuthError,
    KlaviyoUnavailable,
    RunStats,
)
from target_klaviyo.delivery import Delivery
from target_klaviyo.dryrun import DryRunWriter
from target_klaviyo.integrity import MODES as PROFILE_CHECK_MODES
from target_klaviyo.ledger import Ledger
from target_klaviyo.sinks import SINKS, KlaviyoSink

#: Oldest revision with ``backfill`` on bulk events, which keeps history from firing flows.
MIN_REVISION = "2026-04-15"

EXIT_SET_ASIDE = 3

window = th.ObjectType(
    th.Property("requests", th.IntegerType(minimum=1), required=True),
    th.Property("seconds", th.NumberType, required=True),
)


class TargetKlaviyo(Target):
    """Loads its input streams (``schemas/``) into Klaviyo, and every outcome into a ledger."""

    name = "target-klaviyo"
    message_reader_class = MsgSpecReader

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
        ),
        th.Property(
            "profiles_per_job",
            th.IntegerType(minimum=1, maximum=10000),
            default=10000,
            title="Profiles per import job",
        ),
        th.Property(
            "variants_per_job",
            th.IntegerType(minimum=1, maximum=100),
            default=100,
            title="Variants per update job",
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
        ),
        th.Property(
            "max_retries",
            th.IntegerType(minimum=0),
            default=5,
            title="Retries",
            description="Retries of a request failing with 5xx, a timeout or a dropped connection.",
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
        revision = str(self.config.get("revision", DEFAULT_REVISION))
        if revision[:10] < MIN_REVISION:
            msg = (
                f"revision {revision} is older than {MIN_REVISION}, the first revision where "
                f"bulk events take `backfill`: set `revision` to {MIN_REVISION} or later"
            )
            raise ConfigValidationError(msg, errors=[msg])
        self.threshold_exceeded: str | None = None
        # Sinks drain one at a time, events first, so that profile updates ride on their events.
        self.max_parallelism = 1
        self.stats = RunStats()
        dry_run = bool(self.config.get("dry_run"))
        self.dry_run_writer = DryRunWriter(self.config["dry_run_path"]) if dry_run else None
        self.ledger = Ledger(self.config["ledger_url"], read_only=dry_run)
        self._lock_ledger(float(self.config.get("lock_timeout_seconds", 1800)))
        self.ledger.purge(float(self.config.get("retention_days", 30)))
        self.ledger.start_run()
        self.delivery = Delivery.from_config(
            self.config, ledger=self.ledger, stats=self.stats, dry_run=self.dry_run_writer
        )

    def _lock_ledger(self, timeout: float) -> None:
        self.logger.info("Taking the ledger's run lock (another run of this pipeline may hold it)")
        if not self.ledger.lock_run(timeout):
            msg = (
                f"another target-klaviyo run has held the ledger for {timeout:.0f} s "
                "(lock_timeout_seconds); this run stops before reading anything"
            )
            raise KlaviyoUnavailable(msg)

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
        self.finish(
            "succeeded" if self.threshold_exceeded is None else "too_many_set_aside",
            self.threshold_exceeded,
        )

    def finish(self, status: str, error: str | None = None) -> dict[str, Any]:
        self.delivery.background.close()
        summary = self.delivery.summary.as_dict(self.stats)
        self.ledger.finish_run(status, summary)
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
        new = self.ledger.new_set_aside()
        if should_alert(status, new):
            post_alert(url, {"text": alert_text(status, self.ledger.run_id, new, error)})

    def _log_summary(self, status: str, summary: dict[str, Any]) -> None:
        log = self.logger.info if status == "succeeded" else self.logger.error
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
        log(
            "  requests %d, retries %d, 429s %d",
            sum(summary["requests"].values()),
            sum(summary["retries"].values()),
            sum(summary["throttled_429"].values()),
        )

    def over_threshold(self) -> str | None:
        """Why the run must exit non-zero for its set-aside records, if it must."""
        summary = self.delivery.summary
        set_aside, total = summary.total_set_aside, summary.total
        limit = self.config.get("max_set_aside")
        if limit is not None and set_aside > int(limit):
            return f"{set_aside} records set aside, more than max_set_aside={limit}"
        ratio = self.config.get("max_set_aside_ratio")
        if ratio is not None and total and set_aside / total > float(ratio):
            return (
                f"{set_aside} of {total} records set aside ({set_aside / total:.1%}), "
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
        """Run the target; fail with one clear line (never a key) when Klaviyo cannot be used."""
        if about or config is None:
            super().invoke(about=about, about_format=about_format, config=config)
            return
        cls.print_version(print_fn=cls.logger.info)
        try:
            target = cls(
                config=config.config, validate_config=True, parse_env_config=config.parse_env
            )
        except KlaviyoUnavailable as exc:
            cls.logger.error("%s", exc)
            sys.exit(1)
        try:
            target.listen(file_input)
        except (KlaviyoAuthError, KlaviyoUnavailable) as exc:
            target.finish("failed", str(exc))
            target.logger.error("%s", exc)
            sys.exit(1)
        if target.threshold_exceeded is not None:
            target.logger.error(
                "Failing the run: %s (see `klaviyo-ops dead-letters`)", target.threshold_exceeded
            )
            sys.exit(EXIT_SET_ASIDE)


if __name__ == "__main__":
    TargetKlaviyo.cli()
