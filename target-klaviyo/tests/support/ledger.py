"""A delivery ledger at this release's schema, as a run leaves it, for tests that write one."""

from __future__ import annotations

from typing import Any

from target_klaviyo.ledger import Ledger


def migrated_ledger(url: str, **kwargs: Any) -> Ledger:
    """A ledger opened and migrated, as the target does at start-up (tests hold no run lock)."""
    ledger = Ledger(url, **kwargs)
    ledger.migrate()
    return ledger
