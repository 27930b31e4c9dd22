"""The Swap Returns API emulator, exercised over real HTTP on loopback with httpx."""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import phonenumbers
import pytest

from emulators.swap import (
    DELIVERY_STATUSES,
    LIST_PATH,
    OPEN_STATUSES,
    QUALITY_CONTROL_STATUSES,
    RETURN_STATUSES,
    RETURN_TYPES,
    SwapEmulator,
    add_swap_arguments,
    catalog,
    catalog_skus,
    swap_from_args,
)
from emulators.swap.people import INVALID_PHONE_EVERY

NOW = datetime(2026, 6, 1, tzinfo=UTC)
KEY = "swap_test_key"
STORE = "store_test"
OTHER_KEY = "swap_key_of_another_store"
CONTRACT = Path(__file__).resolve().parents[2].parent / "shared" / "swap-returns-api.md"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
DATE_FIELDS = (
    "date_created",
    "date_updated",
    "submission_date",
    "intention_date",
    "delivered_date",
    "date_closed",
)


def make(returns: int = 300, **kwargs: Any) -> SwapEmulator:
    settings: dict[str, Any] = {
        "seed": 7,
        "now": NOW,
        "api_key": KEY,
        "store_id": STORE,
        "rate_limit_per_minute": None,
    }
    settings.update(kwargs)
    return SwapEmulator(returns=returns, **settings)


@pytest.fixture(scope="module")
def big() -> Iterator[SwapEmulator]:
    """2,000 returns, only read: shared by the tests that do not change the data."""
    with make(2000, other_keys={OTHER_KEY: "store_other"}) as swap:
        yield swap


@pytest.fixture
def small() -> Iterator[SwapEmulator]:
    with make(300) as swap:
        yield swap


@pytest.fixture
def client(big: SwapEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=big.url, headers={"X-API-Key": KEY}, timeout=10) as http:
        yield http


def open_client(swap: SwapEmulator) -> httpx.Client:
    return httpx.Client(base_url=swap.url, headers={"X-API-Key": swap.api_key}, timeout=10)


def list_page(http: httpx.Client, **params: Any) -> dict[str, Any]:
    response = http.get(LIST_PATH, params={"swap_store_id": STORE, **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def fetch_all(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    page = 1
    while True:
        body = list_page(http, page=page, **params)
        rows.extend(body["returns"])
        if not body["pagination"]["has_next_page"]:
            return rows
        page += 1


@pytest.fixture(scope="module")
def everything(big: SwapEmulator) -> list[dict[str, Any]]:
    """The whole 2,000-return data set, read once through the API."""
    with open_client(big) as http:
        return fetch_all(http)


def items_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [item for shipment in record["return_shipments"] for item in shipment["items"]]


def order_key(record: dict[str, Any]) -> tuple[str, str]:
    return record["date_updated"], record["return_id"]


# -- auth and validation -------------------------------------------------------------------------


def assert_nest_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"statusCode", "message", "error"}
    assert body["statusCode"] == status
    assert body["error"] == error
    assert isinstance(body["message"], str)
    assert body["message"]


def test_missing_key_is_401(big: SwapEmulator) -> None:
    with httpx.Client(base_url=big.url, timeout=10) as http:
        response = http.get(LIST_PATH, params={"swap_store_id": STORE})
    assert_nest_error(response, 401, "Unauthorized")


def test_invalid_key_is_401_and_never_echoed(big: SwapEmulator) -> None:
    wrong = "swap_wrong_key_5f1c9e"
    with httpx.Client(base_url=big.url, headers={"X-API-Key": wrong}, timeout=10) as http:
        response = http.get(LIST_PATH, params={"swap_store_id": STORE})
    assert_nest_error(response, 401, "Unauthorized")
    assert wrong not in response.text
    assert KEY not in response.text


def test_key_of_another_store_is_403(big: SwapEmulator) -> None:
    with httpx.Client(base_url=big.url, headers={"X-API-Key": OTHER_KEY}, timeout=10) as http:
        response = http.get(LIST_PATH, params={"swap_store_id": STORE})
        assert_nest_error(response, 403, "Forbidden")
        own_store = http.get(LIST_PATH, params={"swap_store_id": "store_other"})
    assert own_store.status_code == 200
    assert own_store.json()["returns"] == []
    assert OTHER_KEY not in response.text


def test_wrong_store_id_is_403(client: httpx.Client) -> None:
    response = client.get(LIST_PATH, params={"swap_store_id": "store_someone_else"})
    assert_nest_error(response, 403, "Forbidden")


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"swap_store_id": ""},
        {"swap_store_id": STORE, "items_per_page": "101"},
        {"swap_store_id": STORE, "items_per_page": "0"},
        {"swap_store_id": STORE, "items_per_page": "ten"},
        {"swap_store_id": STORE, "page": "0"},
        {"swap_store_id": STORE, "page": "1.5"},
        {"swap_store_id": STORE, "last_RMA_updated_date": "yesterday"},
        {"swap_store_id": STORE, "from_return_submission_date": "2026-13-01"},
        {"swap_store_id": STORE, "api_version": "v1"},
    ],
)
def test_bad_parameters_are_400(client: httpx.Client, params: dict[str, str]) -> None:
    assert_nest_error(client.get(LIST_PATH, params=params), 400, "Bad Request")


