"""Meltano through ``swap_meltano.meltano_main``: a decimal setting given by a variable works.

Plain Meltano 4.4 stops on it ("Object of type Decimal is not JSON serializable"); the first test
fails the day an upstream release fixes that, so the shim can be removed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal

import pytest
from meltano.core.setting_definition import json_dumps

from swap_meltano.launcher import meltano_argv
from tests.support.shared import REPO

LAUNCHER = REPO / ".venv" / "bin" / "swap-meltano"


def test_upstream_meltano_still_cannot_write_a_decimal():
    try:
        json_dumps({"backfill_after_hours": Decimal("0.5")})
    except TypeError:
        return
    raise AssertionError("Meltano writes decimals now: remove swap_meltano/meltano_main.py")


@pytest.mark.slow
def test_a_decimal_setting_from_a_variable_reaches_the_plugin_through_the_launcher():
    env = {
        **os.environ,
        "TARGET_KLAVIYO_BACKFILL_AFTER_HOURS": "0.5",
        "TARGET_KLAVIYO_LOCK_TIMEOUT_SECONDS": "60",
        "KLAVIYO_API_KEY": "pk_test_placeholder",
    }
    result = subprocess.run(
        [str(LAUNCHER), "config", "print", "target-klaviyo", "--format=json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads(result.stdout)
    assert config["backfill_after_hours"] == 0.5
    assert config["lock_timeout_seconds"] == 60


def test_the_launcher_starts_meltano_through_the_shim():
    assert meltano_argv() == [sys.executable, "-m", "swap_meltano.meltano_main"]
