"""The engine on small mappings: value types, fan-out, definitions, includes, run-time failures."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from swap_transforms.engine import MappingEngine, mask
from swap_transforms.errors import MappingFileError
from swap_transforms.helpers import stable_hash
from tests.support import (
    DEFAULT_MAPPING,
    FIXED_NOW,
    TRANSFORMS,
    MappingWriter,
    a_return,
    as_sdk_record,
    clock,
)

EngineFor = Callable[[str], MappingEngine]


def plain(outputs: list[tuple[str, dict]]) -> list[dict]:
    return [record for stream, record in outputs if stream == "plain"]


def unplaced(detail: str) -> str:
    """A rule failure's detail without its `(at file:line)` suffix."""
    return re.sub(r" \(at [^()]+:\d+\)$", "", detail)


def exceptions(outputs: list[tuple[str, dict]]) -> list[dict]:
    return [record for stream, record in outputs if stream == "integration_exceptions"]


def test_values_keep_their_native_types(engine_for: EngineFor) -> None:
    engine = engine_for("""
        streams:
          returns:
            key: return_id
            rules:
              - name: types
                emit:
                  plain:
                    id: "{{ record.return_id }}"
                    total: "{{ record.total }}"
                    rounded: "{{ record.total | money }}"
                    count: "{{ record.return_shipments | length }}"
                    types: "{{ record.type }}"
                    first_shipment: "{{ record.return_shipments[0].shipment_id }}"
                    processed: "{{ record.rma_processed }}"
                    missing_or_none: "{{ record.intention_date and none }}"
                    literal_int: 3
                    literal_float: 0.5
                    literal_bool: false
                    literal_null: null
                    literal_text: Return Started
                    text: "swap:{{ record.return_id }}:{{ record.total }}"
                    nested:
                      list: ["{{ record.rma_number }}", 2, "x-{{ record.rma_number }}"]
                      object: {status: "{{ record.return_status }}"}
                    address: "{{ {'carrier': record.shipping_carrier, 'ids': [1, 2]} }}"
    """)
    [record] = plain(engine.map_record("returns", a_return()))
    assert record == {
        "id": "ret_100",
        "total": Decimal("80.5"),
        "rounded": Decimal("80.50"),
        "count": 1,
        "types": ["Refund"],
        "first_shipment": "shp_100",
        "processed": True,
        "missing_or_none": None,
        "literal_int": 3,
        "literal_float": 0.5,
        "literal_bool": False,
        "literal_null": None,
        "literal_text": "Return Started",
        "text": "swap:ret_100:80.5",
        "nested": {"list": ["SW-100", 2, "x-SW-100"], "object": {"status": "Closed"}},
        "address": {"carrier": "DHL", "ids": [1, 2]},
    }
    assert type(record["rounded"]) is Decimal
    assert type(record["count"]) is int


def test_float_literals_mix_with_decimal_numbers(engine_for: EngineFor) -> None:
    engine = engine_for("""
        streams:
          returns:
            key: return_id
            rules:
              - name: arithmetic
                emit:
                  plain:
                    id: x
                    discounted: "{{ (record.total * 0.9) | money }}"
                    plus: "{{ 0.25 + record.total }}"
                    ratio: "{{ record.total / 2 }}"
    """)
    [record] = plain(engine.map_record("returns", a_return(total=10.0)))
    assert record["discounted"] == Decimal("9.00")
    assert record["plus"] == Decimal("10.25")
    assert record["ratio"] == Decimal("5")


def test_rule_for_each_fans_out_with_a_per_item_condition(engine_for: EngineFor) -> None:
    engine = engine_for("""
        definitions:
          items: "record | return_items"
        streams:
          returns:
            key: return_id
            rules:
              - name: per_item
                for_each: "item in items"
                when: "item.restock_quantity > 0"
                emit:
                  plain:
                    id: "{{ record.return_id }}:{{ item.shopify_line_item_id }}"
                    sku: "{{ item.sku }}"
                  klaviyo_events:
                    unique_id: "restock:{{ item.sku }}"
                    metric: Item Restocked
                    profile: {email: someone@example.org}
                    time: "{{ record.date_updated }}"
                    properties: {Quantity: "{{ item.restock_quantity }}"}
    """)
    record = a_return()
    record["return_shipments"][0]["items"][1]["restock_quantity"] = 0
    record["return_shipments"].append(
        {
            "shipment_id": "s2",
            "items": [{"shopify_line_item_id": "l3", "sku": "S3", "restock_quantity": 2}],
        }
    )
    outputs = engine.map_record("returns", record)
    assert [(stream, rec.get("id") or rec.get("unique_id")) for stream, rec in outputs] == [
        ("plain", "ret_100:l1"),
        ("klaviyo_events", "restock:JKT-M-NAV"),
        ("plain", "ret_100:l3"),
        ("klaviyo_events", "restock:S3"),
    ]
    assert outputs[3][1]["properties"] == {"Quantity": 2}


