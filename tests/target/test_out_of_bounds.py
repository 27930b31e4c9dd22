"""The contract's bounds: a record outside is set aside naming the field, on SQLite and PostgreSQL.

Each case goes through the ``target-klaviyo`` executable among good records: the bad one is
recorded as ``invalid_record`` / ``out_of_bounds``, every good one is delivered, STATE is
emitted, the next run delivers new records, and the log holds none of the personal data used.
The ledger stores whatever a record holds (NUL, lone surrogates, overlong ids) without
``DataError``. Both kinds of ledger make these the project's tests; URL budgets and hidden
parameters are the plugin's own (target-klaviyo/tests/test_lookup_urls.py).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from target_klaviyo.ledger import Outcome
from tests.support.ledger import migrated_ledger
from tests.support.target import (
    EVENTS,
    EXCEPTIONS,
    PROFILES,
    VARIANTS,
    event,
    exception,
    iso,
    ledger_rows,
    now,
    properties_of,
    restock,
    run_cli,
    singer,
    state,
    states_of,
    update,
)

T1 = "2026-02-01T10:00:00+00:00"
SECRET = "zoe.quixote"
LONG_EMAIL = SECRET + "x" * 250 + "@example.org"


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_at(request, config, ledger_path):
    """Where this test's runs keep their ledger: its SQLite file, or a PostgreSQL database URL."""
    if request.param == "sqlite":
        return ledger_path
    config["ledger_url"] = request.getfixturevalue("postgres_db")
    return config["ledger_url"]


def _nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        value = {"in": value}
    return value


def _with(item: tuple[str, dict[str, Any]], **changes: Any) -> tuple[str, dict[str, Any]]:
    stream, record = item
    return stream, {**record, **changes}


#: (stream, key) -> (the record, the start of its ledger detail)
CASES: dict[tuple[str, str], tuple[tuple[str, dict[str, Any]], str]] = {
    (EVENTS, "long-email"): (event("long-email", LONG_EMAIL), "profile.email: fails 'maxLength'"),
    (EVENTS, "old-time"): (event("old-time", time="1999-12-31T23:00:00+00:00"), "time: before"),
    (EVENTS, "future-time"): (
        event("future-time", time=iso(now() + timedelta(days=3))),
        "time: more than a day after",
    ),
    (EVENTS, "huge-value"): (event("huge-value", value=10**13), "value: fails 'maximum'"),
    (EVENTS, "beyond-a-double"): (
        event("beyond-a-double", value=10**400),
        "value: fails 'maximum'",
    ),
    (EVENTS, "deep"): (
        event("deep", properties={"x": _nested(12)}),
        "properties: nested deeper than 10 levels",
    ),
    (EVENTS, "many"): (
        event("many", properties={f"p{i}": i for i in range(401)}),
        "properties: fails 'maxProperties' (400)",
    ),
    (EVENTS, "long-source"): (
        _with(event("long-source"), source_id="r" * 300),
        "source_id: fails 'maxLength' (255)",
    ),
    (PROFILES, "u-9999"): (
        update("u-9999", "ana@example.com", as_of="9999-01-01T00:00:00+00:00", properties={"a": 1}),
        "as_of: more than a day after",
    ),
    (PROFILES, "u-name"): (
        update("u-name", "bob@example.com", as_of=T1, append={"n" * 200: ["R-1"]}),
        "append: a property name longer than 128",
    ),
    (PROFILES, "u-value"): (
        update("u-value", "bob@example.com", as_of=T1, append={"swap_open_returns": ["R" * 300]}),
        "append.swap_open_returns.0: fails 'maxLength' (255)",
    ),
    (VARIANTS, "r-long"): (
        _with(restock("r-long", "A", 1), variant_id="$custom:::$default:::" + "S" * 300),
        "variant_id: fails 'maxLength' (255)",
    ),
    (VARIANTS, "r-negative"): (restock("r-negative", "A", -5), "inventory_delta: would leave"),
    (EXCEPTIONS, "x-reason"): (
        _with(exception("x-reason"), reason="r" * 200),
        "reason: fails 'maxLength' (128)",
    ),
}


