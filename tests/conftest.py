"""The project's fixtures: ``swap`` and ``klaviyo`` come from the emulators' pytest plugin
(``emulators/pytest_plugin.py``); a throwaway PostgreSQL from ``tests/support/postgres.py``; the
health report's ledger from ``tests/support/report_ledger.py``."""

from __future__ import annotations

#: Fixtures from tests/support: ``postgres_url`` and ``postgres_db`` (a throwaway PostgreSQL);
#: ``clock``, ``ledger_url`` and ``webhooks_db`` (a delivery ledger and a receiver's state db).
pytest_plugins = ["tests.support.postgres", "tests.support.report_ledger"]
