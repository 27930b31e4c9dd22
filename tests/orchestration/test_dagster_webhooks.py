"""One webhook receiver for two brands, their runs launched on Dagster (``dagster_url``).

``dagster dev`` serves the brands' code location (each brand a partition of
``returns_to_klaviyo``); the receiver, in this test's process, verifies each brand's signed
deliveries and launches that brand's partition there through Dagster's GraphQL API. Each brand
has its own Swap and Klaviyo emulators, so every ``Return Started`` event is checked to reach
its own brand's account only. Then Dagster is stopped: a delivery is tried again (backing off,
alerting) and handled once Dagster is back, nothing lost.
"""

from __future__ import annotations

import contextlib
import sqlite3
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from emulators.swap.webhooks import WebhookSender
from swap_webhooks.settings import DEFAULT_RUN_COMMAND
from tests.brands.support import AlertSink, BrandSandbox, brands_env, brands_file, sandboxes
from tests.orchestration.support import DagsterDev, dagster_home
from tests.support.shared import REPO
from tests.webhooks.support import ReceiverThread, isolated_meltano, settings, wait_until

pytestmark = [pytest.mark.meltano, pytest.mark.slow]

BRANDS = ["acme", "globex"]
#: A run through Dagster takes seconds; the whole wait is generous for a busy 2-core machine.
RUN_WAIT = 300


def notify(brand: BrandSandbox, url: str, number: int) -> str:
    """A new return in the brand's Swap store, and its signed ``returnCreated`` delivery."""
    secret = brand.secrets()[f"{brand.prefix}_WEBHOOK_SECRET"]
    created = brand.swap.create_return(customer_email=f"dagster.{brand.name}.{number}@example.com")
    sent = WebhookSender(url, secret, brand.swap.store_id).send(created, "returnCreated")
    assert sent.status == 200, sent.body
    return str(created["return_id"])


def brand_health(receiver: ReceiverThread, name: str) -> dict[str, Any]:
    return dict(receiver.health()["brands"][name])


def settled(receiver: ReceiverThread, name: str) -> bool:
    """Nothing of the brand waits or runs, and its last run was handled."""
    health = brand_health(receiver, name)
    queue = health["queue"]
    last = health["last_run"] or {}
    return bool(
        queue["pending"] == 0
        and queue["in_run"] == 0
        and health["current_run"] is None
        and last.get("outcome") == "succeeded"
    )


def receiver_runs(state_db: Path) -> list[dict[str, Any]]:
    """The brand's runs as its state db holds them (read-only, beside the running receiver)."""
    uri = f"{state_db.resolve().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        rows = db.execute("SELECT id, outcome, note, dagster_run_id FROM runs ORDER BY id")
        return [
            dict(zip(("id", "outcome", "note", "dagster_run_id"), r, strict=True)) for r in rows
        ]


