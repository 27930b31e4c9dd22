"""Fixtures of target-klaviyo's tests (the helpers they use are in ``tests/support``).

``klaviyo`` here is the real emulator that also keeps each request (it overrides the emulators'
own ``klaviyo`` fixture); the ``swap`` fixture is not needed by a Klaviyo loader.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import target_klaviyo.ledger as ledger_module
from tests.support.report_ledger import Clock, write_ledger
from tests.support.target import EXECUTABLE, KEY, REVISION, Hook, RecordingKlaviyo, scaled_limits


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
    """The installed ``target-klaviyo`` executable, as Meltano runs it."""
    assert EXECUTABLE.exists(), "target-klaviyo is not installed in this environment"
    return EXECUTABLE


@pytest.fixture
def hook() -> Iterator[Hook]:
    """An alert webhook receiver, running for the test."""
    receiver = Hook()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()
    receiver.thread.join()


# -- the health report's ledger -------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The ledger's clock, set by the test: every row it records is stamped with its ``now``."""
    clock = Clock()
    monkeypatch.setattr(ledger_module, "utcnow", clock)
    return clock


@pytest.fixture
def ledger_url(tmp_path: Path, clock: Clock) -> str:
    """A ledger of three runs over a day and a half, as the report tests read it."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    write_ledger(url, clock)
    return url
