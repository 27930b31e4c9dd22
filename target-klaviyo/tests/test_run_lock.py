"""Two runs of the target on one ledger never deliver at the same time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from emulators.klaviyo import KlaviyoEmulator
from target_klaviyo.ledger import Ledger
from target_klaviyo.target import TargetKlaviyo


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


def test_the_run_lock_on_postgresql_is_an_advisory_lock_per_schema(postgres_db: str) -> None:
    first, second = Ledger(postgres_db), Ledger(postgres_db)
    try:
        assert first.lock_run(1)
        assert not second.lock_run(0.5), "a second run on the same ledger waits, then gives up"
        first.release_run()
        assert second.lock_run(1), "released: the next run takes it at once"
    finally:
        first.close()
        second.close()
    # A brand's ledger in its own schema (decisions.md §6) never waits for another brand's run.
    engine = sa.create_engine(postgres_db)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA brand_b"))
    engine.dispose()
    brand_b = sa.make_url(postgres_db).update_query_dict({"options": "-csearch_path=brand_b"})
    brand_a, other = Ledger(postgres_db), Ledger(brand_b.render_as_string(hide_password=False))
    try:
        other.migrate()
        assert brand_a.lock_run(1)
        assert other.lock_run(0.5)
        with other.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_schema()")).scalar() == "brand_b"
            assert "deliveries" in sa.inspect(conn).get_table_names(schema="brand_b")
    finally:
        brand_a.close()
        other.close()