def test_items_per_page_maximum_and_default(client: httpx.Client) -> None:
    assert len(list_page(client, items_per_page=100)["returns"]) == 100
    default = list_page(client)
    assert default["pagination"]["items_per_page"] == 100
    assert len(default["returns"]) == 100


# -- paging, ordering, filters --------------------------------------------------------------------


@pytest.mark.slow
def test_pagination_block_and_order(client: httpx.Client, big: SwapEmulator) -> None:
    first = list_page(client, page=1, items_per_page=75)
    assert first["version"] == "v2"
    assert first["query_params"] == {"swap_store_id": STORE, "page": "1", "items_per_page": "75"}
    assert first["pagination"] == {
        "page": 1,
        "items_per_page": 75,
        "total_pages": 27,  # 2,000 / 75, rounded up
        "total_items": 2000,
        "has_next_page": True,
    }
    rows = fetch_all(client, items_per_page=75)
    assert len(rows) == 2000
    assert len({row["return_id"] for row in rows}) == 2000
    assert rows == sorted(rows, key=order_key)
    assert rows == list(big.all_returns())
    last = list_page(client, page=27, items_per_page=75)
    assert len(last["returns"]) == 2000 - 26 * 75
    assert last["pagination"]["has_next_page"] is False
    beyond = list_page(client, page=28, items_per_page=75)
    assert beyond["returns"] == []
    assert beyond["pagination"]["has_next_page"] is False


def test_last_updated_date_is_on_or_after(
    client: httpx.Client, everything: list[dict[str, Any]]
) -> None:
    group, size = Counter(row["date_updated"] for row in everything).most_common(1)[0]
    assert size > 100
    rows = fetch_all(client, last_RMA_updated_date=group)
    expected = [row for row in everything if row["date_updated"] >= group]
    assert rows == expected
    assert sum(row["date_updated"] == group for row in rows) == size
    # Offsets and whole seconds name the same instant.
    moment = datetime.fromisoformat(group).astimezone(UTC)
    as_offset = moment.replace(tzinfo=None).isoformat() + "+00:00"
    assert list_page(client, last_RMA_updated_date=as_offset)["pagination"]["total_items"] == len(
        expected
    )