def test_value_for_each_builds_nested_lists(engine_for: EngineFor) -> None:
    engine = engine_for("""
        streams:
          returns:
            key: return_id
            rules:
              - name: nested
                emit:
                  plain:
                    id: x
                    Shipments:
                      for_each: "shipment in record.return_shipments"
                      value:
                        Id: "{{ shipment.shipment_id }}"
                        Items:
                          for_each: "item in shipment['items']"
                          when: "item.cost > 40"
                          value:
                            SKU: "{{ item.sku }}"
                            Shipment: "{{ shipment.shipment_id }}"
                            Return: "{{ record.return_id }}"
                    Skus:
                      for_each: "item in record.return_shipments[0]['items']"
                      value: "{{ item.sku | lower }}"
    """)
    record = a_return()
    record["return_shipments"].append({"shipment_id": "s2", "items": []})
    [result] = plain(engine.map_record("returns", record))
    assert result["Shipments"] == [
        {
            "Id": "shp_100",
            "Items": [{"SKU": "JKT-M-NAV", "Shipment": "shp_100", "Return": "ret_100"}],
        },
        {"Id": "s2", "Items": []},
    ]
    assert result["Skus"] == ["jkt-m-nav", "cap-os-red"]


def test_definitions_are_shared_lazy_and_may_use_each_other(engine_for: EngineFor) -> None:
    engine = engine_for("""
        definitions:
          email: "record.customer_email | normalize_email"
          domain: "email.split('@')[1]"
          never_used: "record.no_such_field.deeper"
          skus:
            for_each: "item in record | return_items"
            value: "{{ item.sku }}"
        streams:
          returns:
            key: return_id
            rules:
              - name: one
                emit: {plain: {id: "{{ email }}", domain: "{{ domain }}"}}
              - name: two
                emit: {plain: {id: two, skus: "{{ skus }}", again: "{{ domain | upper }}"}}
    """)
    outputs = engine.map_record("returns", a_return())
    # `never_used` would fail on this record: being lazy, it is never computed.
    assert exceptions(outputs) == []
    assert plain(outputs) == [
        {"id": "maria.lopez@example.org", "domain": "example.org"},
        {"id": "two", "skus": ["JKT-M-NAV", "CAP-OS-RED"], "again": "EXAMPLE.ORG"},
    ]


def test_a_failing_definition_fails_each_rule_that_uses_it(engine_for: EngineFor) -> None:
    engine = engine_for("""
        definitions:
          carrier: "record.shipping_carrier | lower"
        streams:
          returns:
            key: return_id
            rules:
              - name: uses_it
                emit: {plain: {id: "{{ carrier }}"}}
              - name: independent
                emit: {plain: {id: ok}}
              - name: uses_it_too
                emit: {plain: {id: "x", c: "{{ carrier }}"}}
    """)
    record = a_return()
    del record["shipping_carrier"]
    outputs = engine.map_record("returns", record)
    assert plain(outputs) == [{"id": "ok"}]
    failures = exceptions(outputs)
    assert [failure["rule"] for failure in failures] == ["uses_it", "uses_it_too"]
    for failure in failures:
        assert failure["reason"] == "mapping_error"
        assert "definition 'carrier'" in failure["detail"]
        assert "shipping_carrier" in failure["detail"]


def test_included_definitions(write_mapping: MappingWriter, tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "base.yml").write_text(
        'version: 1\ninclude: [more.yml]\ndefinitions:\n  rma: "record.rma_number"\n'
    )
    (tmp_path / "shared" / "more.yml").write_text(
        "version: 1\ndefinitions:\n  loud_rma: \"rma | lower ~ '!'\"\n"
    )
    path = write_mapping("""
        version: 1
        include: [shared/base.yml]
        outputs:
          integration_exceptions:
            key_properties: [exception_id]
            schema: schemas/integration_exceptions.json
          klaviyo_events: {key_properties: [unique_id], schema: schemas/klaviyo_events.json}
        definitions:
          label: "'RMA ' ~ rma"
        streams:
          returns:
            key: return_id
            rules:
              - name: uses_included
                emit:
                  klaviyo_events:
                    unique_id: "{{ label }} {{ loud_rma }}"
                    metric: m
                    profile: {external_id: "{{ rma }}"}
                    time: "2026-01-01T00:00:00Z"
                    properties: {}
    """)
    engine = MappingEngine.from_files([str(path)], clock=clock)
    [(stream, record)] = engine.map_record("returns", a_return())
    assert (stream, record["unique_id"]) == ("klaviyo_events", "RMA SW-100 sw-100!")


