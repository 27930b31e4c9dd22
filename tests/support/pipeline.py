"""Fixtures of the webhook tests that run the real pipeline: both emulators and a Meltano of their
own (system db, run dir, logs and ledger under the test's temporary directory)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from emulators.klaviyo import KlaviyoEmulator
from emulators.swap import SwapEmulator, catalog_skus
from tests.webhooks.support import MELTANO, emulator_env, isolated_meltano

KLAVIYO_KEY = "pk_test_webhooks"


@dataclass
class Pipeline:
    swap: SwapEmulator
    klaviyo: KlaviyoEmulator
    env: dict[str, str]  # the full environment a `meltano run` gets
    sys_dir: Path
    ledger: Path


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    if not (MELTANO.exists() and (MELTANO.parents[2] / ".meltano" / "extractors").exists()):
        pytest.fail("these tests need `meltano install` done (scripts/setup.sh)")
    with (
        SwapEmulator(returns=10, rate_limit_per_minute=None) as swap,
        KlaviyoEmulator(api_key=KLAVIYO_KEY) as klaviyo,
        isolated_meltano(tmp_path) as meltano_env,
    ):
        klaviyo.add_variants(catalog_skus(), inventory=0)
        env = {**os.environ, **emulator_env(swap, klaviyo.url, KLAVIYO_KEY), **meltano_env}
        yield Pipeline(
            swap=swap,
            klaviyo=klaviyo,
            env=env,
            sys_dir=Path(meltano_env["MELTANO_SYS_DIR_ROOT"]),
            ledger=tmp_path / "ledger.sqlite",
        )
