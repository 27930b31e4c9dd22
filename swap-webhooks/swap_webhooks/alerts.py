"""The staleness alert: a short Slack-compatible JSON post (``{"text": ...}``).

It goes out when no run has succeeded for ``stale_after_minutes`` while deliveries wait.

A pipeline that stopped delivering is otherwise silent: each failed run may alert from the target,
but a run that never starts (Meltano broken, disk full, a claim never released) alerts nobody.
The text names times, the last outcome and the log file to read; never a customer, never a key.
Posted with the standard library: the receiver needs no HTTP client of its own.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)


def stale_alert_text(
    stale_after_minutes: float, since: str, last_run: Mapping[str, Any] | None
) -> str:
    lines = [
        f"*Swap → Klaviyo: no pipeline run has succeeded for {stale_after_minutes:g} minutes*",
        f"Waiting since {since} (oldest delivery not handled, or first run after the last"
        " success). Further alerts only after a run succeeds.",
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
