"""Restocks: each inventory delta applied once per restock key, including after a crash."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from emulators.klaviyo import KlaviyoEmulator
from tests.support.ledger import migrated_ledger
from tests.support.target import (
    VARIANT_JOBS_PATH,
    VARIANTS,
    inventory_of,
    ledger_rows,
    outcomes,
    restock,
    run_target,
    singer,
)


def quantity(klaviyo: KlaviyoEmulator, sku: str) -> Any:
    return inventory_of(klaviyo, f"$custom:::$default:::{sku}")


@pytest.mark.slow
def test_each_restock_is_applied_once_even_when_rerun(klaviyo, config, ledger_path):
    klaviyo.add_variants(["A", "B"], inventory=10)
    records = [restock("r-1", "A", 3), restock("r-2", "A", 2), restock("r-3", "B", -4)]
    assert run_target(config, singer(records)).error is None
    assert (quantity(klaviyo, "A"), quantity(klaviyo, "B")) == (15, 6)
    assert outcomes(ledger_path, VARIANTS) == {
        "r-1": "accepted",
        "r-2": "accepted",
        "r-3": "accepted",
    }
    jobs = klaviyo.stats()["variant_jobs"]

    # The same input again (the source's bookmark did not move), plus one new restock.
    run = run_target(config, singer([*records, restock("r-4", "B", 1)]))
    assert run.error is None
    assert (quantity(klaviyo, "A"), quantity(klaviyo, "B")) == (15, 7)
    assert klaviyo.stats()["variant_jobs"] == jobs + 1
    deduplicated = ledger_rows(ledger_path, outcome="deduplicated")
    assert sorted((r["record_key"], r["reason"]) for r in deduplicated) == [
        ("r-1", "applied_earlier"),
        ("r-2", "applied_earlier"),
        ("r-3", "applied_earlier"),
    ]
    statuses = {r["restock_key"]: r["status"] for r in ledger_rows(ledger_path, "restocks")}
    assert statuses == dict.fromkeys(["r-1", "r-2", "r-3", "r-4"], "applied")


@pytest.mark.slow
def test_a_repeated_restock_key_in_one_batch_is_applied_once(klaviyo, config):
    klaviyo.add_variants(["A"], inventory=1)
    records = [restock("r-1", "A", 5), restock("r-1", "A", 5)]
    assert run_target(config, singer(records)).error is None
    assert quantity(klaviyo, "A") == 6


@pytest.mark.slow
def test_variants_per_job_splits_jobs_and_applies_all(klaviyo, config):
    skus = [f"S{i:03d}" for i in range(25)]
    klaviyo.add_variants(skus, inventory=0)
    records = [restock(f"r-{sku}", sku, i + 1) for i, sku in enumerate(skus)]
    assert run_target({**config, "variants_per_job": 10}, singer(records)).error is None
    bodies = [p.json() for p in klaviyo.requests("POST", VARIANT_JOBS_PATH)]
    assert [len(b["data"]["attributes"]["variants"]["data"]) for b in bodies] == [10, 10, 5]
    assert [quantity(klaviyo, sku) for sku in skus] == list(range(1, 26))
    assert klaviyo.stats()["variant_jobs_overlapping"] == 0


@pytest.mark.slow
def test_missing_variant_is_set_aside_as_variant_not_found(klaviyo, config, ledger_path):
    klaviyo.add_variants(["A"], inventory=2)
    records = [restock("r-1", "A", 1), restock("r-2", "GONE", 4)]
    run = run_target(config, singer(records))
    assert run.error is None
    assert quantity(klaviyo, "A") == 3
    [row] = ledger_rows(ledger_path, outcome="rejected")
    assert (row["record_key"], row["reason"]) == ("r-2", "variant_not_found")
    assert "$custom:::$default:::GONE" in row["detail"]
    assert run.summary["set_aside_by_reason"] == {"variant_not_found": 1}
    # Not recorded as a restock in flight or done: it may be applied once the variant exists.
    assert [r["restock_key"] for r in ledger_rows(ledger_path, "restocks")] == ["r-1"]


@pytest.mark.slow
def test_shopify_variants_are_set_aside_as_not_writable(klaviyo, config, ledger_path):
    klaviyo.add_variants(["A"], inventory=2, integration="$shopify")
    run = run_target(config, singer([restock("r-1", "A", 1, catalog="$shopify")]))
    assert run.error is None
    [row] = ledger_rows(ledger_path, outcome="rejected")
    assert (row["record_key"], row["reason"]) == ("r-1", "catalog_not_writable")
    assert klaviyo.posts() == []
    assert inventory_of(klaviyo, "$shopify:::$default:::A") == 2


def leave_pending(ledger_path, key: str, sku: str, delta: int, base: int, job_id=None) -> None:
    """What a run killed between sending a variant job and recording its outcome leaves."""
    ledger = migrated_ledger(f"sqlite:///{ledger_path}")
    try:
        ledger.save_restocks(
            [
                {
                    "restock_key": key,
                    "variant_id": f"$custom:::$default:::{sku}",
                    "inventory_delta": delta,
                    "status": "pending",
                    "base_quantity": Decimal(base),
                    "target_quantity": Decimal(base + delta),
                    "job_id": job_id,
                }
            ]
        )
    finally:
        ledger.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("found", "expected_quantity", "status", "outcome", "reason"),
    [
        # The job had run: the quantity is the one the crashed run wrote. Not applied again.
        (13, 13, "applied", "deduplicated", "applied_earlier"),
        # The job never ran: the quantity is still the one read. Applied now, once.
        (10, 13, "applied", "accepted", None),
        # Neither: something else changed it. Set aside for a person, never applied twice.
        (11, 11, "uncertain", "rejected", "restock_uncertain"),
    ],
    ids=["applied", "not-applied", "uncertain"],
)
def test_a_pending_restock_left_by_a_crash_is_resolved(
    klaviyo, config, ledger_path, found, expected_quantity, status, outcome, reason
):
    klaviyo.add_variants(["A"], inventory=found)
    leave_pending(ledger_path, "r-1", "A", 3, base=10)
    run = run_target(config, singer([restock("r-1", "A", 3)]))
    assert run.error is None
    assert quantity(klaviyo, "A") == expected_quantity
    [row] = ledger_rows(ledger_path, "restocks")
    assert row["status"] == status
    [delivery] = ledger_rows(ledger_path)
    assert (delivery["outcome"], delivery["reason"]) == (outcome, reason)


@pytest.mark.slow
def test_a_pending_restock_with_a_job_klaviyo_does_not_know_is_read_from_the_variant(
    klaviyo, config, ledger_path
):
    klaviyo.add_variants(["A"], inventory=13)
    leave_pending(ledger_path, "r-1", "A", 3, base=10, job_id="01UNKNOWNJOB")
    assert run_target(config, singer([restock("r-1", "A", 3)])).error is None
    assert quantity(klaviyo, "A") == 13
    assert [r["status"] for r in ledger_rows(ledger_path, "restocks")] == ["applied"]


@pytest.mark.slow
def test_a_pending_restock_whose_variant_is_gone_is_applied_when_it_exists(
    klaviyo, config, ledger_path
):
    # Recovery cannot read the variant: the restock is not applied; its record, seen again,
    # is then set aside as variant_not_found like any other.
    leave_pending(ledger_path, "r-1", "A", 3, base=10)
    run = run_target(config, singer([restock("r-1", "A", 3)]))
    assert run.error is None
    assert ledger_rows(ledger_path, "restocks") == []
    assert [r["reason"] for r in ledger_rows(ledger_path)] == ["variant_not_found"]


@pytest.mark.slow
def test_an_absurd_delta_is_set_aside_and_does_not_stop_every_run(klaviyo, config, ledger_path):
    # A garbage number from a source (it used to overflow the ledger and crash each rerun).
    klaviyo.add_variants(["A", "B"], inventory=1)
    stream, absurd = restock("r-1", "A", 1)
    absurd["inventory_delta"] = 10**20
    run = run_target(config, singer([(stream, absurd), restock("r-2", "B", 2)]))
    assert run.error is None, repr(run.error)
    assert (quantity(klaviyo, "A"), quantity(klaviyo, "B")) == (1, 3)
    [row] = ledger_rows(ledger_path, outcome="invalid_record")
    assert row["record_key"] == "r-1"
    assert row["detail"].startswith("inventory_delta")
