"""Fixtures every test folder can use: the emulators on loopback, and the shared reference files."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulators.klaviyo import KlaviyoEmulator
from emulators.swap import SwapEmulator
from tests.support.shared import REPO, SHARED, SWAP_NOW, shared_file

#: Fixtures from tests/support: ``postgres_url`` and ``postgres_db`` (a throwaway PostgreSQL).
pytest_plugins = ["tests.support.postgres"]

#: Kept importable from here for tests not yet moved to tests.support.shared.
__all__ = ["REPO", "SHARED", "SWAP_NOW", "shared_file"]


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
