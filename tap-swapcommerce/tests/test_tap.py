"""tap-swapcommerce against the Swap emulator over loopback: paging, children, errors, dirt."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from urllib.request import Request, urlopen

import pytest

from emulators.pytest_plugin import SWAP_NOW
from emulators.swap import SwapEmulator
from tests.support import TAP, config_for, final_state, select_all, sync


@pytest.mark.slow  # runs the tap's executable (about a second each)
def test_full_sync_emits_every_return_once_in_update_order(swap: SwapEmulator) -> None:
    runner = sync(config_for(swap))
    emitted = runner.records["returns"]
    expected = [r["return_id"] for r in swap.all_returns()]
    assert [r["return_id"] for r in emitted] == expected
    assert len(expected) == 300
    # Shared timestamps exist in the data set, so keyset paging had to page within them.
    biggest_group = Counter(r["date_updated"] for r in emitted).most_common(1)[0][1]
    assert biggest_group > 1


@pytest.mark.slow  # runs the tap's executable (about a second each)
def test_keyset_paging_walks_a_timestamp_group_larger_than_a_page() -> None:
    with SwapEmulator(
        returns=2500, seed=3, now=SWAP_NOW, rate_limit_per_minute=None, api_key="k", store_id="s"
    ) as swap:
        groups = Counter(r["date_updated"] for r in swap.all_returns())
        assert max(groups.values()) > 100, "the data set must hold a group bigger than a page"
        runner = sync(config_for(swap, page_size=100))
        ids = [r["return_id"] for r in runner.records["returns"]]
        assert len(ids) == len(set(ids)) == 2500


@pytest.mark.slow  # runs the tap's executable (about a second each)
def test_row_displaced_by_a_mid_sync_update_is_still_emitted(swap: SwapEmulator) -> None:
    """Page-number paging skips the row that slides back onto a page already read."""
    order = [r["return_id"] for r in swap.all_returns()]
    page_size = 50
    touched = order[10]  # on page 1: once it moves to the end, every later row shifts back one
    swap.update_during_paging(after_requests=1, return_ids=[touched])
    runner = sync(config_for(swap, page_size=page_size))
    emitted = [r["return_id"] for r in runner.records["returns"]]
    assert set(emitted) == set(order), "a return was lost while Swap updated rows mid-sync"
    # The row that slid from page 2 onto page 1 is the one page numbers would have lost.
    assert order[page_size] in emitted
    # The updated return comes again with its new update time (at least once delivery).
    touched_rows = [r for r in runner.records["returns"] if r["return_id"] == touched]
    assert len(touched_rows) == 2
    assert touched_rows[1]["date_updated"] > touched_rows[0]["date_updated"]


def test_page_numbers_alone_would_lose_that_row(swap: SwapEmulator) -> None:
    """The failure keyset paging prevents, reproduced with a plain page-number loop."""
    order = [r["return_id"] for r in swap.all_returns()]
    swap.update_during_paging(after_requests=1, return_ids=[order[10]])
    seen: list[str] = []
    page = 1
    while True:
        query = urlencode({"swap_store_id": swap.store_id, "items_per_page": 50, "page": page})
        request = Request(
            f"{swap.url}/v2/external/returns?{query}", headers={"X-API-Key": swap.api_key}
        )
        with urlopen(request, timeout=30) as response:
            body = json.loads(response.read())
        seen += [r["return_id"] for r in body["returns"]]
        if not body["pagination"]["has_next_page"]:
            break
        page += 1
    assert order[50] not in seen


@pytest.mark.slow  # runs the tap's executable (about a second each)
def test_child_streams_are_cut_from_each_return(swap: SwapEmulator) -> None:
    runner = select_all(config_for(swap))
    returns = runner.records["returns"]
    lines = [
        (r, item)
        for r in returns
        for shipment in r.get("return_shipments") or []
        for item in shipment.get("items") or []
    ]
    assert len(runner.records["return_items"]) == len(lines)
    refunded = [(r, i) for r, i in lines if i.get("refund_amount") is not None]
    assert len(runner.records["refunds"]) == len(refunded)
    restocked = [(r, i) for r, i in lines if (i.get("restock_quantity") or 0) > 0]
    assert len(runner.records["restocks"]) == len(restocked)
    for stream, key in (
        ("return_items", "return_item_id"),
        ("refunds", "refund_line_id"),
        ("restocks", "restock_id"),
    ):
        keys = [record[key] for record in runner.records[stream]]
        assert len(keys) == len(set(keys)), f"{stream} keys must be unique"
    partial = [r for r in runner.records["refunds"] if r["is_partial"]]
    assert partial, "the data set has partial refunds; the tap must flag them"
    for refund in partial:
        assert refund["amount"] < refund["line_total"]
    item = runner.records["return_items"][0]
    parent = next(r for r in returns if r["return_id"] == item["return_id"])
    assert item["customer_email"] == parent["customer_email"]
    assert item["return_status"] == parent["return_status"]


@pytest.mark.slow  # runs the tap's executable (about a second each)
def test_child_streams_keep_one_bookmark_each_not_one_per_return(swap: SwapEmulator) -> None:
    runner = select_all(config_for(swap))
    bookmarks = final_state(runner)["bookmarks"]
    # integration_exceptions is written as records are set aside: it keeps no bookmark.
    assert not bookmarks.pop("integration_exceptions", {}).get("replication_key_value")
    assert set(bookmarks) == {"returns", "return_items", "refunds", "restocks"}
    for stream, bookmark in bookmarks.items():
        assert "partitions" not in bookmark, stream
        assert bookmark["replication_key_value"], stream
    # A SCHEMA per page of returns at most, never one per return.
    schemas = Counter(m["stream"] for m in runner.messages if m["type"] == "SCHEMA")
    pages = sum(swap.request_counts.values())
    assert schemas["refunds"] <= pages < 300


@pytest.mark.slow  # runs the tap's executable (about a second each)
def test_second_run_emits_only_the_lookback_overlap_then_changes(swap: SwapEmulator) -> None:
    config = config_for(swap, lookback_minutes=15)
    first = sync(config)
    state = final_state(first)
    bookmark = state["bookmarks"]["returns"]["replication_key_value"]

    second = sync(config, state)
    again = second.records["returns"]
    assert len(again) < 300

    def parse(value: str) -> datetime:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))

    floor = parse(bookmark) - timedelta(minutes=15)
    assert all(parse(r["date_updated"]) >= floor for r in again)

    changed = swap.advance(count=20)
    third = sync(config, final_state(second))
    emitted = {r["return_id"] for r in third.records["returns"]}
    assert set(changed) <= emitted


@pytest.mark.slow  # waits on Retry-After, timeouts or back-off: seconds each
def test_429_and_5xx_are_retried_honouring_retry_after(swap: SwapEmulator) -> None:
    swap.faults.add(kind="status", status=429, retry_after=1, count=2)
    swap.faults.add(kind="status", status=503, count=1)
    swap.faults.add(kind="drop", count=1)
    runner = sync(config_for(swap))
    assert len(runner.records["returns"]) == 300
    assert swap.status_counts[429] == 2
    assert swap.status_counts[503] == 1


@pytest.mark.slow  # waits on Retry-After, timeouts or back-off: seconds each
def test_rate_limited_emulator_is_paced_by_retry_after() -> None:
    with SwapEmulator(
        returns=300,
        seed=5,
        now=SWAP_NOW,
        rate_limit_per_minute=3,
        time_scale=30,
        api_key="k",
        store_id="s",
    ) as swap:
        runner = sync(config_for(swap, page_size=20))
        assert len(runner.records["returns"]) == 300
        assert swap.status_counts[429] > 0


@pytest.mark.slow  # runs the tap's executable (about a second each)
@pytest.mark.parametrize(
    ("key", "store", "setting"),
    [("wrong-key-123", "store_test", "api_key"), ("swap_test_key", "other_store", "store_id")],
)
def test_auth_failure_stops_at_once_naming_the_setting(
    swap: SwapEmulator, tmp_path: Any, key: str, store: str, setting: str
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"api_url": swap.url, "api_key": key, "store_id": store}))
    result = subprocess.run(
        [*TAP, "--config", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert f"`{setting}`" in result.stderr
    assert key not in result.stderr.replace("`api_key`", "") or key == "swap_test_key"
    assert "wrong-key-123" not in result.stderr
    assert "wrong-key-123" not in result.stdout
    # Stopped at once: one request, no retries.
    assert sum(swap.request_counts.values()) == 1


@pytest.mark.slow  # runs the tap's executable (about a second each)
def test_dirty_records_are_reported_by_return_and_field_and_still_emitted() -> None:
    with SwapEmulator(
        returns=200,
        seed=2,
        now=SWAP_NOW,
        rate_limit_per_minute=None,
        malformed_every=25,
        api_key="k",
        store_id="s",
    ) as swap:
        runner = sync(config_for(swap))
        assert len(runner.records["returns"]) == 200
        reports = [line for line in runner.stderr.splitlines() if "does not match" in line]
        malformed = [
            r["return_id"] for r in runner.records["returns"] if isinstance(r.get("total"), str)
        ]
        assert malformed
        for return_id in malformed:
            assert any(return_id in m and "'total'" in m for m in reports), return_id
        # Values are never printed (they may be personal data): the type is.
        assert all("got str" in m for m in reports if "'total'" in m)


@pytest.mark.slow  # runs the tap's executable (about a second each)
def test_messy_but_valid_data_passes_the_schema(swap: SwapEmulator) -> None:
    runner = sync(config_for(swap))
    assert "does not match" not in runner.stderr
    emails = [r["customer_email"] for r in runner.records["returns"]]
    assert any(e is None for e in emails)
    assert any(isinstance(e, str) and e != e.strip() for e in emails)
