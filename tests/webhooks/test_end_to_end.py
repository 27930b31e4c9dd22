"""The whole path: a return created in Swap, its webhook, the receiver's real ``meltano run``, and
Klaviyo holding the return's event and the customer's suppression property; on a SQLite and on a
PostgreSQL ledger."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from emulators.klaviyo import KlaviyoEmulator
from swap_webhooks import webhook_latencies
from tests.support.pipeline import Pipeline
from tests.webhooks.support import (
    ROOT,
    SECRET,
    VENV_BIN,
    ReceiverThread,
    settings,
    wait_until,
)

pytestmark = [pytest.mark.meltano, pytest.mark.slow]

EMAIL = "webhook.e2e@example.com"


def open_returns(klaviyo: KlaviyoEmulator) -> list[Any]:
    profile = klaviyo.profile(EMAIL)
    return list((profile or {}).get("properties", {}).get("swap_open_returns") or [])


def accepted_at(ledger_url: str, return_id: str, metric: str) -> datetime:
    engine = sa.create_engine(ledger_url)
    try:
        with engine.connect() as conn:
            [(recorded,)] = conn.execute(
                sa.text(
                    "SELECT recorded_at FROM deliveries WHERE source_id = :id AND metric = :metric"
                    " AND outcome = 'accepted'"
                ),
                {"id": return_id, "metric": metric},
            ).all()
    finally:
        engine.dispose()
    # SQLite gives the text it stored (UTC, naive); PostgreSQL an aware datetime.
    moment = recorded if isinstance(recorded, datetime) else datetime.fromisoformat(recorded)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, pipeline: Pipeline) -> str:
    """The pipeline's ledger: its SQLite file, or a throwaway PostgreSQL database (issue 15)."""
    if request.param == "postgresql":
        pipeline.env["TARGET_KLAVIYO_LEDGER_URL"] = str(request.getfixturevalue("postgres_db"))
    return pipeline.env["TARGET_KLAVIYO_LEDGER_URL"]


def test_a_returns_webhook_gets_its_event_and_suppression_to_klaviyo(
    pipeline: Pipeline, ledger_url: str, tmp_path: Path
) -> None:
    # The project's own run command: the launcher (swap-meltano), as meltano.yml sets it.
    launcher = str(VENV_BIN / "swap-meltano")
    config = settings(tmp_path, [launcher, "run", "returns-to-klaviyo"], project_dir=str(ROOT))
    with ReceiverThread(config, env=pipeline.env) as receiver:
        created, result = pipeline.swap.create_return_and_notify(
            receiver.url, SECRET, customer_email=EMAIL
        )
        assert result.status == 200
        assert result.elapsed < 1.0

        events = wait_until(
            lambda: pipeline.klaviyo.events(metric="Return Started", email=EMAIL),
            timeout=120,
            interval=0.25,
            what="the Return Started event in Klaviyo",
        )
        wait_until(
            lambda: created["rma_number"] in open_returns(pipeline.klaviyo),
            timeout=60,
            interval=0.25,
            what="swap_open_returns to hold the RMA",
        )
        wait_until(receiver.idle, timeout=60, what="the run to finish")
        metrics = receiver.metrics()
        last_run = receiver.health()["last_run"]

    assert [e["unique_id"] for e in events] == [f"swap:{created['return_id']}:started"]
    assert open_returns(pipeline.klaviyo) == [created["rma_number"]]
    assert metrics["runs"]["succeeded"] >= 1
    assert metrics["runs"]["crashed"] == metrics["runs"]["failed"] == 0
    # The outcome is the pipeline's own last line, and the run's whole output is kept.
    assert last_run["outcome"] == "succeeded"
    assert "run outcome: succeeded" in Path(last_run["log_file"]).read_text()
    assert "run outcome: succeeded" in last_run["output_tail"]
    # The latency the health report will compute: from the webhook to Klaviyo's acceptance.
    [(return_id, received_at)] = webhook_latencies(config.state_db)
    assert return_id == created["return_id"]
    latency = accepted_at(ledger_url, return_id, "Return Started") - received_at
    print(f"\nwebhook to Klaviyo acceptance: {latency.total_seconds():.2f} s")
    assert latency.total_seconds() > 0
