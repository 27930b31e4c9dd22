"""Fixtures of tests/target (the helpers they use are in ``tests.support.target``).

``klaviyo`` here is the real emulator that also keeps each request (it overrides the emulators'
own ``klaviyo`` fixture).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.target import EXECUTABLE, KEY, REVISION, RecordingKlaviyo, scaled_limits


@pytest.fixture
def klaviyo() -> Iterator[RecordingKlaviyo]:
    with RecordingKlaviyo(api_key=KEY, rate_limits=False, job_delay=0.02) as emulator:
        yield emulator


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger" / "klaviyo-ledger.sqlite"


@pytest.fixture
def config(klaviyo: RecordingKlaviyo, ledger_path: Path, tmp_path: Path) -> dict[str, Any]:
    """A config for the emulator; tests copy it and change what they exercise."""
    return {
        "api_key": KEY,
        "api_url": klaviyo.url,
        "revision": REVISION,
        "ledger_url": f"sqlite:///{ledger_path}",
        "dry_run_path": str(tmp_path / "dry-run.jsonl"),
        "request_timeout": 5,
        "max_retries": 3,
        "max_set_aside_ratio": 1,
        # Read by the target's Settings though not a declared setting: polls jobs faster.
        "job_poll_seconds": 0.02,
        # The emulator enforces no limits here: pace to Klaviyo's, 20 times faster.
        "rate_limits": scaled_limits(20),
    }


@pytest.fixture(scope="session")
def executable() -> Path:
    if not EXECUTABLE.exists():  # pragma: no cover - the virtualenv installs it
        found = shutil.which("target-klaviyo")
        assert found, "target-klaviyo is not installed in this environment"
        return Path(found)
    return EXECUTABLE
