"""The report in a few plain-text lines, for the end of a scheduled job's log or a terminal.

Logs are kept longer and read by more people than the report, so the summary names reasons and
counts, never a customer: identities stay on the page, masked. Every line is printed with its
control characters escaped: a reason or metric name from the data must not drive a terminal.
"""

from __future__ import annotations

from collections.abc import Mapping

from target_klaviyo.report.data import ReportData, RunRow, TriggerLatency
from target_klaviyo.report.formatting import duration, number, timestamp
from target_klaviyo.terminal import escape_lines

_TOP = 4
#: Runs listed with their outcomes.
_RUNS = 5


def _top(counts: Mapping[str, int]) -> str:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{name} {number(count)}" for name, count in items[:_TOP])
    if len(items) > _TOP:
        shown += f", {len(items) - _TOP} more"
    return shown


def terminal_summary(data: ReportData) -> str:
    """A short summary of ``data``: what was delivered, what was not, and how the runs went."""
    return escape_lines(_summary(data))


def _summary(data: ReportData) -> str:
    window = f"since {timestamp(data.since)}" if data.since else "all records"
    generated = timestamp(data.generated_at)
    lines = [f"Swap -> Klaviyo delivery health ({window}; generated {generated})"]
    if data.empty:
        lines.append("  Nothing delivered yet: the ledger has no records and no runs.")
        return "\n".join(lines)
    accepted = f"  Events accepted: {number(data.accepted_events)}"
    if data.accepted_by_metric:
        accepted += f" ({_top(data.accepted_by_metric)})"
    lines.append(accepted)
    if data.latency is not None:
        lines.append(
            f"  Latency Swap update -> Klaviyo: median {duration(data.latency.median)}, "
            f"p95 {duration(data.latency.p95)}, worst {duration(data.latency.worst)} "
            f"({number(data.latency.count)} events)"
        )
    if data.triggers is not None:
        lines.append(_triggers_line(data.triggers))
    if data.outstanding_total:
        lines.append(
            f"  NOT delivered: {number(data.outstanding_total)} records "
            f"for {number(data.returns_affected)} returns"
        )
    elif data.stopped_run is not None:
        stopped = data.stopped_run
        lines.append(
            f"  Nothing set aside, but the last run ended {stopped.status}: what it read after "
            "its last bookmark was not delivered yet (the next run reads it again)"
        )
    else:
        lines.append("  Nothing set aside: every record reached Klaviyo")
    if data.reasons:
        by_reason = {r.reason: r.records for r in data.reasons}
        lines.append(f"    set aside by reason: {_top(by_reason)}")
    if data.mismatched:
        mismatched: dict[str, int] = {}
        for row in data.mismatched:
            mismatched[row.reason] = mismatched.get(row.reason, 0) + 1
        lines.append(f"  Mismatched profiles: {number(len(data.mismatched))} ({_top(mismatched)})")
    lines.append(_open_returns_line(data))
    if data.runs:
        lines.append("  Last runs (newest first):")
        lines += [_run_line(run) for run in data.runs[:_RUNS]]
    return "\n".join(lines)


def _run_line(run: RunRow) -> str:
    """One run: its outcome, when, and why it failed (``runs.error``) if it did."""
    if run.finished_at is None:
        line = f"    {run.status:<24} started {timestamp(run.started_at)}, not finished"
    else:
        line = (
            f"    {run.status:<24} finished {timestamp(run.finished_at)}, "
            f"retries {number(run.retries)}, 429s {number(run.throttled)}"
        )
    return f"{line} - {run.error}" if run.error else line


def _triggers_line(hooks: TriggerLatency) -> str:
    head = f"  Latency {hooks.label.lower()} -> Klaviyo:"
    if not hooks.found:
        return f"{head} none recorded (no {hooks.source})"
    waiting = f"; {number(hooks.not_accepted)} not accepted yet" if hooks.not_accepted else ""
    stats = hooks.latency
    if stats is None:
        return f"{head} none measured ({number(hooks.deliveries)} deliveries{waiting})"
    return (
        f"{head} median {duration(stats.median)}, p95 {duration(stats.p95)}, "
        f"worst {duration(stats.worst)} ({number(stats.count)} deliveries{waiting})"
    )


def _open_returns_line(data: ReportData) -> str:
    if not data.open_returns_mirrored:
        return "  Customers flagged with open returns: unknown (the ledger predates profile_lists)"
    line = f"  Customers flagged with open returns: {number(len(data.open_returns))}"
    stale = sum(1 for row in data.open_returns if row.not_delivered is not None)
    if stale:
        line += f" ({number(stale)} with a newer update not delivered)"
    return line