def test_filters(client: httpx.Client, everything: list[dict[str, Any]]) -> None:
    target = everything[500]
    by_rma = fetch_all(client, rma_number=target["rma_number"])
    assert [row["return_id"] for row in by_rma] == [target["return_id"]]
    by_order = fetch_all(client, shopify_order_name=target["shopify_order_name"])
    assert [row["return_id"] for row in by_order] == [target["return_id"]]

    email = next(
        row["customer_email"]
        for row in everything
        if row["customer_email"] and row["customer_email"] != row["customer_email"].strip()
    )
    expected = [
        row["return_id"]
        for row in everything
        if (row["customer_email"] or "").strip().lower() == email.strip().lower()
    ]
    by_email = fetch_all(client, customer_email=email.strip().upper())
    assert [row["return_id"] for row in by_email] == expected
    assert len(expected) >= 1

    start, end = "2026-03-01", "2026-03-10"
    in_range = fetch_all(client, from_return_submission_date=start, to_return_submission_date=end)
    expected_range = [
        row["return_id"]
        for row in everything
        if f"{start}T00:00:00.000Z" <= row["submission_date"] <= f"{end}T23:59:59.999Z"
    ]
    assert [row["return_id"] for row in in_range] == expected_range
    assert len(expected_range) > 50


# -- the data set ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_same_seed_same_data_other_seed_other_data(everything: list[dict[str, Any]]) -> None:
    with make(2000) as again, open_client(again) as http:
        assert fetch_all(http) == everything
    with make(2000, seed=8) as other, open_client(other) as http:
        first = list_page(http, items_per_page=50)["returns"]
    assert first != everything[:50]


def test_every_value_set_appears(everything: list[dict[str, Any]]) -> None:
    assert {row["return_status"] for row in everything} == set(RETURN_STATUSES)
    assert {row["delivery_status"] for row in everything} == set(DELIVERY_STATUSES)
    assert {kind for row in everything for kind in row["type"]} == set(RETURN_TYPES)
    assert {row["quality_control_status"] for row in everything} == set(QUALITY_CONTROL_STATUSES)
    assert {item["qc_status"] for row in everything for item in items_of(row)} == {
        "pending",
        "passed",
        "failed",
    }
    for row in everything:
        assert row["type_string"] == ", ".join(row["type"])
        assert all(ISO_MS.match(row[name]) for name in DATE_FIELDS if row[name] is not None)


def test_refunds_restocks_and_exchanges(everything: list[dict[str, Any]]) -> None:
    items = [item for row in everything for item in items_of(row)]
    refunded = [item for item in items if item["refund_amount"] is not None]
    full = [i for i in refunded if i["refund_amount"] == round(i["cost"] * i["item_count"], 2)]
    partial = [i for i in refunded if i["refund_amount"] < round(i["cost"] * i["item_count"], 2)]
    assert len(full) > 100
    assert len(partial) > 20
    assert all(item["refunded_at"] is not None for item in refunded)
    several_refund_times = [
        row
        for row in everything
        if len({item["refunded_at"] for item in items_of(row) if item["refunded_at"]}) > 1
    ]
    assert len(several_refund_times) > 10
    restocked = [item for item in items if item["restock_quantity"] > 0]
    assert len(restocked) > 100
    assert all(item["restocked_at"] and item["qc_status"] == "passed" for item in restocked)
    assert any(item["qc_status"] == "failed" for item in items)
    exchanges = [row for row in everything if "Exchange" in row["type"]]
    assert exchanges
    assert all(row["exchange_items"] for row in exchanges)
    split = [row for row in everything if len(row["return_shipments"]) > 1]
    assert split
    assert all(
        shipment["using_split_shipment"] for row in split for shipment in row["return_shipments"]
    )
    assert {item["sku"] for item in items} <= set(catalog_skus())


def test_dirty_data(everything: list[dict[str, Any]]) -> None:
    emails = [row["customer_email"] for row in everything]
    assert None in emails
    assert "" in emails
    assert "n/a" in emails
    assert any(email and email.endswith("@") for email in emails)
    assert any(email and email != email.strip() for email in emails)
    assert any(email and email.strip() != email.strip().lower() for email in emails)
    names = [row["customer_name"] for row in everything]
    assert any(re.search(r"[À-ÿĀ-ž]", name) for name in names)  # accents
    assert any(re.search(r"[\u4e00-\u9fff\uac00-\ud7af]", name) for name in names)  # CJK, Hangul
    assert any(re.search(r"[\U0001F300-\U0001FAFF\u2728]", name) for name in names)  # emoji
    money = (
        "handling_fee",
        "total_refund_value_customer_currency",
        "total_store_credit_value_customer_currency",
        "total_additional_payment",
        "total_refunded_duties",
    )
    assert any(row[name] is None for row in everything for name in money)


