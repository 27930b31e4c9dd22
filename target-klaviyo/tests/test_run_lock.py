"""Two runs of the target on one ledger never deliver at the same time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from emulators.klaviyo import KlaviyoEmulator
from target_klaviyo.target import TargetKlaviyo


@pytest.mark.slow
def test_a_second_run_waits_for_the_ledger_then_gives_up_clearly(
    klaviyo: KlaviyoEmulator, tmp_path: Path
) -> None:
    config = {
        "api_url": klaviyo.url,
        "api_key": "pk_test",
        "ledger_url": f"sqlite:///{tmp_path}/ledger.sqlite",
        "lock_timeout_seconds": 1,
    }
    first = TargetKlaviyo(config=config)  # holds the ledger's run lock from start-up
    try:
        config_file = tmp_path / "config.json"
        config_file.write_text(json.dumps(config))
        second = subprocess.run(
            [sys.executable, "-m", "target_klaviyo.target", "--config", str(config_file)],
            input="",
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert second.returncode == 1
        assert "another target-klaviyo run has held the ledger" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.finish("succeeded")
    # Once released, the next run takes the lock at once.
    third = TargetKlaviyo(config=config)
    third.finish("succeeded")
