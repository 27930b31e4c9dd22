"""The helpers every mapping expression can use, tested as plain Python functions."""

from __future__ import annotations

import random
import string
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from email_validator import EmailNotValidError, validate_email
from jinja2.runtime import Undefined

from swap_transforms import helpers
from swap_transforms.sandbox import ENVIRONMENT, Expression, Scope, parse_expression
from tests.support import a_return, items_of


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


# -- is_valid_email: a cheaper path for plain addresses, the same verdicts --------------------


def _reference_verdict(address: str) -> bool:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def _tricky_addresses() -> list[str]:
    label63 = "b" * 63
    fixed = [
        "ana@example.com", "Ana.Silva@Example.COM", "a+b@example.co.uk", "info@example.com",
        "a@b.co", "a@b", "a@localhost", "x@foo.local", "x@foo.test", "x@foo.invalid",
        "x@example.arpa", "x@onion", "x@foo.onion", "x@xn--bcher-kva.ch", "x@xn--zz.com",
        "x@xn--e1afmkfd.xn--p1ai", "a@ab--cd.com", "ab--cd@example.com", "a..b@example.com",
        ".a@example.com", "a.@example.com", "a@-example.com", "a@example-.com", "a@exa_mple.com",
        "a@ex..ample.com", "a@example.c0m", "a@example.123", "a@1.2.3.4", "a@[1.2.3.4]",
        "a@[IPv6:::1]", "a@example.com.", "a@.example.com", "a#b@example.com",
        "a/b=c@example.com", "a%b@example.com", "a\\b@example.com", "a@@example.com",
        "@example.com", "a@", "@", "", " ", "a b@example.com", "a@ex ample.com",
        " a@example.com", "a@example.com ", "a\t@example.com", "a@example.com\n",
        '"quoted"@example.com', '"a b"@example.com', "Name <n@example.com>", "<n@example.com>",
        "n@example.com>", "a>b@example.com", "a@exa>mple.com", "a(b)@example.com",
        "a@example.(com)", "a,b@example.com", "a;b@example.com", "a:b@example.com",
        "jöhn@example.com", "user@münchen.de", "тест@пример.рф", "\uff21\uff22@example.com",
        "a@\uff45xample.com", "a\u200b@example.com", "a@exa\u200bmple.com", "a@example.co\u0301m",
        "a" * 64 + "@example.com", "a" * 65 + "@example.com", f"a@{label63}.com",
        f"a@{'b' * 64}.com", "a@" + ".".join([label63] * 3) + ".com",
        "a@" + ".".join([label63] * 4) + ".com", "x" * 240 + "@example.com",
        "x" * 242 + "@example.com", "x" * 243 + "@example.com", "x" * 250 + "@example.com",
        "x" * 10 + "@" + ".".join([label63] * 3) + "." + "c" * 50,
        "x" * 60 + "@" + ".".join(["b" * 60] * 3) + ".com",
        "x" * 2 + "@" + ".".join(["b" * 61] * 4),
        "a@XN--BCHER-KVA.ch", "a@xn--bcher-kva.ch." , "postmaster@example.com",
        "a@sub.domain.example.museum", "a@e.x", "a@example.c", "a@example.co-m",
        "a@123.com", "a@-.com", "a@a-.b", "a@a.b-", "a@a.-b",
    ]  # fmt: skip
    rng = random.Random(20260601)
    alphabet = string.ascii_letters + string.digits + ".-_+@\"<>()[]\\ é!#$%&'*/=?^`{|}~,;:"
    generated = []
    for _ in range(3000):
        local = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        domain = ".".join(
            "".join(rng.choice(string.ascii_lowercase + string.digits + "-_") for _ in range(n))
            for n in (rng.randint(0, 6) for _ in range(rng.randint(1, 3)))
        )
        generated.append(f"{local}@{domain}")
        generated.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))))
    for _ in range(500):  # around the length limits
        local = "l" * rng.randint(1, 80)
        labels = ["d" * rng.randint(1, 63) for _ in range(rng.randint(1, 5))]
        generated.append(f"{local}@{'.'.join(labels)}.com")
    return fixed + generated


@pytest.mark.slow
def test_is_valid_email_agrees_with_email_validator() -> None:
    addresses = _tricky_addresses()
    disagreements = [
        address
        for address in addresses
        if helpers.is_valid_email(address) is not _reference_verdict(address)
    ]
    assert disagreements == []
    verdicts = {_reference_verdict(address) for address in addresses}
    assert verdicts == {True, False}  # both kinds were exercised


# -- iso: cached per text, same values and errors ---------------------------------------------


def test_iso_gives_the_same_results_and_errors_when_called_again() -> None:
    for _ in range(2):
        assert helpers.iso_timestamp("2026-05-06T09:12:00.000Z") == "2026-05-06T09:12:00Z"
        assert helpers.iso_timestamp(" 2026-05-06T11:12:00+02:00 ") == "2026-05-06T09:12:00Z"
        with pytest.raises(ValueError, match="iso expects an ISO 8601 timestamp"):
            helpers.iso_timestamp("2026-13-45T00:00:00Z")
        with pytest.raises(TypeError, match="got list"):
            helpers.iso_timestamp(["2026-05-06T09:12:00Z"])


def test_iso_of_utc_text_matches_the_general_conversion() -> None:
    rng = random.Random(7)
    samples = [
        "2026-02-30T10:00:00Z", "2026-13-01T10:00:00Z", "2026-01-01T24:00:00Z",
        "2026-01-01T23:59:60Z", "2024-02-29T12:00:00.000Z", "2023-02-29T12:00:00.000Z",
        "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z", "2026-01-01t10:00:00Z",
        "2026-01-01T10:00:00z", "2026-01-01T10:00:00.0Z", "2026-01-01T10:00:00.0000Z",
        " 2026-01-01T10:00:00Z", "2026-01-01T10:00:00Z\n", "2026-01-01 10:00:00Z",
        "\uff12\uff10\uff12\uff16-01-01T10:00:00Z", "2026-01-01T10:00Z", "2026-01-01T10:00:00.000",
    ]  # fmt: skip
    for _ in range(3000):
        moment = datetime(2000, 1, 1, tzinfo=timezone.utc) + timedelta(
            seconds=rng.randint(0, 40 * 365 * 86400), microseconds=rng.randint(0, 999_999)
        )
        text = moment.strftime("%Y-%m-%dT%H:%M:%S")
        fraction = rng.choice(["", ".000", f".{moment.microsecond // 1000:03d}",
                               f".{moment.microsecond:06d}", ".5"])  # fmt: skip
        samples.append(text + fraction + rng.choice(["Z", "+00:00", "+02:00", ""]))
    for sample in samples:
        try:
            expected: object = helpers._iso(sample)
        except ValueError as error:
            expected = str(error)
        try:
            got: object = helpers.iso_timestamp(sample)
        except ValueError as error:
            got = str(error)
        assert got == expected, sample
