"""tap-swapcommerce sets aside what it cannot read, and never crashes on it (decisions.md §1).

Each bad return is served by the Swap emulator on a page with good ones, and read by the tap's
executable: the good returns are delivered, the bad one becomes an ``integration_exceptions``
record (reason ``unreadable_record``, the field named, never the value) written before any STATE
that moves past it, and a lone surrogate in free text is repaired to U+FFFD and counted.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from emulators.swap import RawJSON, SwapEmulator
from tap_swapcommerce.pages import read_page
from tests.support import Sync, config_for, final_state, sync

NAME = "Zo\u00eb \ud83d"  # a broken emoji: valid JSON, not encodable as UTF-8
EMAIL = "zoe.quarantine\ud83d@example.com"
DEEP = "[" * 1500 + '"Quarantined Name"' + "]" * 1500
HUGE = "7" * 5000


def exceptions(run: Sync) -> list[dict[str, Any]]:
    return run.records["integration_exceptions"]


def create_bad_and_good(swap: SwapEmulator) -> dict[str, str]:
    """Good and bad returns interleaved, so every bad one shares its page with good ones."""
    made = {"good_1": swap.create_return()["return_id"]}
    made["repaired"] = swap.create_return(customer_name=NAME)["return_id"]
    made["email"] = swap.create_return(customer_email=EMAIL)["return_id"]
    made["good_2"] = swap.create_return()["return_id"]
    made["deep"] = swap.create_return(customer_name=RawJSON(DEEP))["return_id"]
    made["huge"] = swap.create_return(total=RawJSON(HUGE))["return_id"]
    made["good_3"] = swap.create_return()["return_id"]
    return made


@pytest.mark.slow  # runs the tap's executable (about a second each)
def test_bad_returns_are_set_aside_and_the_page_is_still_delivered(swap: SwapEmulator) -> None:
    made = create_bad_and_good(swap)
    run = sync(config_for(swap, page_size=50))

    delivered = {r["return_id"]: r for r in run.records["returns"]}
    assert len(delivered) == 300 + 4
    for name in ("good_1", "good_2", "good_3", "repaired"):
        assert made[name] in delivered
    for name in ("email", "deep", "huge"):
        assert made[name] not in delivered
        assert not any(r["return_id"] == made[name] for r in run.records["return_items"])

    by_key = {e["source_key"]: e for e in exceptions(run)}
    assert set(by_key) == {made["email"], made["deep"], made["huge"]}
    assert {e["reason"] for e in by_key.values()} == {"unreadable_record"}
    assert {e["source_stream"] for e in by_key.values()} == {"returns"}
    assert "customer_email" in by_key[made["email"]]["detail"]
    assert "lone surrogate" in by_key[made["email"]]["detail"]
    assert "customer_name" in by_key[made["deep"]]["detail"]
    assert "1500 levels deep" in by_key[made["deep"]]["detail"]
    assert "'total'" in by_key[made["huge"]]["detail"]
    assert "5000 digits" in by_key[made["huge"]]["detail"]
    for exception in by_key.values():
        assert exception["source_updated_at"]
        assert len(exception["exception_id"]) == 32


@pytest.mark.slow  # runs the tap's executable (about a second each)
def test_free_text_surrogate_is_repaired_counted_and_never_logged(swap: SwapEmulator) -> None:
    made = create_bad_and_good(swap)
    run = sync(config_for(swap))
    repaired = next(r for r in run.records["returns"] if r["return_id"] == made["repaired"])
    assert repaired["customer_name"] == "Zo\u00eb \ufffd"
    assert "Repaired 1 lone surrogate(s) to U+FFFD in free text: customer_name (1)" in run.stderr
    for value in ("Zo\u00eb", "zoe.quarantine", "Quarantined Name", HUGE[:50]):
        assert value not in run.stderr
        assert all(value not in json.dumps(e) for e in exceptions(run))


@pytest.mark.slow  # runs the tap's executable (about a second each)
def test_state_passes_a_set_aside_return_only_after_its_record(swap: SwapEmulator) -> None:
    made = create_bad_and_good(swap)
    run = sync(config_for(swap, page_size=50))
    exception_at = {
        m["record"]["source_key"]: index
        for index, m in enumerate(run.messages)
        if m["type"] == "RECORD" and m["stream"] == "integration_exceptions"
    }
    for name in ("email", "deep", "huge"):
        updated = swap.get_return(made[name])["date_updated"]
        passing = [
            index
            for index, m in enumerate(run.messages)
            if m["type"] == "STATE"
            and _bookmark(m["value"], "returns") is not None
            and _bookmark(m["value"], "returns") >= updated
        ]
        assert passing, "the run's bookmark passed every set-aside return"
        assert exception_at[made[name]] < passing[0]
    schema_at = next(
        index
        for index, m in enumerate(run.messages)
        if m["type"] == "SCHEMA" and m["stream"] == "integration_exceptions"
    )
    assert schema_at < min(exception_at.values())


@pytest.mark.slow  # runs the tap's executable (about a second each)
def test_a_page_ending_in_set_aside_returns_does_not_end_the_sync(swap: SwapEmulator) -> None:
    """Keyset paging moves on from the set-aside returns' own update times."""
    for _ in range(6):
        swap.create_return(total=RawJSON(HUGE))
    late = [swap.create_return()["return_id"] for _ in range(3)]
    run = sync(config_for(swap, page_size=6))
    emitted = {r["return_id"] for r in run.records["returns"]}
    assert set(late) <= emitted
    assert len(emitted) == 303
    assert len({e["source_key"] for e in exceptions(run)}) == 6


@pytest.mark.slow  # runs the tap's executable (about a second each)
def test_the_next_run_delivers_new_returns_past_the_set_aside_ones(swap: SwapEmulator) -> None:
    create_bad_and_good(swap)
    first = sync(config_for(swap, lookback_minutes=0))
    later = swap.create_return()["return_id"]
    second = sync(config_for(swap, lookback_minutes=0), final_state(first))
    assert later in {r["return_id"] for r in second.records["returns"]}


def test_unreadable_without_a_readable_id_has_a_stable_key() -> None:
    item = '{"return_id":"\\udc00x","date_updated":"2026-01-01T00:00:00Z","total":' + HUGE + "}"
    content = ('{"returns":[' + item + '],"pagination":{"has_next_page":false}}').encode()
    first, second = read_page(content).set_aside, read_page(content).set_aside
    assert len(first) == 1
    assert first[0].source_key is None
    assert first[0].fingerprint == second[0].fingerprint


def test_bytes_that_are_not_utf8_are_dealt_with_like_lone_surrogates() -> None:
    content = (
        b'{"returns":[{"return_id":"r1","date_updated":"2026-01-01T00:00:00Z",'
        b'"customer_name":"Zo\xff"},{"return_id":"r2","date_updated":"2026-01-01T00:00:01Z",'
        b'"sku":"A\xff"}],"pagination":{"has_next_page":false}}'
    )
    page = read_page(content)
    assert [row["return_id"] for row in page.rows] == ["r1"]
    assert page.rows[0]["customer_name"] == "Zo\ufffd"
    assert [(a.source_key, a.field) for a in page.set_aside] == [("r2", "sku")]


def _bookmark(state: dict[str, Any], stream: str) -> str | None:
    value = state.get("bookmarks", {}).get(stream, {})
    result = value.get("replication_key_value") or value.get("progress_markers", {}).get(
        "replication_key_value"
    )
    return str(result) if result is not None else None
