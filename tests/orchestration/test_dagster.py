"""The Dagster code location for real: one cycle of five brands materialised through Dagster.

Dagster runs in its own virtualenv (``orchestration/.venv``), so the cycle is that venv's
``swap-orchestration-cycle`` (Dagster's in-process executor, the asset's real retry policy); the
emulators (one Swap and one Klaviyo per brand) run in this test's process. Meltano's system
database and state, and every brand's ledger (a schema each), are in a throwaway PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.brands.support import brands_env, brands_file, sandboxes
from tests.support.shared import REPO
from tests.webhooks.support import isolated_meltano

pytestmark = [pytest.mark.meltano, pytest.mark.slow]

ORCHESTRATION_BIN = REPO / "orchestration" / ".venv" / "bin"
BRANDS = ["acme", "globex", "initech", "umbrella", "hooli"]


def dagster_env(tmp_path: Path, file: Path, env: dict[str, str]) -> dict[str, str]:
    if not (ORCHESTRATION_BIN / "swap-orchestration-cycle").exists():
        pytest.fail("orchestration/.venv is missing: scripts/setup-agency.sh (or test.sh) makes it")
    return {
        **env,
        "SWAP_PROJECT_DIR": str(REPO),
        "SWAP_BRANDS_FILE": str(file),
        "SWAP_RUN_LOG_DIR": str(tmp_path / "run-logs"),
        "SWAP_SCHEDULES": "stopped",
        "SWAP_RETRY_WAIT_SCALE": "0.05",
        "DAGSTER_HOME": "",
    }


def run_cycle(env: dict[str, str], *args: str) -> tuple[int, list[dict], str]:
    done = subprocess.run(
        [str(ORCHESTRATION_BIN / "swap-orchestration-cycle"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, rows, done.stderr


def test_one_cycle_of_five_brands_through_dagster_on_postgres(
    tmp_path: Path, postgres_db: str
) -> None:
    with sandboxes(BRANDS) as brands, isolated_meltano(tmp_path) as meltano_env:
        file = brands_file(
            tmp_path / "brands.yml",
            brands,
            ledger={"kind": "postgres", "url_env": "SWAP_LEDGER_DATABASE_URL"},
        )
        env = brands_env(brands, {**meltano_env, "MELTANO_DATABASE_URI": postgres_db})
        env["SWAP_LEDGER_DATABASE_URL"] = postgres_db
        code, rows, stderr = run_cycle(dagster_env(tmp_path, file, env), "--parallel", "5")
        assert code == 0, stderr[-5000:]
        assert sorted(r["brand"] for r in rows) == sorted(BRANDS)
        assert {r["outcome"] for r in rows} == {"succeeded"}, rows

        everyone = {b.name: {str(r["return_id"]) for r in b.swap.all_returns()} for b in brands}
        for brand in brands:
            assert brand.started() == brand.expected_started(), brand.name
            held = {event.split(":")[1] for event in brand.event_ids()}
            assert held <= everyone[brand.name]
            others = set().union(*(ids for name, ids in everyone.items() if name != brand.name))
            assert not held & others
            logs = [p.read_text() for p in (tmp_path / "run-logs" / brand.name).glob("*.log")]
            assert ["run outcome: succeeded" in log for log in logs].count(True) == 1
            retried = [r for r in rows if r["brand"] == brand.name and r.get("retries")]
            assert len(logs) == 1 + (retried[0]["retries"] if retried else 0), [
                log[-3000:] for log in logs
            ]

    engine = sa.create_engine(postgres_db)
    try:
        with engine.connect() as conn:
            states = conn.execute(sa.text("SELECT state_id FROM state")).scalars().all()
            assert sorted(states) == sorted(
                f"sandbox:tap-swapcommerce-to-target-klaviyo:{name}" for name in BRANDS
            )
            for name in BRANDS:
                status = conn.execute(sa.text(f"SELECT status FROM brand_{name}.runs")).scalars()
                assert list(status) == ["succeeded"]
    finally:
        engine.dispose()