def test_one_receiver_launches_each_brands_partition_on_dagster(tmp_path: Path) -> None:
    with (
        sandboxes(BRANDS) as brands,
        isolated_meltano(tmp_path) as meltano_env,
        AlertSink() as alerts,
    ):
        file = brands_file(tmp_path / "brands.yml", brands)
        env = brands_env(brands, meltano_env)
        dagster_env = {
            **env,
            "DAGSTER_HOME": str(dagster_home(tmp_path / "dagster-home")),
            "SWAP_PROJECT_DIR": str(REPO),
            "SWAP_BRANDS_FILE": str(file),
            "SWAP_RUN_LOG_DIR": str(tmp_path / "run-logs"),
            "SWAP_SCHEDULES": "stopped",
            "SWAP_RETRY_WAIT_SCALE": "0.05",
        }
        dagster = DagsterDev(dagster_env, tmp_path / "dagster.log")
        config = settings(
            tmp_path,
            list(DEFAULT_RUN_COMMAND),
            brands_file=str(file),
            dagster_url=dagster.base,
            coalesce_seconds=1.0,
            max_retry_seconds=2.0,
            stale_after_minutes=0.05,
            alert_webhook_url=alerts.url("receiver"),
        )
        try:
            with dagster, ReceiverThread(config, env=env) as receiver:
                deliver_through_dagster(brands, receiver)
                dagster.stop()
                waited = deliver_while_dagster_is_down(brands[1], receiver, dagster, alerts)
                launched = launched_runs(dagster)
        finally:
            dagster.stop()

        # Each brand's Klaviyo holds exactly its own returns' events, the new ones included.
        everyone = {b.name: {str(r["return_id"]) for r in b.swap.all_returns()} for b in brands}
        for brand in brands:
            assert brand.started() == brand.expected_started(), brand.name
            others = set().union(*(ids for name, ids in everyone.items() if name != brand.name))
            assert not {e.split(":")[1] for e in brand.event_ids()} & others, brand.name
        assert waited in everyone["globex"]

        # Every launch is the receiver's run of that brand: one Dagster run each, no other.
        for brand in brands:
            runs = receiver_runs(tmp_path / f"webhooks.{brand.name}.sqlite")
            ids = [run["dagster_run_id"] for run in runs if run["dagster_run_id"]]
            assert ids == launched[brand.name], brand.name
        # acme: the first delivery's run, then one run for the burst that came during it.
        assert len(launched["acme"]) == 2
        # globex: its first run, then (Dagster down) failed launches, then one once it was back.
        assert len(launched["globex"]) == 2
        globex_runs = receiver_runs(tmp_path / "webhooks.globex.sqlite")
        refused = [run for run in globex_runs if run["dagster_run_id"] is None]
        assert refused
        assert {run["outcome"] for run in refused} == {"crashed"}
        assert all("Dagster did not launch the run" in run["note"] for run in refused)


def deliver_through_dagster(brands: list[BrandSandbox], receiver: ReceiverThread) -> None:
    """Deliveries for both brands, and a burst for acme while its run is on Dagster."""
    acme, globex = brands
    notify(acme, receiver.url, 1)
    notify(globex, receiver.url, 1)
    wait_until(
        lambda: (brand_health(receiver, "acme")["current_run"] or {}).get("dagster_run_id"),
        timeout=RUN_WAIT,
        what="acme's run to be launched on Dagster",
    )
    for number in (2, 3, 4):  # while acme's launched run is queued or running
        notify(acme, receiver.url, number)
    for name in BRANDS:
        wait_until(partial(settled, receiver, name), timeout=RUN_WAIT, what=f"{name}'s runs")


def launched_runs(dagster: DagsterDev) -> dict[str, list[str]]:
    """Dagster's runs by brand, in the order the receiver launched them; each one succeeded."""
    by_brand: dict[str, list[str]] = {}
    runs = dagster.runs()
    for run in sorted(runs, key=lambda r: int(r["tags"]["swap/webhook_run"])):
        assert run["jobName"] == "returns_to_klaviyo"
        assert run["status"] == "SUCCESS", run
        assert run["tags"]["dagster/partition"] == run["tags"]["swap/brand"]
        by_brand.setdefault(run["tags"]["dagster/partition"], []).append(run["runId"])
    assert sorted(by_brand) == BRANDS
    return by_brand


def deliver_while_dagster_is_down(
    globex: BrandSandbox, receiver: ReceiverThread, dagster: DagsterDev, alerts: AlertSink
) -> str:
    """A delivery while Dagster is stopped waits (backing off, alerting), then runs once back."""
    waited = notify(globex, receiver.url, 2)

    def refused_and_waiting() -> bool:
        health = brand_health(receiver, "globex")
        note = (health["last_run"] or {}).get("note") or ""
        return "Dagster did not launch the run" in note and health["queue"]["pending"] == 1

    wait_until(refused_and_waiting, timeout=RUN_WAIT, what="globex's launch to be refused")
    wait_until(
        lambda: any("Dagster did not launch the run" in t for t in alerts.texts("receiver")),
        timeout=RUN_WAIT,
        what="the staleness alert naming the refused launch",
    )
    dagster.start()  # the same instance (DAGSTER_HOME) and port: the receiver's dagster_url
    wait_until(lambda: settled(receiver, "globex"), timeout=RUN_WAIT, what="globex's run")
    return waited
