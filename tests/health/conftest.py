"""Fixtures of this folder: a ledger the report reads, and a swap-webhooks state db beside it."""

from __future__ import annotations

from tests.support.report_ledger import clock, ledger_url, webhooks_db

__all__ = ["clock", "ledger_url", "webhooks_db"]
