"""Escape attempts: refused when the mapping loads, or failing on the record as an exception."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from decimal import Decimal

import pytest
from jinja2.exceptions import SecurityError
from jinja2.filters import sync_do_unique as jinja_unique
from markupsafe import Markup

from swap_transforms.engine import MappingEngine
from swap_transforms.errors import MappingFileError
from swap_transforms.sandbox import Expression, MappingEnvironment, Scope, parse_expression
from tests.support import a_return

EngineFor = Callable[[str], MappingEngine]


def single_field(expression: str) -> str:
    return f"""
        streams:
          returns:
            key: return_id
            rules:
              - name: attempt
                emit:
                  plain:
                    id: x
                    value: "{expression}"
    """


@pytest.mark.parametrize(
    ("expression", "refusal"),
    [
        ("{{ ''.__class__.__mro__ }}", "attribute '__class__' is not allowed"),
        ("{{ cycler.__init__.__globals__ }}", "unknown name 'cycler'"),
        ("{{ self }}", "unknown name 'self'"),
        ("{{ self._TemplateReference__context }}", "unknown name 'self'"),
        ("{{ lipsum(n=100000) }}", "unknown name 'lipsum'"),
        ("{{ namespace(a=record) }}", "unknown name 'namespace'"),
        ("{{ joiner() }}", "unknown name 'joiner'"),
        ("{{ config }}", "unknown name 'config'"),
        ("{{ record['__class__'] }}", "key '__class__' is not allowed"),
        ("{{ record._private }}", "attribute '_private' is not allowed"),
        ("{{ range.__self__ }}", "attribute '__self__' is not allowed"),
        ("{{ money.__globals__['os'] }}", "attribute '__globals__' is not allowed"),
        ("{{ record | _text }}", "unknown filter '_text'"),
        ("{{ _loop0(record) }}", "unknown name '_loop0'"),
    ],
)
def test_refused_when_the_mapping_loads(
    engine_for: EngineFor, expression: str, refusal: str
) -> None:
    with pytest.raises(MappingFileError) as error:
        engine_for(single_field(expression))
    assert refusal in str(error.value)
    assert "rule 'attempt', field 'value'" in str(error.value)


@pytest.mark.parametrize(
    ("expression", "failure"),
    [
        ("{{ range(10**9) | list }}", "Range too big"),
        ("{{ 10 ** 1000 }}", "exponents above 64 are not allowed"),
        ("{{ 'x' * 1000000000 }}", "would build a text of 1000000000 characters (limit 1000000)"),
        ("{{ [1, 2] * 1000000 }}", "would build a list of 2000000 items (limit 100000)"),
        ("{{ record.update({'return_id': 'changed'}) }}", "is unsafe"),
        ("{{ record.return_shipments.append(1) }}", "is unsafe"),
        ("{{ record.type.pop() }}", "is unsafe"),
        ("{{ record.return_shipments[0]['items'][0].clear() }}", "is unsafe"),
        ("{{ (record | return_items)[0].update({'sku': 1}) }}", "is unsafe"),
        ("{{ record | attr('__class__') }}", "is unsafe"),
        ("{{ record | map(attribute='__class__') | list }}", "is unsafe"),
        ("{{ '{0.__class__}'.format(record) }}", "is unsafe"),
        ("{{ dict.mro() }}", "is unsafe"),
        ("{{ (record | return_items | groupby('sku') | first) | attr('_asdict') }}", "is unsafe"),
        ("{{ (record | return_items | groupby('sku') | first) | attr('__class__') }}", "is unsafe"),
    ],
)
def test_refused_on_the_record_without_touching_it(
    engine_for: EngineFor, expression: str, failure: str
) -> None:
    engine = engine_for(single_field(expression))
    record = a_return()
    before = copy.deepcopy(record)
    [(stream, exception)] = engine.map_record("returns", record)
    assert stream == "integration_exceptions"
    assert exception["reason"] == "mapping_error"
    assert exception["rule"] == "attempt"
    assert failure in exception["detail"]
    assert record == before


def test_the_sandbox_still_allows_ordinary_expressions(engine_for: EngineFor) -> None:
    engine = engine_for(
        single_field(
            "{{ record.type | join('/') ~ ':' ~ range(3) | sum ~ ':' ~ "
            "(record.customer_name.split(' ') | first | upper) ~ ':' ~ (2 ** 10) }}"
        )
    )
    [(_, output)] = engine.map_record("returns", a_return())
    assert output["value"] == "Refund:3:MARIA:1024"


def test_groups_read_as_in_jinja(engine_for: EngineFor) -> None:
    engine = engine_for(
        single_field(
            "{{ (record | return_items | groupby('sku') | first).grouper ~ ':' ~ "
            "(record | return_items | groupby('sku') | first).list | length ~ ':' ~ "
            "(record | return_items | groupby('sku') | first).count('x') }}"
        )
    )
    [(_, output)] = engine.map_record("returns", a_return())
    assert output["value"] == "CAP-OS-RED:1:0"


def test_attributes_read_keys_first_then_the_sandbox(engine_for: EngineFor) -> None:
    engine = engine_for("""
        streams:
          returns:
            key: return_id
            rules:
              - name: access
                emit:
                  plain:
                    id: x
                    key_named_items: "{{ record.items }}"
                    dict_method: "{{ {'a': 1}.items() | list }}"
                    nested: "{{ record.return_shipments[0].items[0].sku }}"
                    list_method: "{{ record.type.count('Refund') }}"
                    text_method: "{{ record.rma_number.lower() }}"
    """)
    record = a_return()
    record["items"] = ["own"]
    [(_, output)] = engine.map_record("returns", record)
    assert output == {
        "id": "x",
        "key_named_items": ["own"],
        "dict_method": [("a", 1)],
        "nested": "JKT-M-NAV",
        "list_method": 1,
        "text_method": "sw-100",
    }


def test_only_the_engines_own_loops_skip_the_sandbox_call() -> None:
    # Mappings cannot name anything `_loop...` (names start with a letter); should such a name
    # hold another callable, it is still called through the sandbox, which checks it.
    def refused(value: object) -> object:
        return value

    refused.unsafe_callable = True  # type: ignore[attr-defined]
    expression = Expression(parse_expression("_loop0(record)"))
    with pytest.raises(SecurityError, match="is not safely callable"):
        expression(Scope({"_loop0": refused, "record": {}}, {}, {}))


@pytest.mark.slow
def test_unique_gives_what_jinjas_unique_gives() -> None:
    reference = MappingEnvironment()
    reference.filters["unique"] = jinja_unique  # the filter as Jinja ships it
    rng = random.Random(5)
    pool: list[object] = ["A", "a", "B", "b ", Markup("A"), 1, 1.0, True, None, Decimal("1.0"), [1]]
    calls = ["", "(true)", "(case_sensitive=false)", "(attribute='x')", "(nope=1)", "(1, 2, 3)"]
    for _ in range(400):
        values = [rng.choice(pool) for _ in range(rng.randint(0, 5))]
        if rng.random() < 0.3:
            values = [{"x": value} for value in values]
        for call in calls:
            source = f"values | unique{call} | list"
            outcomes = []
            for environment in (reference, None):
                try:
                    if environment is None:
                        scope = Scope({"values": values}, {}, {})
                        result = Expression(parse_expression(source))(scope)
                    else:
                        result = environment.compile_expression(source)(values=values)
                    outcomes.append(("ok", repr(result)))
                except Exception as error:  # noqa: BLE001 - the failure is what is compared
                    outcomes.append((type(error).__name__, str(error)))
            assert outcomes[0] == outcomes[1], (source, values)