def test_streams_without_rules_produce_nothing(engine_for: EngineFor) -> None:
    engine = engine_for("""
        streams:
          returns:
            key: return_id
            rules: [{name: r, emit: {plain: {id: x}}}]
    """)
    assert engine.handles("returns")
    assert not engine.handles("refunds")
    assert engine.map_record("refunds", {"id": 1}) == []
    assert engine.output_streams("returns") == ["plain", "integration_exceptions"]


def test_checks_reject_the_record_and_stop_its_rules(engine_for: EngineFor) -> None:
    engine = engine_for("""
        definitions:
          email: "record.customer_email | default(none) | normalize_email"
        streams:
          returns:
            key: return_id
            updated_at: date_updated
            checks:
              - reason: missing_email
                when: "not email"
                detail: "return {{ record.rma_number }} has no e-mail"
              - reason: invalid_email
                when: "email is not valid_email"
            rules:
              - name: r
                emit: {plain: {id: "{{ email }}"}}
    """)
    [(stream, rejected)] = engine.map_record("returns", a_return(customer_email=" "))
    assert stream == "integration_exceptions"
    assert rejected == {
        "exception_id": stable_hash("returns", "ret_100", None, "missing_email"),
        "source_stream": "returns",
        "source_key": "ret_100",
        "rule": None,
        "reason": "missing_email",
        "detail": "return SW-100 has no e-mail",
        "source_updated_at": "2026-03-06T16:00:00Z",
        "occurred_at": FIXED_NOW,
    }
    [(_, invalid)] = engine.map_record("returns", a_return(customer_email="maria@"))
    assert (invalid["reason"], invalid["detail"]) == ("invalid_email", None)
    [(stream, ok)] = engine.map_record("returns", a_return())
    assert (stream, ok) == ("plain", {"id": "maria.lopez@example.org"})


def test_a_failing_rule_becomes_an_exception_and_others_still_run(
    engine_for: EngineFor, caplog: pytest.LogCaptureFixture
) -> None:
    engine = engine_for("""
        streams:
          returns:
            key: return_id
            updated_at: date_updated
            rules:
              - name: before
                emit: {plain: {id: before}}
              - name: broken
                emit:
                  plain:
                    id: broken
                    nested: {deeper: {value: "{{ record.no_such_field }}"}}
              - name: type_error
                emit: {plain: {id: "{{ record.total + 'x' }}"}}
              - name: after
                emit: {plain: {id: after}}
    """)
    caplog.set_level(logging.WARNING, logger="swap_transforms")
    outputs = engine.map_record("returns", a_return())
    assert plain(outputs) == [{"id": "before"}, {"id": "after"}]
    broken, type_error = exceptions(outputs)
    assert broken["rule"] == "broken"
    assert broken["reason"] == "mapping_error"
    assert broken["detail"].startswith("field 'nested.deeper.value': ")
    assert "no attribute 'no_such_field'" in broken["detail"]
    assert broken["exception_id"] == stable_hash("returns", "ret_100", "broken", "mapping_error")
    assert broken["source_updated_at"] == "2026-03-06T16:00:00Z"
    assert broken["occurred_at"] == FIXED_NOW
    assert type_error["detail"].startswith("field 'id': unsupported operand type")
    assert len(caplog.records) == 2
    assert "returns ret_100 rejected by rule 'broken': mapping_error" in caplog.records[0].message
    assert "maria" not in caplog.text.lower()
    # The same failure on a second run has the same id: the target records it once.
    again = exceptions(engine.map_record("returns", a_return()))
    assert [failure["exception_id"] for failure in again] == [
        broken["exception_id"],
        type_error["exception_id"],
    ]