def test_phones_are_valid_numbers_but_a_known_share(everything: list[dict[str, Any]]) -> None:
    """Phones as customers type them: valid for their country (libphonenumber's example mobile
    number with drawn digits), except one draw in INVALID_PHONE_EVERY, too short to be valid."""
    phones = {
        address["phone"]
        for record in everything
        for address in (record["billing_address"], record["shipping_address"])
        if address and address.get("phone")
    }
    valid = set()
    for phone in phones:
        number = phonenumbers.parse(phone, None)
        if phonenumbers.is_valid_number(number):
            valid.add(phone)
            assert phonenumbers.region_code_for_number(number) is not None
    invalid = phones - valid
    assert valid
    assert invalid
    share = len(invalid) / len(phones)
    assert abs(share - 1 / INVALID_PHONE_EVERY) < 0.05, share
    # Which ones is known: the draws that are a multiple of INVALID_PHONE_EVERY.
    assert all(int(p.replace(" ", "")[-5:]) % INVALID_PHONE_EVERY == 0 for p in invalid)


def test_customers_return_several_times(everything: list[dict[str, Any]]) -> None:
    per_customer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in everything:
        email = (row["customer_email"] or "").strip().lower()
        if "@" in email and not email.endswith("@"):
            per_customer[email].append(row)
    assert sum(len(rows) >= 3 for rows in per_customer.values()) > 20
    open_twice = [
        email
        for email, rows in per_customer.items()
        if sum(row["return_status"] in OPEN_STATUSES for row in rows) >= 2
    ]
    assert open_twice


def test_shared_timestamp_groups(everything: list[dict[str, Any]]) -> None:
    groups = Counter(row["date_updated"] for row in everything)
    assert max(groups.values()) > 100
    assert sum(size > 1 for size in groups.values()) > 20


def test_dates_follow_the_lifecycle(everything: list[dict[str, Any]]) -> None:
    for row in everything:
        assert_lifecycle_dates(row)


def assert_lifecycle_dates(row: dict[str, Any]) -> None:
    submitted = row["submission_date"]
    delivered = row["delivered_date"]
    closed = row["date_closed"]
    item_dates = [
        item[name]
        for item in items_of(row)
        for name in ("refunded_at", "restocked_at")
        if item[name] is not None
    ]
    assert row["intention_date"] <= submitted == row["date_created"]
    if delivered is not None:
        assert submitted <= delivered
        assert all(delivered <= moment for moment in item_dates)
    else:
        assert not item_dates
    if closed is not None:
        assert submitted <= closed
        assert all(moment <= closed for moment in [delivered or submitted, *item_dates])
    present = [row[name] for name in DATE_FIELDS if row[name] is not None] + item_dates
    assert row["date_updated"] == max(present)
    assert (closed is None) == (row["return_status"] in OPEN_STATUSES)


def test_catalog() -> None:
    skus = catalog_skus()
    assert len(catalog()) == 60
    assert len(skus) == len(set(skus))
    assert all(re.match(r"^[A-Z]{3}-[A-Z]{2}-\w+-[A-Z]{3}$", sku) for sku in skus)


def test_malformed_every() -> None:
    with make(40, malformed_every=10) as swap, open_client(swap) as http:
        rows = fetch_all(http)
    broken = [row for row in rows if isinstance(row["total"], str)]
    assert len(broken) == 4
    for row in broken:
        assert re.match(r"^\d+,\d\d$", row["total"])
        assert isinstance(items_of(row)[0]["item_count"], str)
    assert all(isinstance(row["total"], float) for row in rows if row not in broken)


