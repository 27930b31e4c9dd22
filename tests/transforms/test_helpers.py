"""The helpers every mapping expression can use, tested as plain Python functions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from jinja2.runtime import Undefined

from swap_transforms import helpers
from swap_transforms.sandbox import ENVIRONMENT, Expression, Scope, parse_expression
from tests.transforms.conftest import a_return, items_of


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Ana.Silva@Example.COM ", "ana.silva@example.com"),
        ("ana@example.com", "ana@example.com"),
        ("   ", ""),
        (None, None),
    ],
)
def test_normalize_email_trims_and_lower_cases(raw: str | None, expected: str | None) -> None:
    assert helpers.normalize_email(raw) == expected


def test_normalize_email_refuses_non_text_without_quoting_it() -> None:
    with pytest.raises(TypeError, match="expects a string, got int") as error:
        helpers.normalize_email(12345)
    assert "12345" not in str(error.value)


@pytest.mark.parametrize(
    ("address", "valid"),
    [
        ("ana@example.com", True),
        ("ana.silva+returns@example.co.uk", True),
        ("ana@example", False),
        ("ana example@example.com", False),
        ("ana@@example.com", False),
        ("no-at-sign", False),
        ("", False),
        (None, False),
        (42, False),
    ],
)
def test_is_valid_email_checks_syntax_only(address: object, valid: bool) -> None:
    assert helpers.is_valid_email(address) is valid


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (Decimal("2.675"), Decimal("2.68")),
        (Decimal("2.665"), Decimal("2.67")),
        (Decimal("-2.675"), Decimal("-2.68")),
        (2.675, Decimal("2.68")),  # a float rounds as written, not as its binary value 2.67499..
        (Decimal("0.005"), Decimal("0.01")),
        (7, Decimal("7.00")),
        ("19.999", Decimal("20.00")),
        (None, None),
    ],
)
def test_money_rounds_half_up_to_cents(amount: object, expected: Decimal | None) -> None:
    result = helpers.money(amount)
    assert result == expected
    if expected is not None:
        assert isinstance(result, Decimal)
        assert result.as_tuple().exponent == -2


@pytest.mark.parametrize("amount", [True, [1], {"a": 1}])
def test_money_refuses_non_numbers(amount: object) -> None:
    with pytest.raises(TypeError, match="money expects a number"):
        helpers.money(amount)


@pytest.mark.parametrize("amount", ["87,99", "NaN", "Infinity"])
def test_money_refuses_unusable_text_without_quoting_it(amount: str) -> None:
    with pytest.raises(ValueError, match="money expects") as error:
        helpers.money(amount)
    assert amount not in str(error.value)


def test_return_items_flattens_shipments_and_fills_missing_fields() -> None:
    record = a_return()
    record["return_shipments"].append(
        {"shipment_id": "shp_2", "items": [{"sku": "SCARF", "item_count": 2}]}
    )
    record["return_shipments"].append({"shipment_id": "shp_3", "items": None})
    items = helpers.return_items(record)
    assert [item["sku"] for item in items] == ["JKT-M-NAV", "CAP-OS-RED", "SCARF"]
    assert [item["shipment_id"] for item in items] == ["shp_100", "shp_100", "shp_2"]
    assert set(helpers.ITEM_FIELDS) <= set(items[2])
    assert items[2]["refunded_at"] is None
    assert items[2]["item_count"] == 2


def test_return_items_leaves_the_record_untouched() -> None:
    record = a_return()
    before = repr(record)
    items = helpers.return_items(record)
    items[0]["sku"] = "CHANGED"
    assert repr(record) == before
    assert "shipment_id" not in items_of(record)[0]


def test_return_items_of_a_return_without_shipments() -> None:
    assert helpers.return_items(a_return(return_shipments=None)) == []
    with pytest.raises(TypeError, match="expects a return object"):
        helpers.return_items(["not", "a", "return"])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-05-06T09:12:00Z", "2026-05-06T09:12:00Z"),
        ("2026-05-06T09:12:00.000Z", "2026-05-06T09:12:00Z"),
        ("2026-05-06T09:12:00.120+00:00", "2026-05-06T09:12:00.120Z"),
        ("2026-05-06T11:12:00.000001+02:00", "2026-05-06T09:12:00.000001Z"),
        ("2026-05-06T09:12:00", "2026-05-06T09:12:00Z"),
        (datetime(2026, 5, 6, 11, 12, tzinfo=timezone(timedelta(hours=2))), "2026-05-06T09:12:00Z"),
        (None, None),
    ],
)
def test_iso_gives_one_spelling_per_instant(raw: object, expected: str | None) -> None:
    assert helpers.iso_timestamp(raw) == expected


def test_iso_refuses_what_is_not_a_timestamp() -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        helpers.iso_timestamp("yesterday")
    with pytest.raises(TypeError, match="got int"):
        helpers.iso_timestamp(1714990320)


def test_stable_hash_is_stable_and_separates_its_parts() -> None:
    first = helpers.stable_hash("returns", "ret_1", None, "mapping_error")
    assert first == helpers.stable_hash("returns", "ret_1", None, "mapping_error")
    assert len(first) == 32
    assert int(first, 16) >= 0
    assert first != helpers.stable_hash("returns", "ret_1", "rule", "mapping_error")
    assert helpers.stable_hash("ab", "c") != helpers.stable_hash("a", "bc")
    assert len(helpers.stable_hash("x", length=12)) == 12
    with pytest.raises(ValueError, match="between 8 and 64"):
        helpers.stable_hash("x", length=4)


def test_coalesce_keeps_falsy_values_that_are_not_none() -> None:
    assert helpers.coalesce(None, 0, 5) == 0
    assert helpers.coalesce(None, "", "x") == ""
    assert helpers.coalesce(None, None) is None


# -- field_values: the chain `map(attribute=...) | reject('none') | list` in one call ----------


def _evaluate(source: str, **values: object) -> object:
    """An expression run in the mapping sandbox; failures come back as (type, message)."""
    try:
        result = Expression(parse_expression(source))(Scope(dict(values), {}, {}))
    except Exception as error:  # noqa: BLE001 - the failure is what is compared
        return (type(error).__name__, str(error))
    if isinstance(result, list):
        return [
            ("undefined", str(member._undefined_hint or member._undefined_name))
            if isinstance(member, Undefined)
            else member
            for member in result
        ]
    return result


@pytest.mark.parametrize(
    ("items", "field"),
    [
        ([{"sku": "A"}, {"sku": None}, {"sku": "B"}, {"sku": "A"}], "sku"),
        ([{"sku": "A"}, {"other": 1}], "sku"),  # a missing field stays as the chain keeps it
        ([{"n": 0}, {"n": False}, {"n": ""}, {"n": Decimal("1.5")}], "n"),  # only None dropped
        ([{"a": {"b": 1}}, {"a": {"b": None}}, {"a": {}}], "a.b"),  # dotted path
        ([["x", "y"], ["z"], []], "0"),  # an index, as map(attribute='0') reads it
        ([{"items": [1]}, {"keys": 2}], "items"),
        (["text", 3, None], "sku"),  # not objects
        (["abc"], "upper"),
        ([{"a": 1}], "__class__"),  # the sandbox's refusal, as the chain gives it
        ([], "sku"),
        (None, "sku"),
        (0, "sku"),
        ("ab", "sku"),
        (5, "sku"),
        ({"sku": "A"}, "sku"),  # a mapping iterates its keys
    ],
)
def test_field_values_gives_what_the_filter_chain_gives(items: object, field: str) -> None:
    chain = _evaluate(f"items | map(attribute={field!r}) | reject('none') | list", items=items)
    assert _evaluate(f"items | field_values({field!r})", items=items) == chain
    function = Scope({"items": items}, {}, dict(ENVIRONMENT.globals))
    try:
        called = Expression(parse_expression(f"field_values(items, {field!r})"))(function)
    except Exception as error:  # noqa: BLE001
        called = (type(error).__name__, str(error))
    if not isinstance(called, list) or not any(isinstance(v, Undefined) for v in called):
        assert called == chain


def test_field_values_of_an_undefined_list_fails_like_the_chain() -> None:
    chain = _evaluate("record.nope | map(attribute='sku') | reject('none') | list", record={})
    assert _evaluate("record.nope | field_values('sku')", record={}) == chain
    assert chain[0] == "UndefinedError"  # type: ignore[index]
