"""Returns the tap cannot read, through `meltano run`: recorded in the ledger, the rest delivered.

The Swap emulator serves, among good returns, one with a lone surrogate in its e-mail, one with a
name nested 1,500 deep, one with a 5,000-digit total, and one with a broken emoji in its name
(free text: repaired). The real pipeline (tap, mapper, target) runs once: the three bad returns
are in the ledger as `unreadable_record` with their return ids, every other return's event
reaches Klaviyo (the repaired one too), the run ends with a recorded outcome rather than a
crash, the bookmark is saved, and the next run delivers a new return.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.klaviyo import KlaviyoEmulator
from emulators.swap import RawJSON, SwapEmulator, catalog_skus
from tests.support.shared import REPO
from tests.webhooks.support import MELTANO, emulator_env, isolated_meltano

pytestmark = [pytest.mark.meltano, pytest.mark.slow]

KLAVIYO_KEY = "pk_test_tap_quarantine"
OUTCOME = re.compile(r"run outcome: ([a-z_]+)")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[SwapEmulator, KlaviyoEmulator, dict[str, str]]]:
    if not (REPO / ".meltano" / "extractors").exists():
        pytest.fail("these tests need `meltano install` done (scripts/setup.sh)")
    with (
        SwapEmulator(returns=10, rate_limit_per_minute=None) as swap,
        KlaviyoEmulator(api_key=KLAVIYO_KEY) as klaviyo,
        isolated_meltano(tmp_path) as meltano_env,
    ):
        klaviyo.add_variants(catalog_skus(), inventory=0)
        env = {**os.environ, **emulator_env(swap, klaviyo.url, KLAVIYO_KEY), **meltano_env}
        yield swap, klaviyo, env


def meltano_run(env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(MELTANO), "run", "tap-swapcommerce", "swap-to-klaviyo", "target-klaviyo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return result.stdout + result.stderr


def exceptions(ledger: str) -> dict[str, tuple[str, str]]:
    """source_id -> (reason, detail) of the ledger's recorded integration exceptions."""
    path = ledger.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute(
            "SELECT source_id, reason, detail FROM deliveries WHERE stream = ?",
            ("integration_exceptions",),
        ).fetchall()
    return {source: (reason, detail) for source, reason, detail in rows}


def test_unreadable_returns_are_recorded_and_the_rest_delivered(
    world: tuple[SwapEmulator, KlaviyoEmulator, dict[str, str]],
) -> None:
    swap, klaviyo, env = world
    email = swap.create_return(customer_email="zoe.e2e\ud83d@example.com")["return_id"]
    deep = swap.create_return(customer_name=RawJSON("[" * 1500 + "]" * 1500))["return_id"]
    huge = swap.create_return(total=RawJSON("9" * 5000))["return_id"]
    repaired = swap.create_return(
        customer_name="Zo\u00eb \ud83d", customer_email="zoe.repaired@example.com"
    )["return_id"]
    good = [r["return_id"] for r in swap.all_returns() if r["return_id"] not in {email, deep, huge}]

    output = meltano_run(env)

    outcomes = OUTCOME.findall(output)
    assert outcomes, output[-3000:]
    assert outcomes[-1] != "crashed", output[-3000:]
    recorded = exceptions(env["TARGET_KLAVIYO_LEDGER_URL"])
    for return_id, field in ((email, "customer_email"), (deep, "customer_name"), (huge, "total")):
        reason, detail = recorded[return_id]
        assert reason == "unreadable_record"
        assert field in detail
    started = {e["unique_id"] for e in klaviyo.events(metric="Return Started")}
    for return_id in good:  # delivered, or set aside by the mapper's own checks (no e-mail)
        mapped = f"swap:{return_id}:started" in started
        checked = recorded.get(return_id, ("", ""))[0] in {"missing_email", "invalid_email"}
        assert mapped or checked, return_id
    assert f"swap:{repaired}:started" in started
    for secret in ("zoe.e2e", "Zo\u00eb", "9" * 50):
        assert secret not in output

    later = swap.create_return()["return_id"]
    meltano_run(env)
    started = {e["unique_id"] for e in klaviyo.events(metric="Return Started")}
    assert f"swap:{later}:started" in started