def test_matches_the_contract() -> None:
    if not CONTRACT.exists():
        pytest.fail(f"the Swap contract is missing: {CONTRACT} (../shared from the repo root)")
    text = CONTRACT.read_text(encoding="utf-8")

    def values(label: str) -> set[str]:
        """The backticked values of the bullet ``label``, up to its first full stop."""
        bullet = re.search(rf"^- `{re.escape(label)}`[^:]*:(.*?)\.(\s|$)", text, re.M | re.S)
        assert bullet, label
        return set(re.findall(r"`([^`]+)`", bullet.group(1)))

    assert values("return_status") == set(RETURN_STATUSES)
    assert values("delivery_status") == set(DELIVERY_STATUSES)
    assert values("type[]") == set(RETURN_TYPES)
    assert values("quality_control_status") == set(QUALITY_CONTROL_STATUSES)

    def names(start: str, end: str) -> set[str]:
        block = text.split(start, 1)[1].split(end, 1)[0]
        return {name.removesuffix("[]") for name in re.findall(r"`([a-z_\[\]]+)`", block)}

    fields = names("Documented fields:", "Value sets")
    shipment_fields = names("A shipment (`return_shipments[]`):", "\n\n")
    item_fields = names("An item (`return_shipments[].items[]`), documented:", "Item fields")
    assumed = text.split("Item fields [assumed]", 1)[1].split("Refunds and", 1)[0]
    item_fields |= set(re.findall(r"^- `([a-z_]+)`", assumed, flags=re.MULTILINE))
    assert "refund_amount" in item_fields
    with make(30) as swap:
        record = next(row for row in swap.all_returns() if row["return_shipments"])
    assert fields <= set(record)
    assert shipment_fields <= set(record["return_shipments"][0])
    assert item_fields <= set(items_of(record)[0])


# -- rate limits and faults -----------------------------------------------------------------------


@pytest.mark.slow
def test_rate_limit_answers_429_with_retry_after() -> None:
    # 3 a minute, with a minute lasting half a second.
    with make(20, rate_limit_per_minute=3, time_scale=120.0) as swap, open_client(swap) as http:
        statuses = [
            http.get(LIST_PATH, params={"swap_store_id": STORE}).status_code for _ in range(3)
        ]
        throttled = http.get(LIST_PATH, params={"swap_store_id": STORE})
        assert statuses == [200, 200, 200]
        assert_nest_error(throttled, 429, "Too Many Requests")
        retry_after = int(throttled.headers["Retry-After"])
        assert retry_after >= 1
        time.sleep(retry_after)
        assert http.get(LIST_PATH, params={"swap_store_id": STORE}).status_code == 200


def test_rate_limit_is_per_key() -> None:
    with (
        make(20, rate_limit_per_minute=1, time_scale=1.0, other_keys={OTHER_KEY: STORE}) as swap,
        open_client(swap) as http,
    ):
        assert http.get(LIST_PATH, params={"swap_store_id": STORE}).status_code == 200
        assert http.get(LIST_PATH, params={"swap_store_id": STORE}).status_code == 429
        other = http.get(
            LIST_PATH, params={"swap_store_id": STORE}, headers={"X-API-Key": OTHER_KEY}
        )
        assert other.status_code == 200


def test_fault_injection(small: SwapEmulator) -> None:
    with open_client(small) as http:
        small.faults.add(kind="status", status=429, retry_after=2, count=1)
        throttled = http.get(LIST_PATH, params={"swap_store_id": STORE})
        assert_nest_error(throttled, 429, "Too Many Requests")
        assert throttled.headers["Retry-After"] == "2"
        added = http.post("/_emulator/faults", json={"kind": "status", "status": 503})
        assert added.status_code == 201
        assert_nest_error(
            http.get(LIST_PATH, params={"swap_store_id": STORE}), 503, "Service Unavailable"
        )
        small.faults.add(kind="drop")
        with pytest.raises(httpx.RemoteProtocolError):
            http.get(LIST_PATH, params={"swap_store_id": STORE})
        assert http.get(LIST_PATH, params={"swap_store_id": STORE}).status_code == 200
    assert small.status_counts[429] == 1
    assert small.status_counts[503] == 1
    assert small.status_counts[0] == 1  # the dropped connection
    assert small.request_counts[f"GET {LIST_PATH}"] == 4


