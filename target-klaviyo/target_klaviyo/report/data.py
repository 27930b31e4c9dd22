"""What the health report shows, computed once and rendered twice (HTML page and terminal).

Keeping the numbers apart from their presentation lets the page, the terminal summary and the
tests agree on one set of figures. Every string that came from the ledger is already masked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

#: Reasons from the profile-integrity check: the event reached (or would reach) the wrong profile.
MISMATCH_REASONS = ("new_profile", "suppressed_profile")
#: Run statuses after which everything the run read was delivered or is listed as set aside.
#: Any other outcome (crashed, interrupted, auth_failed, throttle_deadline) stopped a run
#: part-way: what it read after its last bookmark waits for the next run.
COMPLETE_STATUSES = ("succeeded", "set_aside_over_threshold", "mapping_errors_held", "replayed")
#: Statuses that say nothing about delivery (a refused start, a run in progress).
NEUTRAL_STATUSES = ("already_running", "running")
#: Status badges: good, failed, or neither.
GOOD_STATUSES = ("succeeded", "replayed")
BAD_STATUSES = ("crashed", "interrupted", "auth_failed", "throttle_deadline", "failed")


@dataclass(frozen=True)
class LatencyStats:
    """Latency to Klaviyo's acceptance, over accepted events or over webhook deliveries.

    Measured from each accepted event's source update (``source_time``), or from each trigger
    (:class:`TriggerLatency`). Percentiles use the nearest-rank method, so each figure
    is a latency that actually happened.
    """

    count: int
    median: timedelta
    p95: timedelta
    worst: timedelta


@dataclass(frozen=True)
class TriggerLatency:
    """Time from an upstream trigger (a source's webhook) to Klaviyo's first acceptance after it.

    The target records no triggers: a deployment that does (this project's ``swap-health`` joins
    its webhook receiver's deliveries with the ledger) measures them and hands the result to
    ``build_report(..., triggers=...)``. ``found`` is False when the place the triggers are kept
    does not exist, which the report notes instead of failing.
    """

    #: What a trigger is, capitalised for a title: ``Webhook`` gives "Webhook to Klaviyo".
    label: str
    #: Where the triggers were read from, for the page (``the swap-webhooks state db at ...``).
    source: str
    found: bool
    #: What counts as one trigger, said under the figures (may be empty).
    note: str = ""
    #: Deliveries received in the report's window, measured or not.
    deliveries: int = 0
    #: Deliveries with no acceptance at or after them yet.
    not_accepted: int = 0
    #: Over the deliveries measured (``latency.count`` of them); None when none was.
    latency: LatencyStats | None = None


@dataclass(frozen=True)
class AcceptedSeries:
    """Accepted events per metric in regular time buckets (hours, days or weeks)."""

    bucket: str
    starts: tuple[datetime, ...]
    counts: dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class ReasonCount:
    """One set-aside reason: how many records and returns it holds back, and what to do."""

    reason: str
    records: int
    returns: int
    guidance: str


@dataclass(frozen=True)
class RecordRow:
    """A record that did not (or not cleanly) reach Klaviyo, as its newest ledger row says."""

    reason: str
    outcome: str
    detail: str | None
    source_id: str | None
    metric: str | None
    stream: str
    customer: str | None
    when: datetime
    first_seen: datetime
    times_seen: int
    replayed_at: datetime | None
    delivered_later: bool


@dataclass(frozen=True)
class OpenReturnsRow:
    """A customer whose Klaviyo profile lists open returns (``swap_open_returns``) now.

    ``not_delivered`` is the reason a newer update of the same profile was set aside (and not
    delivered since), if one was: the flag reached Klaviyo but may no longer be current.
    """

    customer: str
    open_returns: tuple[str, ...]
    last_changed: datetime | None
    not_delivered: str | None = None

    @property
    def status(self) -> str:
        return "reached Klaviyo"

    @property
    def stale_note(self) -> str | None:
        if self.not_delivered is None:
            return None
        return f"a newer update was not delivered: {self.not_delivered}"


@dataclass(frozen=True)
class RunRow:
    """One target run and the counts its summary recorded."""

    run_id: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    accepted: int | None
    deduplicated: int | None
    set_aside: int | None
    requests: int | None
    retries: int | None
    throttled: int | None
    #: Why it did not succeed: the error's type and a safe message (``runs.error``).
    error: str | None = None

    @property
    def duration(self) -> timedelta | None:
        return None if self.finished_at is None else self.finished_at - self.started_at

    @property
    def badge(self) -> str:
        """The status's colour on the page: ok, bad, info or warn."""
        if self.status in GOOD_STATUSES:
            return "ok"
        if self.status in BAD_STATUSES:
            return "bad"
        return "info" if self.status in NEUTRAL_STATUSES else "warn"


@dataclass
class ReportData:
    """Every figure and table of one report."""

    generated_at: datetime
    ledger: str
    since: datetime | None
    first_recorded: datetime | None = None
    last_recorded: datetime | None = None
    total_rows: int = 0
    accepted_by_stream: dict[str, int] = field(default_factory=dict)
    accepted_by_metric: dict[str, int] = field(default_factory=dict)
    series: AcceptedSeries | None = None
    latency: LatencyStats | None = None
    latency_seconds: list[float] = field(default_factory=list)
    #: Trigger-to-Klaviyo latency; None when the report was given no triggers.
    triggers: TriggerLatency | None = None
    reasons: list[ReasonCount] = field(default_factory=list)
    set_aside: list[RecordRow] = field(default_factory=list)
    set_aside_total: int = 0
    outstanding_total: int = 0
    returns_affected: int = 0
    set_aside_shown_limit: int = 0
    resolved_later: int = 0
    mismatched: list[RecordRow] = field(default_factory=list)
    open_returns: list[OpenReturnsRow] = field(default_factory=list)
    #: False when the ledger predates ``profile_lists``: who is flagged is then unknown here.
    open_returns_mirrored: bool = True
    runs: list[RunRow] = field(default_factory=list)

    @property
    def accepted_events(self) -> int:
        return sum(self.accepted_by_metric.values())

    @property
    def empty(self) -> bool:
        """Nothing recorded yet (in the window): the page says so instead of empty charts."""
        return self.total_rows == 0 and not self.runs

    @property
    def last_run(self) -> RunRow | None:
        return self.runs[0] if self.runs else None

    @property
    def stopped_run(self) -> RunRow | None:
        """The newest run that says how delivery went, if it stopped part-way (else None).

        Then "nothing set aside" does not mean every record reached Klaviyo: what the run read
        after its last bookmark was neither delivered nor set aside, and waits for the next run.
        """
        for run in self.runs:
            if run.status in NEUTRAL_STATUSES:
                continue
            return None if run.status in COMPLETE_STATUSES else run
        return None