def test_a_failing_item_of_a_for_each_only_loses_that_item(engine_for: EngineFor) -> None:
    engine = engine_for("""
        streams:
          returns:
            key: return_id
            rules:
              - name: items
                for_each: "item in record | return_items"
                emit: {plain: {id: "{{ item.sku }}", price: "{{ item.cost | money }}"}}
    """)
    record = a_return()
    record["return_shipments"][0]["items"][0]["cost"] = "fifty"
    outputs = engine.map_record("returns", record)
    assert plain(outputs) == [{"id": "CAP-OS-RED", "price": Decimal("30.25")}]
    [failure] = exceptions(outputs)
    assert failure["detail"] == (
        "item 0: field 'price': money expects a number, got a non-numeric string (ValueError)"
        f" (at {engine.programs[0].file}:16)"
    )
    # Items failing alike give one exception (its id is per rule and reason), the first one.
    record["return_shipments"][0]["items"][1]["cost"] = [1]
    outputs = engine.map_record("returns", record)
    assert plain(outputs) == []
    [failure] = exceptions(outputs)
    assert failure["detail"].startswith("item 0: ")


def test_failures_in_conditions_and_lists_are_located(engine_for: EngineFor) -> None:
    engine = engine_for("""
        streams:
          returns:
            key: return_id
            rules:
              - name: bad_when
                when: "record.nope == 1"
                emit: {plain: {id: x}}
              - name: bad_list
                for_each: "x in record.return_status"
                emit: {plain: {id: x}}
              - name: bad_nested_item
                emit:
                  plain:
                    id: x
                    Items:
                      for_each: "item in record | return_items"
                      value: {SKU: "{{ item.sku }}", Bad: "{{ item.cost.nothing }}"}
    """)
    details = {e["rule"]: e["detail"] for e in exceptions(engine.map_record("returns", a_return()))}
    assert details["bad_when"].startswith("when: ")
    assert unplaced(details["bad_list"]) == "for_each: for_each expects a list, got str (TypeError)"
    assert details["bad_nested_item"].startswith("field 'Items' item 0: field 'Items[].Bad': ")


def test_output_that_breaks_its_schema_is_an_invalid_output_exception(
    engine_for: EngineFor,
) -> None:
    engine = engine_for("""
        streams:
          returns:
            key: return_id
            rules:
              - name: event
                emit:
                  klaviyo_events:
                    unique_id: "swap:{{ record.return_id }}"
                    metric: Return Started
                    profile: {email: "{{ record.customer_email }}"}
                    time: "{{ record.submission_date }}"
                    properties: {}
                  plain: {id: "{{ record.return_id }}"}
    """)
    good = engine.map_record("returns", a_return())
    assert [stream for stream, _ in good] == ["klaviyo_events", "plain"]
    outputs = engine.map_record("returns", a_return(submission_date="Maria Lopez"))
    # All or nothing: the rule's other output is not sent either.
    [(stream, failure)] = outputs
    assert stream == "integration_exceptions"
    # A format is a bound of the data (decisions.md §1): set aside, the bookmark moves on.
    assert failure["reason"] == "out_of_bounds"
    assert failure["detail"].startswith(
        "output 'klaviyo_events' field 'time': must be date-time (format) (at "
    )
    [(_, empty)] = engine.map_record("returns", a_return(customer_email=""))
    assert "field 'profile'" in empty["detail"]


def test_details_never_quote_personal_data(engine_for: EngineFor) -> None:
    engine = engine_for("""
        streams:
          returns:
            key: return_id
            rules:
              - name: key_named_by_a_name
                emit: {plain: {id: "{{ record[record.customer_name] }}"}}
              - name: key_named_by_an_email
                emit: {plain: {id: "{{ {}[record.customer_email | trim | lower] }}"}}
    """)
    outputs = engine.map_record("returns", a_return())
    details = [unplaced(failure["detail"]) for failure in exceptions(outputs)]
    assert details == [
        "field 'id': 'dict object' has no attribute '***' (UndefinedError)",
        "field 'id': 'dict object' has no attribute '***' (UndefinedError)",
    ]


def test_mask_hides_record_text_and_addresses_but_keeps_the_key() -> None:
    record = {
        "id": "ret_1",
        "name": "Maria Lopez",
        "nested": [{"email": " Maria@Example.org ", "reason": "Too big"}],
    }
    text = (
        "'ret_1': 'maria lopez' \"Lopez\" <maria@example.org> other@example.com "
        "MARIA@EXAMPLE.ORG, 'dict object' has no attribute 'name' (Range too big)"
    )
    assert mask(text, record, keep="ret_1") == (
        "'ret_1': '***' \"***\" <***> *** ***, 'dict object' has no attribute 'name' "
        "(Range too big)"
    )
    assert mask("x" * 600, {}).endswith("…")
    assert len(mask("x" * 600, {})) == 500


