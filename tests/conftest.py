"""Fixtures every test folder can use: the emulators on loopback, and the shared reference files."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from emulators.klaviyo import KlaviyoEmulator
from emulators.swap import SwapEmulator

#: Fixtures from tests/support: ``postgres_url`` and ``postgres_db`` (a throwaway PostgreSQL).
pytest_plugins = ["tests.support.postgres"]

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

#: A fixed end of the Swap data set's history, so that data and assertions are reproducible.
SWAP_NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def shared_file(name: str) -> Path:
    """A file of ../shared (the Swap contract, Klaviyo's OpenAPI specs); fail clearly if absent."""
    path = SHARED / name
    if not path.exists():
        pytest.fail(
            f"{path} is missing: the tests read the shared reference material from ../shared "
            "beside the repository (the Swap API contract and Klaviyo's OpenAPI specs)"
        )
    return path


@pytest.fixture
def swap() -> Iterator[SwapEmulator]:
    """A small Swap data set with the rate limit off."""
    with SwapEmulator(
        returns=300,
        seed=11,
        now=SWAP_NOW,
        api_key="swap_test_key",
        store_id="store_test",
        rate_limit_per_minute=None,
    ) as emulator:
        yield emulator


@pytest.fixture
def klaviyo() -> Iterator[KlaviyoEmulator]:
    with KlaviyoEmulator(api_key="pk_test", job_delay=0.02) as emulator:
        yield emulator
