"""Profile integrity: which events would create a new Klaviyo profile or reach a suppressed one.

The usual way a return event misses its customer is an email mismatch: Swap has the address the
customer typed in the returns portal, Klaviyo the one they signed up with, so the event creates a
second, empty profile that no flow or segment of the brand targets. Before sending, the target
can look the batch's emails up (``GET /api/profiles``, 100 at a time, paced like every request)
and record in the ledger the events that would create a new profile (``new_profile``) or go to a
profile suppressed from email (``suppressed_profile``). ``profile_check`` says what to do then:
``record`` sends them anyway and flags them; ``hold`` sets them aside for a person to decide
(``klaviyo-ops replay`` sends them later).

Emails go into the lookup URL's filter, split so that no URL is too long; an email too long for
any URL (the contract's 254 characters always fit) is flagged ``out_of_bounds`` and its events
are set aside whatever the mode.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from target_klaviyo.bounds import OUT_OF_BOUNDS, url_chunks

if TYPE_CHECKING:
    from target_klaviyo.client import KlaviyoClient

NEW_PROFILE = "new_profile"
SUPPRESSED_PROFILE = "suppressed_profile"
MODES = ("off", "record", "hold")
LOOKUP_SIZE = 100


class ProfileCheck:
    """Classifies emails against the profiles Klaviyo already has."""

    def __init__(self, client: KlaviyoClient) -> None:
        # Only Klaviyo's profiles are read: the client, not the run's whole delivery.
        self.client = client

    def classify(self, emails: Iterable[str]) -> dict[str, str]:
        """``new_profile``, ``suppressed_profile`` or ``out_of_bounds`` per email (lower-cased)."""
        wanted = sorted({e.strip().lower() for e in emails if e})
        known: set[str] = set()
        suppressed: set[str] = set()
        chunks, too_long = url_chunks(wanted, size=LOOKUP_SIZE)
        for chunk in chunks:
            for profile in self._lookup(chunk):
                attributes = profile.get("attributes") or {}
                email = str(attributes.get("email") or "").strip().lower()
                known.add(email)
                marketing = ((attributes.get("subscriptions") or {}).get("email") or {}).get(
                    "marketing"
                ) or {}
                if marketing.get("suppression"):
                    suppressed.add(email)
        flags = {email: NEW_PROFILE for email in wanted if email not in known}
        flags.update(dict.fromkeys(suppressed, SUPPRESSED_PROFILE))
        flags.update(dict.fromkeys(too_long, OUT_OF_BOUNDS))
        return flags

    def _lookup(self, emails: list[str]) -> Iterator[dict[str, Any]]:
        quoted = ",".join(json.dumps(e) for e in emails)
        params = {
            "filter": f"any(email,[{quoted}])",
            "additional-fields[profile]": "subscriptions",
            "page[size]": str(LOOKUP_SIZE),
        }
        for page in self.client.pages("profiles", params, what="look profiles up"):
            yield from page.get("data") or []
