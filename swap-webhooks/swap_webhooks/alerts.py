"""The staleness alert: a short Slack-compatible JSON post (``{"text": ...}``).

It goes out when no run has succeeded for ``stale_after_minutes`` while deliveries wait, then, as
any repeated outcome (decisions §2), again only when the last run's outcome changes or a day
later, until a run succeeds.

A pipeline that stopped delivering is otherwise silent: each failed run may alert from the target,
but a run that never starts (Meltano broken, disk full, a claim never released, a launch Dagster
refused) alerts nobody. The text names the brand (with a brands file: whose pipeline, in an
agency's shared channel), times, the last outcome and the log file to read; never a customer,
never a key. Posted with the standard library: the receiver needs no HTTP client of its own.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

logger = logging.getLogger(__name__)

#: A staleness alert whose last outcome has not changed goes out again after this long.
REPEAT_ALERT_AFTER = timedelta(days=1)


def stale_alert_due(
    sent_at: str | None, alerted_outcome: str | None, outcome: str | None, now: datetime
) -> bool:
    """Whether a stale pipeline alerts now: first, on a new last outcome, or a day on.

    ``sent_at`` and ``alerted_outcome`` are the previous alert of this stale period (none since
    the last successful run: ``sent_at`` None); ``outcome`` is the last run's now.
    """
    if sent_at is None:
        return True
    if outcome != alerted_outcome:
        return True
    return now - datetime.fromisoformat(sent_at) >= REPEAT_ALERT_AFTER


def stale_alert_text(
    stale_after_minutes: float,
    since: str,
    last_run: Mapping[str, Any] | None,
    *,
    brand: str | None = None,
) -> str:
    """The text; ``brand`` (its name in the brands file) says whose pipeline has gone stale."""
    whose = f" {brand}" if brand else ""
    outcome = f" (last run `{last_run['outcome']}`)" if last_run is not None else ""
    lines = [
        f"*Swap → Klaviyo{whose}: no pipeline run has succeeded for"
        f" {stale_after_minutes:g} minutes*{outcome}",
        f"Waiting since {since} (oldest delivery not handled, or first run after the last"
        " success). Alerted again when the last run's outcome changes, or a day later, until a"
        " run succeeds.",
    ]
    if last_run is not None:
        lines.append(
            f"Last run {last_run['id']}: `{last_run['outcome']}`"
            f" (exit {last_run['exit_code']}, {last_run.get('note') or 'no note'})."
        )
        if last_run.get("log_file"):
            lines.append(f"Its output: `{last_run['log_file']}`; `GET /health` shows its end.")
    return "\n".join(lines)


def post_alert(url: str, text: str, *, timeout: float = 10.0) -> bool:
    """Post the alert; a failure to alert is logged (without the URL, a secret) and reported."""
    body = json.dumps({"text": text}).encode()
    request = urllib.request.Request(  # noqa: S310 - the operator's alert_webhook_url
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        logger.warning("could not post the staleness alert (%s)", type(exc).__name__)
        return False
    if status >= 300:
        logger.warning("the alert webhook answered HTTP %d", status)
        return False
    return True