# -- driving the lifecycle ------------------------------------------------------------------------


def test_advance_moves_returns_on_and_to_the_end(small: SwapEmulator) -> None:
    before = {row["return_id"]: row for row in small.all_returns()}
    newest = max(row["date_updated"] for row in before.values())
    changed = small.advance(count=25)
    assert len(changed) == 25
    assert all(
        before[rid]["return_status"] not in ("Closed", "Cancelled", "Expired") for rid in changed
    )
    with open_client(small) as http:
        rows = fetch_all(http)
    assert [row["return_id"] for row in rows[-25:]] == changed
    stamp = rows[-1]["date_updated"]
    assert stamp > newest
    assert stamp == small.clock.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    for row in rows[-25:]:
        old = before[row["return_id"]]
        assert row["date_updated"] == stamp
        assert row["return_id"] == old["return_id"]
        assert row["total"] == old["total"]
        progressed = (
            row["return_status"] != old["return_status"]
            or row["delivery_status"] != old["delivery_status"]
            or row["quality_control_status"] != old["quality_control_status"]
            or row["rma_processed"] != old["rma_processed"]
            or items_of(row) != items_of(old)
        )
        assert progressed
        assert_lifecycle_dates(row)
    assert rows[:-25] == [before[row["return_id"]] for row in rows[:-25]]


def test_advance_is_deterministic_and_reaches_the_end() -> None:
    runs = []
    for _ in range(2):
        with make(120) as swap:
            steps = [swap.advance(count=10), swap.advance(fraction=0.5)]
            while changed := swap.advance(fraction=1.0):
                steps.append(changed)
            runs.append((steps, list(swap.all_returns())))
    assert runs[0] == runs[1]
    final = runs[0][1]
    assert {row["return_status"] for row in final} <= {"Closed", "Cancelled", "Expired"}
    for row in final:
        assert_lifecycle_dates(row)
    closed = [row for row in final if row["return_status"] == "Closed"]
    assert all(row["rma_processed"] and row["delivered_date"] for row in closed)


def test_touch_changes_only_date_updated(small: SwapEmulator) -> None:
    first_three = [row["return_id"] for row in list(small.all_returns())[:3]]
    before = [small.get_return(rid) for rid in first_three]
    small.touch(first_three)
    after = [small.get_return(rid) for rid in first_three]
    for old, new in zip(before, after, strict=True):
        assert new["date_updated"] > old["date_updated"]
        assert {**new, "date_updated": None} == {**old, "date_updated": None}
    # They share the new timestamp, so they close the order sorted by id.
    assert [row["return_id"] for row in small.all_returns()][-3:] == sorted(first_three)
    with pytest.raises(KeyError):
        small.touch(["000000000000000000000000"])


def test_create_return(small: SwapEmulator) -> None:
    clock_before = small.clock
    created = small.create_return(customer_email="New.Person@example.com")
    assert created["return_status"] == "Open"
    assert created["delivery_status"] == "Pre-Transit"
    assert created["customer_email"] == "New.Person@example.com"
    assert created["submission_date"] == created["date_updated"]
    assert datetime.fromisoformat(created["submission_date"]) > clock_before
    with open_client(small) as http:
        rows = fetch_all(http)
        assert rows[-1] == created
        assert len(rows) == 301
        fetched = http.get(f"/_emulator/returns/{created['return_id']}")
        assert fetched.status_code == 200
        assert fetched.json() == created
        assert http.get("/_emulator/returns/000000000000000000000000").status_code == 404
        over_http = http.post("/_emulator/returns", json={"customer_name": "Zoë 🌸"})
        assert over_http.status_code == 201
        assert over_http.json()["customer_name"] == "Zoë 🌸"
        assert http.post("/_emulator/returns", json={"return_id": "x"}).status_code == 400
        by_email = fetch_all(http, customer_email=" new.person@EXAMPLE.com")
        assert [row["return_id"] for row in by_email] == [created["return_id"]]
    assert small.advance(count=400)  # a created return moves on like any other
    assert small.get_return(created["return_id"])["delivery_status"] in (
        "In-Transit",
        "Pre-Transit",  # cancelled or expired
    )