def _input(extra: list[Any]) -> str:
    items: list[Any] = [event("g-0", "cid@example.com")]
    for index, (item, _) in enumerate(CASES.values(), start=1):
        items += [item, event(f"g-{index}", "cid@example.com")]
    # Good records of each stream: an update of the profile the 9999 one would have frozen, a
    # restock lowering inventory within bounds, one whose source_id holds a NUL byte.
    items += [
        update("u-later", "ana@example.com", as_of=T1, properties={"a": 2}),
        restock("r-lower", "B", -2),
        _with(event("nul-source", "cid@example.com"), source_id="ret-\x00-1"),
        *extra,
    ]
    return singer(items)


@pytest.mark.slow
def test_each_out_of_bounds_record_is_set_aside_naming_its_field(
    klaviyo, config, ledger_at, tmp_path
):
    klaviyo.add_variants(["A"], inventory=2)
    klaviyo.add_variants(["B"], inventory=5)
    first = run_cli(config, _input([state({"bookmark": 1})]), tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert states_of(first.stdout) == [{"bookmark": 1}]

    rows = {(r["stream"], r["record_key"]): r for r in ledger_rows(ledger_at)}
    for (stream, key), (_, detail) in CASES.items():
        row = rows[(stream, key)]
        assert (row["outcome"], row["reason"]) == ("invalid_record", "out_of_bounds"), key
        assert row["detail"].startswith(detail), (key, row["detail"])
    delivered = {e["unique_id"] for e in klaviyo.events()}
    assert delivered == {f"g-{i}" for i in range(len(CASES) + 1)} | {"nul-source"}
    assert rows[(EVENTS, "nul-source")]["source_id"] == "ret-\ufffd-1"
    # The 9999 update froze nothing: the next one applied; inventory never went below zero.
    assert properties_of(klaviyo, "ana@example.com") == {"a": 2}
    assert klaviyo.variant("$custom:::$default:::A")["inventory_quantity"] == 2
    assert klaviyo.variant("$custom:::$default:::B")["inventory_quantity"] == 3
    assert SECRET not in first.stderr

    second = run_cli(
        config, singer([event("next", "dan@example.com"), state({"bookmark": 2})]), tmp_path
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert states_of(second.stdout) == [{"bookmark": 2}]
    assert "next" in {e["unique_id"] for e in klaviyo.events()}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_ledger_stores_nul_surrogates_and_overlong_values(request, tmp_path, backend):
    url = (
        f"sqlite:///{tmp_path / 'ledger.sqlite'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_db")
    )
    ledger = migrated_ledger(url)
    try:
        ledger.record(
            [
                Outcome(
                    stream="s" * 100,
                    record_key="k\x00" * 200,
                    outcome="invalid_record",
                    reason="r" * 200,
                    detail="broken \ud83d and \x00",
                    metric="m" * 200,
                    source_id="a\x00b" + "s" * 300,
                    source_time=datetime.fromisoformat("0001-01-01T00:00:00+05:00"),
                    event_time=datetime.fromisoformat("9999-12-31T23:59:59-05:00"),
                    payload={"note": "\x00\ud800"},
                )
            ]
        )
    finally:
        ledger.close()
    [row] = ledger_rows(url if backend == "postgresql" else tmp_path / "ledger.sqlite")
    assert (len(row["stream"]), len(row["record_key"]), len(row["reason"])) == (64, 255, 128)
    assert (len(row["metric"]), len(row["source_id"])) == (128, 255)
    assert row["source_id"].startswith("a\ufffdb")
    assert row["detail"] == "broken \ufffd and \ufffd"
    assert json.loads(row["payload"]) == {"note": "\x00\ud800"}, "kept exactly, as JSON escapes"
    # Years 1 and 9999 with an offset: PostgreSQL stores them, Python could not read them back.
    assert (row["source_time"], row["event_time"]) == (None, None)
