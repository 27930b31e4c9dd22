"""Alerts: a short Slack-compatible JSON post when a run fails or newly sets records aside.

The non-zero exit tells the scheduler; the alert tells a person, in the channel where the team
already is. It counts records by reason and names the ledger run to look at, and carries no
personal data and no key. Records set aside again on a rerun (the lookback re-reads recent
returns) do not alert twice: only records set aside for the first time count.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

logger = logging.getLogger(__name__)


def alert_text(
    status: str, run_id: str, new_by_reason: Mapping[str, int], error: str | None
) -> str:
    lines = [f"*Swap → Klaviyo: run {status}* (ledger run `{run_id}`)"]
    if error:
        lines.append(f"Error: {error}")
    if new_by_reason:
        total = sum(new_by_reason.values())
        lines.append(f"{total} records newly set aside, not in Klaviyo:")
        lines += [f"• {reason}: {count}" for reason, count in sorted(new_by_reason.items())]
        lines.append("See them with `klaviyo-ops dead-letters` or the health report.")
    return "\n".join(lines)


def should_alert(status: str, new_by_reason: Mapping[str, int]) -> bool:
    return status != "succeeded" or bool(new_by_reason)


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
