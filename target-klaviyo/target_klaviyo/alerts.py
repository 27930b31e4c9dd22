"""Alerts: a short Slack-compatible JSON post when a run's outcome needs a person.

The outcome line tells the scheduler; the alert tells a person, in the channel where the team
already is. It names the run's outcome (``target_klaviyo.outcomes``), the error's type and safe
message, counts records by reason and names the ledger run to look at, and carries no personal
data and no key. Nothing alerts twice for the same thing: records set aside again on a rerun
(the lookback re-reads recent returns) do not count, and an outcome that repeats alerts once,
then again when it changes or a day later (:func:`target_klaviyo.runlog.outcome_alert_due`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

logger = logging.getLogger(__name__)


def alert_text(
    status: str,
    run_id: str,
    new_by_reason: Mapping[str, int],
    error: str | None,
    *,
    interrupted_found: int = 0,
    name: str | None = None,
) -> str:
    """The alert's text; ``name`` (``alert_name``, a brand) says whose pipeline it is."""
    whose = f" {name}" if name else ""
    lines = [f"*Swap → Klaviyo{whose}: run {status}* (ledger run `{run_id}`)"]
    if error:
        lines.append(f"Error: {error}")
    if interrupted_found:
        lines.append(
            f"{interrupted_found} earlier run(s) were found still `running` (killed before they "
            "could finish) and are now marked `interrupted`."
        )
    if new_by_reason:
        total = sum(new_by_reason.values())
        lines.append(f"{total} records newly set aside, not in Klaviyo:")
        lines += [f"• {reason}: {count}" for reason, count in sorted(new_by_reason.items())]
        lines.append("See them with `klaviyo-ops dead-letters` or the health report.")
    return "\n".join(lines)


def should_alert(
    outcome_due: bool, new_by_reason: Mapping[str, int], interrupted_found: int = 0
) -> bool:
    """An outcome due to alert, records newly set aside, or runs found killed: each is news."""
    return outcome_due or bool(new_by_reason) or interrupted_found > 0


def post_alert(url: str, payload: Mapping[str, Any], *, timeout: float = 10.0) -> bool:
    """Post the alert; a failure to alert is logged, never fatal (the run's outcome stands)."""
    try:
        response = httpx.post(url, json=dict(payload), timeout=timeout)
    except httpx.HTTPError as exc:
        logger.warning("Could not post the alert (%s)", type(exc).__name__)
        return False
    if response.status_code >= 300:
        logger.warning("The alert webhook answered HTTP %d", response.status_code)
        return False
    return True
