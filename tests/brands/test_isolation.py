"""Brands kept apart for real: `swap-brands run` against a Swap and a Klaviyo emulator per brand.

Nothing of one brand reaches another's Klaviyo account, a customer of two brands gets each
brand's own profile ordering, and a brand that fails (a revoked key, Klaviyo throttling past the
deadline, a mapping error) neither stops the others in the same cycle nor loses anything once it
is fixed; it alerts its own destination, naming itself and its outcome.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.brands.support import (
    SWAP_BRANDS,
    AlertSink,
    BrandSandbox,
    brands_env,
    brands_file,
    mapping_copy,
    outcome,
    run_brand,
    sandboxes,
)
from tests.support.shared import REPO
from tests.webhooks.support import isolated_meltano

pytestmark = [pytest.mark.meltano, pytest.mark.slow]

SHARED = "shared.customer@example.com"


def returns_of(events: set[str]) -> set[str]:
    return {unique_id.split(":")[1] for unique_id in events}


def own_returns(brand: BrandSandbox) -> set[str]:
    return {str(r["return_id"]) for r in brand.swap.all_returns()}


def summary(file: Path, env: dict[str, str]) -> dict[str, dict]:
    command = [str(SWAP_BRANDS), "--project-dir", str(REPO), "--brands-file", str(file)]
    done = subprocess.run(
        [*command, "summary", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return {row["brand"]: row for row in json.loads(done.stdout)}


def test_two_brands_sharing_a_customer_each_hold_only_their_own(tmp_path: Path) -> None:
    with sandboxes(["acme", "globex"]) as brands, isolated_meltano(tmp_path) as meltano_env:
        acme, globex = brands
        # One customer returns to both brands; globex's return is the newer one.
        mine = acme.swap.create_return(customer_email=SHARED)
        theirs = globex.swap.create_return(customer_email=SHARED)
        file = brands_file(tmp_path / "brands.yml", brands)
        env = brands_env(brands, meltano_env)
        for brand in (globex, acme):  # the newer first: a shared ledger would now skip acme's
            code, output = run_brand(brand.name, file, env)
            assert (code, outcome(output)) == (0, "succeeded"), output[-3000:]

        for brand, other in ((acme, globex), (globex, acme)):
            assert brand.started() == brand.expected_started()
            assert returns_of(brand.event_ids()) <= own_returns(brand)
            assert not returns_of(brand.event_ids()) & own_returns(other)
        # Each account's profile of the shared customer describes that brand's return only.
        for brand, created in ((acme, mine), (globex, theirs)):
            properties = (brand.klaviyo.profile(SHARED) or {}).get("properties") or {}
            assert properties.get("swap_open_returns") == [created["rma_number"]]
            assert str(properties.get("swap_last_return_at", "")).startswith(
                created["submission_date"][:16]
            ), properties
        ledgers = sorted(p.parent.name for p in (tmp_path / "ledgers").glob("*/*.sqlite"))
        assert ledgers == ["acme", "globex"]

        # Removing a brand purges its ledger, its state and its entry with one command.
        command = [str(SWAP_BRANDS), "--project-dir", str(REPO), "--brands-file", str(file)]
        done = subprocess.run(
            [*command, "remove", "acme", "--purge"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert not (tmp_path / "ledgers" / "acme").exists()
        assert (tmp_path / "ledgers" / "globex").exists()
        assert "name: acme" not in file.read_text()
        with contextlib.closing(
            sqlite3.connect(Path(meltano_env["MELTANO_SYS_DIR_ROOT"]) / "meltano.db")
        ) as db:
            states = [row[0] for row in db.execute("SELECT state_id FROM state")]
        assert states == ["sandbox:tap-swapcommerce-to-target-klaviyo:globex"]


def test_failing_brands_leave_the_others_alone_alert_their_own_and_lose_nothing(
    tmp_path: Path,
) -> None:
    names = ["good", "fine", "revoked", "throttled", "mapping"]
    with (
        sandboxes(names) as brands,
        isolated_meltano(tmp_path) as meltano_env,
        AlertSink() as alerts,
    ):
        by_name = {brand.name: brand for brand in brands}
        broken = mapping_copy(
            tmp_path / "mapping", 'value: "{{ record.total | money }}"', 'value: "{{ 1 / 0 }}"'
        )
        by_name["mapping"].overrides = {"mapping_files": [str(broken)]}
        by_name["throttled"].overrides = {"throttle_deadline_seconds": 3}
        by_name["throttled"].klaviyo.faults.add(
            kind="status", status=429, path="^/api/", count=0, retry_after=2
        )
        real_key = by_name["revoked"].klaviyo_key
        by_name["revoked"].klaviyo_key = "pk_no_longer_valid"
        file = brands_file(tmp_path / "brands.yml", brands, alerts=alerts)
        env = brands_env(brands, meltano_env, alerts)

        outcomes = cycle(names, file, env)
        assert outcomes == {
            "good": "succeeded",
            "fine": "succeeded",
            "revoked": "auth_failed",
            "throttled": "throttle_deadline",
            "mapping": "mapping_errors_held",
        }
        for name in ("good", "fine"):
            assert by_name[name].started() == by_name[name].expected_started()
        for name in names:
            # Its own destination only, naming itself and the outcome (set-asides alert too).
            texts = alerts.texts(name)
            for text in texts:
                assert f"Swap → Klaviyo {name}: run {outcomes[name]}" in text
                assert not [other for other in names if other != name and f" {other}:" in text]
        for name in ("revoked", "throttled", "mapping"):
            assert len(alerts.texts(name)) == 1, name
        assert by_name["revoked"].klaviyo.events() == []
        assert not by_name["mapping"].started(), "every Return Started failed to map"
        seen = summary(file, env)
        assert {name: row["last_outcome"] for name, row in seen.items()} == outcomes

        # The fixes: the key restored, Klaviyo no longer throttling, the mapping corrected.
        by_name["revoked"].klaviyo_key = real_key
        by_name["throttled"].klaviyo.faults.clear()
        by_name["mapping"].overrides = {}
        file = brands_file(tmp_path / "brands.yml", brands, alerts=alerts)
        env = brands_env(brands, meltano_env, alerts)
        fixed = cycle(["revoked", "throttled", "mapping"], file, env)
        assert set(fixed.values()) == {"succeeded"}, fixed

        for brand in brands:
            assert brand.started() == brand.expected_started(), brand.name
            others = set().union(*(own_returns(b) for b in brands if b is not brand))
            assert not returns_of(brand.event_ids()) & others
        for name in ("revoked", "throttled", "mapping"):
            assert f"Swap → Klaviyo {name}: run succeeded" in alerts.texts(name)[-1]
        assert {row["last_outcome"] for row in summary(file, env).values()} == {"succeeded"}


def cycle(names: list[str], file: Path, env: dict[str, str]) -> dict[str, str | None]:
    """Every brand's run at once, as one scheduler cycle starts them."""
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        results = dict(zip(names, pool.map(lambda n: run_brand(n, file, env), names), strict=True))
    return {name: outcome(output) for name, (_code, output) in results.items()}
