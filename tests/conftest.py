"""The project's fixtures: ``swap`` and ``klaviyo`` come from the emulators' pytest plugin
(``emulators/pytest_plugin.py``); a throwaway PostgreSQL from ``tests/support/postgres.py``."""

from __future__ import annotations

#: Fixtures from tests/support: ``postgres_url`` and ``postgres_db`` (a throwaway PostgreSQL).
pytest_plugins = ["tests.support.postgres"]
