"""The emulators as pytest fixtures, for any test suite that installs this package.

Registered through the ``pytest11`` entry point, so the project's tests and each plugin's own tests
(``<plugin>/tests``, run from the plugin's folder) get the same two fixtures without importing a
conftest: ``swap``, a small Swap data set, and ``klaviyo``, an empty Klaviyo account. A suite's own
conftest may override either with a fixture of the same name.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from emulators.klaviyo import KlaviyoEmulator
from emulators.swap import SwapEmulator

#: A fixed end of the Swap data set's history, so that data and assertions are reproducible.
SWAP_NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


@pytest.fixture
def swap() -> Iterator[SwapEmulator]:
    """300 returns generated with a fixed seed, the rate limit off."""
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
    """An empty Klaviyo account with fast bulk jobs."""
    with KlaviyoEmulator(api_key="pk_test", job_delay=0.02) as emulator:
        yield emulator
