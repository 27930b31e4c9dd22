"""Issue 12 through the project's own commands (``swap-meltano run``, the backfill script) against
the Swap and Klaviyo emulators.

- A customer whose return creates their Klaviyo profile ends with first and last name, a valid
  phone (E.164) and location from Swap; a later sync of an older return never overwrites them; an
  invalid phone is counted and left out of that update alone; a phone Klaviyo holds on another
  profile is counted and the update goes without it.
- Returned Product, Return Shipped, Exchange Created and Store Credit Issued appear exactly once
  per return (or line): returns synced by the release before (the same mapping without the new
  rules) get them through ``scripts/backfill-new-metrics.sh`` as backfill (no flow fires), the
  existing metrics are not sent again, and neither a second backfill nor later syncs of changed
  returns duplicate anything.
- No log line of any run holds the e-mails, names, phones or addresses used.

The new metrics' test runs on a SQLite and on a PostgreSQL ledger.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from emulators.klaviyo import KlaviyoEmulator
from emulators.swap import SwapEmulator, catalog_skus
from tests.support.customer_data import leaks, personal_values
from tests.support.shared import REPO
from tests.webhooks.support import VENV_BIN, emulator_env, isolated_meltano

pytestmark = [pytest.mark.meltano, pytest.mark.slow]

KLAVIYO_KEY = "pk_test_customer_block"
OUTCOME = re.compile(r"run outcome: ([a-z_]+)")
NEW_RULES = ("returned_product", "return_shipped", "exchange_created", "store_credit_issued")
NEW_METRICS = ("Returned Product", "Return Shipped", "Exchange Created", "Store Credit Issued")
CUSTOMER_BLOCK = ("phone_number", "first_name", "last_name", "organization", "location")


@dataclass
class World:
    swap: SwapEmulator
    klaviyo: KlaviyoEmulator
    env: dict[str, str]
    tmp: Path
    logs: list[str]

    def run(self, *command: str, **settings: str) -> str:
        """A command of the project (default: the pipeline); its output, kept for the log check."""
        argv = list(command) or [str(VENV_BIN / "swap-meltano"), "run", "returns-to-klaviyo"]
        result = subprocess.run(
            argv,
            cwd=REPO,
            env={**self.env, **settings},
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        output = result.stdout + result.stderr
        self.logs.append(output)
        outcomes = OUTCOME.findall(output)
        assert outcomes, output[-3000:]
        assert outcomes[-1] == "succeeded", output[-3000:]
        return output

    def backfill(self) -> str:
        return self.run("bash", str(REPO / "scripts" / "backfill-new-metrics.sh"))

    def ledger(self, query: str, **params: Any) -> list[Any]:
        engine = sa.create_engine(self.env["TARGET_KLAVIYO_LEDGER_URL"])
        try:
            with engine.connect() as conn:
                return list(conn.execute(sa.text(query), params))
        finally:
            engine.dispose()

    def last_summary(self) -> dict[str, Any]:
        [(summary,)] = self.ledger("SELECT summary FROM runs ORDER BY started_at DESC LIMIT 1")
        loaded: dict[str, Any] = json.loads(summary or "{}")
        return loaded

    def accepted_in_last_run(self) -> Counter[str]:
        """Events accepted by the last run, per metric."""
        rows = self.ledger(
            "SELECT metric FROM deliveries WHERE outcome = 'accepted' AND stream = 'klaviyo_events'"
            " AND run_id = (SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1)"
        )
        return Counter(metric for (metric,) in rows)

    def accepted_twice(self) -> list[Any]:
        return self.ledger(
            "SELECT record_key, count(*) FROM deliveries WHERE outcome = 'accepted'"
            " AND stream = 'klaviyo_events' GROUP BY record_key HAVING count(*) > 1"
        )

    def events(self, metric: str) -> dict[str, dict[str, Any]]:
        found = self.klaviyo.events(metric=metric)
        ids = [e["unique_id"] for e in found]
        assert len(ids) == len(set(ids)), f"{metric} held twice in Klaviyo"
        return {e["unique_id"]: e for e in found}


@pytest.fixture
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    if not ((VENV_BIN / "swap-meltano").exists() and (REPO / ".meltano" / "extractors").exists()):
        pytest.fail("these tests need `meltano install` done (scripts/setup.sh)")
    returns = getattr(request, "param", 0)
    with (
        SwapEmulator(returns=returns, seed=12, rate_limit_per_minute=None) as swap,
        KlaviyoEmulator(api_key=KLAVIYO_KEY) as klaviyo,
        isolated_meltano(tmp_path) as meltano_env,
    ):
        klaviyo.add_variants(catalog_skus(), inventory=0)
        env = {**os.environ, **emulator_env(swap, klaviyo.url, KLAVIYO_KEY), **meltano_env}
        env.pop("SWAP_TRANSFORMS_MAPPING_FILES", None)
        world = World(swap, klaviyo, env, tmp_path, [])
        yield world
        used = set().union(*(personal_values(r) for r in swap.all_returns()))
        for log in world.logs:
            assert leaks(log, used) == []


def address(first: str, last: str, line: str, city: str, phone: str) -> dict[str, Any]:
    return {
        "first_name": first, "last_name": last, "name": f"{first} {last}", "company": None,
        "address1": line, "address2": None, "city": city, "province": "England",
        "province_code": "ENG", "zip": "NE1 3DX", "country": "United Kingdom",
        "country_code": "GB", "phone": phone,
    }  # fmt: skip


def test_a_new_customer_gets_name_phone_and_location_and_older_returns_never_overwrite(
    world: World,
) -> None:
    zoe = address("Zoë", "Åberg", "17 Quayside Lane", "Newcastle", "+44 7400 112345")
    world.swap.create_return(
        customer_email="zoe.aberg.issue12@example.com", customer_name="Zoë Åberg",
        shipping_address=zoe, billing_address=zoe,
    )  # fmt: skip
    bad_phone = address("Tomás", "Walsh", "3 Grafton Row", "Durham", "+44 7400 1")
    world.swap.create_return(
        customer_email="tomas.walsh.issue12@example.com", customer_name="Tomás Walsh",
        shipping_address=bad_phone, billing_address=None,
    )  # fmt: skip
    world.klaviyo.add_profile("someone.else.issue12@example.com", phone_number="+447400154321")
    taken = address("Ingrid", "Novák", "9 Leazes Park", "Hexham", "+44 7400 154321")
    world.swap.create_return(
        customer_email="ingrid.novak.issue12@example.com", customer_name="Ingrid Novák",
        shipping_address=taken, billing_address=taken,
    )  # fmt: skip

    output = world.run()
    assert re.search(r"left out  phone_invalid +1\n", output)
    assert re.search(r"left out  phone_in_use +1\n", output)
    profile = world.klaviyo.profile("zoe.aberg.issue12@example.com")
    assert profile is not None
    assert (profile["first_name"], profile["last_name"]) == ("Zoë", "Åberg")
    assert profile["phone_number"] == "+447400112345"
    assert profile["location"] == {
        "address1": "17 Quayside Lane", "city": "Newcastle", "region": "ENG", "zip": "NE1 3DX",
        "country": "United Kingdom",
    }  # fmt: skip
    tomas = world.klaviyo.profile("tomas.walsh.issue12@example.com")
    assert tomas is not None
    assert (tomas["first_name"], tomas["phone_number"]) == ("Tomás", None)
    ingrid = world.klaviyo.profile("ingrid.novak.issue12@example.com")
    assert ingrid is not None
    assert (ingrid["last_name"], ingrid["phone_number"]) == ("Novák", None)
    owner = world.klaviyo.profile("someone.else.issue12@example.com")
    assert owner is not None
    assert owner["phone_number"] == "+447400154321"
    assert world.last_summary()["left_out"] == {"phone_invalid": 1, "phone_in_use": 1}
    # Each customer's events all arrived: the phones cost nothing else.
    started = world.events("Return Started")
    assert {e["email"] for e in started.values()} >= {
        "zoe.aberg.issue12@example.com", "tomas.walsh.issue12@example.com",
        "ingrid.novak.issue12@example.com",
    }  # fmt: skip

    # An older return of Zoë's, synced later, with another name, address and phone.
    older = address("Zoe", "Aberg-Old", "1 Old Road", "Leeds", "+44 7400 198765")
    world.swap.create_return(
        customer_email="zoe.aberg.issue12@example.com", customer_name="Zoe Aberg-Old",
        shipping_address=older, billing_address=older,
        submission_date="2026-01-02T10:00:00.000Z", date_created="2026-01-02T10:00:00.000Z",
    )  # fmt: skip
    world.run()
    after = world.klaviyo.profile("zoe.aberg.issue12@example.com")
    assert after is not None
    assert (after["first_name"], after["last_name"]) == ("Zoë", "Åberg")
    assert after["phone_number"] == "+447400112345"
    assert after["location"]["city"] == "Newcastle"


def test_an_unknown_profile_field_is_set_aside_with_its_name(world: World) -> None:
    """What another source (or a hand-written mapping) sends reaches the target as Meltano runs it.

    The mapper refuses such a field when the mapping loads, so it is fed to the loader directly:
    ``swap-meltano invoke target-klaviyo`` with the project's settings, against the emulator.
    """
    schema = {"type": "object", "properties": {}}
    records = [
        {"update_id": "u-typo", "email": "ana.issue12@example.com", "as_of": "2026-03-01T09:00:00Z",
         "frist_name": "Ana"},
        {"update_id": "u-ok", "email": "bob.issue12@example.com", "as_of": "2026-03-01T09:00:00Z",
         "first_name": "Bob"},
    ]  # fmt: skip
    lines = [{"type": "SCHEMA", "stream": "klaviyo_profile_updates", "schema": schema,
              "key_properties": ["update_id"]}]  # fmt: skip
    lines += [{"type": "RECORD", "stream": "klaviyo_profile_updates", "record": r} for r in records]
    result = subprocess.run(
        [str(VENV_BIN / "swap-meltano"), "invoke", "target-klaviyo"],
        cwd=REPO, env=world.env, capture_output=True, text=True, timeout=600, check=False,
        input="".join(json.dumps(line) + "\n" for line in lines),
    )  # fmt: skip
    output = result.stdout + result.stderr
    world.logs.append(output)
    # One record of two set aside: over the project's max_set_aside_ratio (0.25), as documented.
    assert OUTCOME.findall(output)[-1:] == ["set_aside_over_threshold"], output[-3000:]
    [(outcome, detail)] = world.ledger(
        "SELECT outcome, detail FROM deliveries WHERE record_key = 'u-typo'"
    )
    assert outcome == "invalid_record"
    assert detail == "record: unknown field 'frist_name' (not in the contract)"
    assert "unknown field 'frist_name'" in output  # the log names it too, never the value
    assert world.klaviyo.profile("ana.issue12@example.com") is None
    bob = world.klaviyo.profile("bob.issue12@example.com")
    assert bob is not None
    assert bob["first_name"] == "Bob"


def release_before(tmp: Path) -> Path:
    """The default mapping as the release before this one had it: without the new rules, the
    customer block and swap_last_return_outcome (paths made absolute, written under ``tmp``)."""
    folder = REPO / "transforms"
    mapping = yaml.safe_load((folder / "swap_to_klaviyo.yml").read_text())
    mapping["include"] = [str(folder / path) for path in mapping["include"]]
    for output in mapping["outputs"].values():
        output["schema"] = str(folder / output["schema"])
    rules = mapping["streams"]["returns"]["rules"]
    rules[:] = [rule for rule in rules if rule["name"] not in NEW_RULES]
    [update] = [rule for rule in rules if rule["name"] == "profile_update"]
    emitted = update["emit"]["klaviyo_profile_updates"]
    for name in CUSTOMER_BLOCK:
        del emitted[name]
    del emitted["properties"]["swap_last_return_outcome"]
    path = tmp / "release-before.yml"
    path.write_text(yaml.safe_dump(mapping, allow_unicode=True, sort_keys=False))
    return path


def expected_ids(world: World, mapped: set[str]) -> dict[str, set[str]]:
    """The unique ids of each new metric the returns Swap holds now must have (mapped ones)."""
    ids: dict[str, set[str]] = {metric: set() for metric in NEW_METRICS}
    for record in world.swap.all_returns():
        rid = record["return_id"]
        if rid not in mapped:
            continue  # no usable e-mail: rejected by the mapping's checks
        for shipment in record["return_shipments"]:
            for item in shipment["items"]:
                ids["Returned Product"].add(f"swap:{rid}:product:{item['shopify_line_item_id']}")
        if record["delivery_status"] in ("In-Transit", "Delivered"):
            ids["Return Shipped"].add(f"swap:{rid}:shipped")
        if record.get("exchange_items"):
            ids["Exchange Created"].add(f"swap:{rid}:exchange")
        processed = record["rma_processed"] or record["return_status"] == "Closed"
        if processed and (record.get("total_store_credit_value_customer_currency") or 0) > 0:
            ids["Store Credit Issued"].add(f"swap:{rid}:store_credit")
    return ids


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, world: World) -> None:
    """The runs' ledger (``world.ledger`` reads it): the SQLite file, or a throwaway PostgreSQL
    database (issue 15)."""
    if request.param == "postgresql":
        world.env["TARGET_KLAVIYO_LEDGER_URL"] = str(request.getfixturevalue("postgres_db"))


@pytest.mark.usefixtures("ledger")
@pytest.mark.parametrize("world", [60], indirect=True)
def test_new_metrics_once_per_return_through_the_backfill_and_later_syncs(world: World) -> None:
    before = release_before(world.tmp)
    world.run(SWAP_TRANSFORMS_MAPPING_FILES=json.dumps([str(before)]))
    assert not any(world.klaviyo.events(metric=m) for m in NEW_METRICS)
    existing = {m: len(world.events(m)) for m in ("Return Started", "Refunded Order")}
    mapped = {e["properties"]["ReturnId"] for e in world.events("Return Started").values()}

    world.backfill()
    expected = expected_ids(world, mapped)
    assert all(expected.values()), {m: len(ids) for m, ids in expected.items()}
    for metric in NEW_METRICS:
        events = world.events(metric)
        assert set(events) == expected[metric], metric
        assert all(e["backfill"] for e in events.values()), f"{metric}: a flow would fire"
    sent = world.accepted_in_last_run()
    assert set(sent) == set(NEW_METRICS), "the backfill sent an existing metric again"
    assert {m: len(world.events(m)) for m in existing} == existing
    # The customer block reached the profiles of the returns synced before.
    named = [p for p in world.klaviyo.profiles() if p.get("first_name")]
    assert named

    world.backfill()  # again: nothing to send
    assert world.accepted_in_last_run() == Counter()

    world.swap.advance(fraction=0.6)
    world.run()
    world.run()  # nothing changed since: nothing sent
    assert world.accepted_in_last_run() == Counter()
    assert world.accepted_twice() == []
    expected = expected_ids(world, mapped)
    for metric in NEW_METRICS:
        assert set(world.events(metric)) == expected[metric], metric