def test_control_endpoints(small: SwapEmulator) -> None:
    with open_client(small) as http:
        stats = http.get("/_emulator/stats").json()
        assert stats["total_returns"] == 300
        assert sum(stats["by_status"].values()) == 300
        assert stats["by_status"] == dict(Counter(r["return_status"] for r in small.all_returns()))
        assert stats["clock"] == "2026-06-01T00:00:00.000Z"
        changed = http.post("/_emulator/advance", json={"count": 5}).json()["changed"]
        assert len(changed) == 5
        fraction = http.post("/_emulator/advance", json={"fraction": 0.1}).json()["changed"]
        assert fraction
        assert http.post("/_emulator/advance", json={"count": -1}).status_code == 400
        assert http.post("/_emulator/advance", json={}).status_code == 400
        touched = http.post("/_emulator/touch", json={"return_ids": changed[:2]})
        assert touched.status_code == 200
        assert [row["return_id"] for row in fetch_all(http)][-2:] == changed[:2]
        missing = http.post("/_emulator/touch", json={"return_ids": ["nope"]})
        assert missing.status_code == 404
        assert http.get("/_emulator/stats").json()["clock"] == "2026-06-01T00:00:03.000Z"


def test_update_during_paging_skips_a_row_when_paging_by_number(small: SwapEmulator) -> None:
    order = [row["return_id"] for row in small.all_returns()]
    moved = order[3]
    small.update_during_paging(after_requests=1, return_ids=[moved])
    with open_client(small) as http:
        seen = [row["return_id"] for row in fetch_all(http, items_per_page=10)]
    assert order[10] not in seen  # shifted back onto page 1 after it was read
    assert seen.count(moved) == 2  # read on page 1, then again at the end
    assert len(seen) == len(order)
    assert set(order) - set(seen) == {order[10]}


def test_update_during_paging_over_http(small: SwapEmulator) -> None:
    order = [row["return_id"] for row in small.all_returns()]
    with open_client(small) as http:
        scheduled = http.post(
            "/_emulator/update-during-paging",
            json={"after_requests": 2, "return_ids": [order[0], order[1]]},
        )
        assert scheduled.status_code == 202
        unknown = http.post(
            "/_emulator/update-during-paging", json={"after_requests": 1, "return_ids": ["x"]}
        )
        assert unknown.status_code == 404
        seen = [row["return_id"] for row in fetch_all(http, items_per_page=10)]
    # Touched after page 2: rows 20 and 21 slid onto page 2 unseen; rows 0 and 1 come twice.
    assert set(order) - set(seen) == {order[20], order[21]}
    assert seen[-2:] == order[:2]


# -- command line ---------------------------------------------------------------------------------


def test_cli_options_build_the_emulator() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--time-scale", type=float, default=1.0)
    add_swap_arguments(parser)
    args = parser.parse_args(
        [
            "--swap-returns=25",
            "--swap-seed=3",
            "--swap-api-key=cli_key",
            "--swap-store-id=cli_store",
            "--swap-rate-limit=0",
            "--swap-now=2026-06-01T00:00:00+00:00",
            "--time-scale=30",
        ]
    )
    swap = swap_from_args(args)
    assert swap.limiter is None
    with swap, open_client(swap) as http:
        body = http.get(LIST_PATH, params={"swap_store_id": "cli_store"}).json()
    assert body["pagination"]["total_items"] == 25
    limited = swap_from_args(parser.parse_args(["--swap-rate-limit=60", "--time-scale=30"]))
    assert limited.limiter is not None
    assert limited.limiter.limits == [(60, 2.0)]