def test_undefined_values_inside_lists_and_generators_are_errors(engine_for: EngineFor) -> None:
    engine = engine_for("""
        streams:
          returns:
            key: return_id
            rules:
              - name: hidden_undefined
                emit: {plain: {id: x, list: "{{ [record.return_id, record.nope] }}"}}
              - name: generator
                emit: {plain: {id: x, skus: "{{ record | return_items | map(attribute='sku') }}"}}
              - name: none_in_text
                emit: {plain: {id: "swap:{{ record.intention_date }}"}}
    """)
    outputs = engine.map_record("returns", a_return(intention_date=None))
    details = {failure["rule"]: failure["detail"] for failure in exceptions(outputs)}
    assert "no attribute 'nope'" in details["hidden_undefined"]
    assert "end it with '| list'" in details["generator"]
    assert unplaced(details["none_in_text"]) == (
        "field 'id': a null value was interpolated into text (TypeError)"
    )


def test_the_record_is_never_modified(engine_for: EngineFor) -> None:
    engine = engine_for("""
        definitions:
          items: "record | return_items"
        streams:
          returns:
            key: return_id
            rules:
              - name: all
                for_each: "item in items"
                emit: {plain: {id: "{{ item.sku }}", whole: "{{ record.return_shipments }}"}}
    """)
    record = a_return()
    before = repr(record)
    engine.map_record("returns", record)
    assert repr(record) == before


def test_two_mapping_files_run_in_order(write_mapping: MappingWriter) -> None:
    body = """
        version: 1
        outputs:
          integration_exceptions:
            key_properties: [exception_id]
            schema: schemas/integration_exceptions.json
          klaviyo_profile_updates:
            key_properties: [update_id]
            schema: schemas/klaviyo_profile_updates.json
        streams:
          returns:
            key: return_id
            rules:
              - name: {name}
                emit:
                  klaviyo_profile_updates:
                    update_id: "{name}"
                    external_id: "{{{{ record.return_id }}}}"
                    as_of: "2026-01-01T00:00:00Z"
    """
    first = write_mapping(body.format(name="first"), "first.yml")
    second = write_mapping(body.format(name="second"), "second.yml")
    engine = MappingEngine.from_files([str(first), str(second)], clock=clock)
    ids = [record["update_id"] for _, record in engine.map_record("returns", a_return())]
    assert ids == ["first", "second"]
    with pytest.raises(MappingFileError, match="rule 'first' of stream 'returns' is in another"):
        MappingEngine.from_files([str(first), str(first)], clock=clock)


@pytest.mark.slow
def test_key_and_exception_streams() -> None:
    engine = MappingEngine.from_files([str(DEFAULT_MAPPING)], clock=clock)
    assert engine.exception_streams == frozenset({"integration_exceptions"})
    assert engine.key_of("returns", as_sdk_record({"return_id": 7})) == "7"
    assert engine.key_of("returns", {}) is None
    assert engine.key_of("other", {"return_id": 1}) is None


def test_the_readme_example_loads_and_runs(tmp_path: Path) -> None:
    transforms = TRANSFORMS
    readme = (transforms / "README.md").read_text()
    example = readme.split("## The mapping file format", 1)[1].split("```yaml\n", 1)[1]
    example = example.split("```", 1)[0]
    (tmp_path / "example.yml").write_text(example)
    for folder in ("schemas", "definitions"):
        (tmp_path / folder).mkdir()
        for source in (transforms / folder).iterdir():
            (tmp_path / folder / source.name).write_text(source.read_text())
    engine = MappingEngine.from_files([str(tmp_path / "example.yml")], clock=clock)
    outputs = engine.map_record("returns", a_return())
    [started, *restocked] = [record for _, record in outputs]
    assert started["properties"]["RefundedSKUs"] == ["JKT-M-NAV", "CAP-OS-RED"]
    assert started["properties"]["Order"] == "2100"
    assert started["properties"]["Items"][0] == {"SKU": "JKT-M-NAV", "Quantity": 1}
    assert [r["metric"] for r in restocked] == ["Item Restocked", "Item Restocked"]
    [(_, rejected)] = engine.map_record("returns", a_return(customer_email=None))
    assert rejected["reason"] == "missing_email"
