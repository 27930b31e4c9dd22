"""A NUL byte in a list value, a restock key or an event's id (an RMA number, a line item id).

PostgreSQL refuses NUL in text, so before the ledger stored these keys as storable text a run
whose records Klaviyo had accepted crashed while recording them (found by the bad-input suite
through ``meltano run``). The mirror and the restock lookups key the same way, so a second run
still finds what the first recorded: the restock is not applied twice, the event not sent twice.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.target import (
    EVENTS,
    PROFILES,
    VARIANTS,
    event,
    inventory_of,
    ledger_rows,
    outcomes,
    restock,
    run_target,
    singer,
    update,
)

T1 = "2026-02-01T10:00:00+00:00"
RMA = "SW-\x00-1"
KEY = "swap:ret-1:\x00139"
EVENT_ID = "swap:ret-1:restock:\x00139"


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_at(request: pytest.FixtureRequest, config: dict[str, Any], ledger_path: Any) -> Any:
    if request.param == "sqlite":
        return ledger_path
    config["ledger_url"] = request.getfixturevalue("postgres_db")
    return config["ledger_url"]


def test_nul_in_a_list_value_and_a_restock_key_is_recorded_and_found_again(
    klaviyo, config, ledger_at
):
    klaviyo.add_variants(["A"], inventory=10)
    first = [
        update("u-1", "nul@example.com", as_of=T1, append={"swap_open_returns": [RMA]}),
        restock(KEY, "A", 3),
        event(EVENT_ID, "nul@example.com"),
    ]
    run = run_target(config, singer(first))
    assert run.error is None, repr(run.error)
    assert outcomes(ledger_at, PROFILES) == {"u-1": "accepted"}
    assert outcomes(ledger_at, VARIANTS) == {"swap:ret-1:\ufffd139": "accepted"}
    assert outcomes(ledger_at, EVENTS) == {"swap:ret-1:restock:\ufffd139": "accepted"}
    [listed] = ledger_rows(ledger_at, "profile_lists")
    assert (listed["value"], listed["state"]) == ("SW-\ufffd-1", "appended")
    [kept] = ledger_rows(ledger_at, "restocks")
    assert (kept["restock_key"], kept["status"]) == ("swap:ret-1:\ufffd139", "applied")

    # The source sends the restock again (its bookmark did not move): found, not applied twice.
    run = run_target(config, singer([restock(KEY, "A", 3), event(EVENT_ID, "nul@example.com")]))
    assert run.error is None, repr(run.error)
    assert inventory_of(klaviyo, "$custom:::$default:::A") == 13
    deduplicated = ledger_rows(ledger_at, outcome="deduplicated")
    assert sorted(r["stream"] for r in deduplicated) == sorted([EVENTS, VARIANTS])
    assert len(klaviyo.events()) == 1
