"""The sandbox's budgets: every bomb costs its record one `mapping_error`, never the process.

Each bomb runs as the `value` field of a rule `attempt` beside a rule `fine`: the exception names
the rule and the field, `fine` still maps the record, and the next record maps too. Size bombs are
refused before anything is allocated, so these tests run with the default budgets; the tests of
work budgets (steps, time) lower them. The last test runs the mapper's executable on every bomb
under an address-space limit.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from swap_transforms import budgets
from swap_transforms.engine import MappingEngine
from swap_transforms.sandbox import Expression, Scope, parse_expression
from tests.support import OUTPUTS, MappingWriter, a_return

EngineFor = Callable[[str], MappingEngine]
SWAP_TRANSFORMS = Path(sys.executable).parent / "swap-transforms"

#: Bombs of issue 10, and their kin, with what the exception's detail says.
BOMBS: dict[str, tuple[str, str]] = {
    "printf_width": ("'%0999999999d' % 1", "a % format width of 999999999 characters"),
    "format_width": ("'{:>999999999}'.format(1)", "a format width or precision of 999999999"),
    "center": ("record.rma_number | center(10**9)", "a centered text of 1000000000 characters"),
    "indent": ("record.rma_number | indent(10**9)", "an indented text of 1000000006 characters"),
    "shared_list": ("[('x'*100000)]*100000", "an output of more than 10000000 characters"),
    "power_tower": ("(((10**64)**64)**64)**64", "a number of about 4104 digits (limit 1000)"),
    "printf_star": ("'%*d' % (10**9, 1)", "'*' widths and precisions are not allowed"),
    "printf_precision": ("'%.999999999f' % 1.5", "a % format precision of 999999999"),
    "nested_format": ("'{0:{1}}'.format(1, 10**9)", "a format width or precision of 1000000000"),
    "format_map": ("'{a:>999999999}'.format_map({'a': 1})", "a format width or precision"),
    "format_filter": ("'%999999999s' | format('x')", "a % format width of 999999999"),
    "ljust": ("'x'.ljust(10**9)", "a padded text of 1000000000 characters"),
    "zfill": ("'1'.zfill(10**9)", "a padded text of 1000000000 characters"),
    "to_bytes": ("(1).to_bytes(10**9, 'big')", "bytes of 1000000000 characters"),
    "expandtabs": ("('\\t' * 1000).expandtabs(10**7)", "an expanded text of 10000001000"),
    "method_replace": (
        "('x' * 100000).replace('x', 'x' * 100000)",
        "a replaced text of 10000000000 characters",
    ),
    "filter_replace": (
        "('x' * 100000) | replace('x', 'x' * 100000)",
        "a replaced text of 10000000000 characters",
    ),
    "method_join": ("('x' * 1000).join(['y' * 1000] * 1000)", "a joined text of 1999000"),
    "filter_join": ("(['x' * 100000] * 100000) | join", "a joined text of"),
    "string": ("([('x' * 100000)] * 100000) | string", "a value whose text is over 1000000"),
    "tojson": ("([('x' * 100000)] * 100000) | tojson", "a value whose text is over 1000000"),
    "tojson_indent": ("[1] | tojson(10**9)", "tojson indents by 0 to 16 spaces"),
    "concat": ("'a' ~ ([('x' * 100000)] * 100000)", "a value whose text is over 1000000"),
    "printf_argument": ("'%s' % ([('x' * 100000)] * 100000,)", "a value whose text is over"),
    "format_argument": ("'{}'.format([('x' * 100000)] * 100000)", "a value whose text is over"),
    "upper": ("([('x' * 100000)] * 100000) | upper", "a value whose text is over 1000000"),
    "wordwrap": ("('x ' * 100000) | wordwrap(1, wrapstring='y' * 1000)", "a wrapped text of"),
    "nested_repeat": ("[[1] * 100000] * 100000", "'*' would build a list of 10000100000 items"),
    "text_repeat": ("'x' * 10**9", "'*' would build a text of 1000000000 characters"),
    "product": ("((10**60)**10) * ((10**60)**10)", "digits (limit 1000)"),
    "batch": ("[1] | batch(10**9, 'x') | list", "a batch of 1000000000 items"),
    "slice": ("[1] | slice(10**9) | list", "a slice count of 1000000000 items"),
    "list": ("('x' * 1000000) | list", "a list of 1000000 items (limit 100000)"),
    "int_filter": ("('9' * 1001) | int", "digits (limit 1000)"),
    "concat_chain": ("'x' * 1000000 ~ 'x' * 1000000", "a text of 2000000 characters"),
    "plus_chain": ("'x' * 1000000 + 'x'", "a text of 1000001 characters"),
    "map_center": ("range(100000) | map('center', 10**9) | list", "a centered text of"),
}


def two_rules(value: str) -> str:
    """A mapping whose rule `attempt` sets `value` to `{{ <value> }}`, and a rule `fine`."""
    return f"""
        streams:
          returns:
            key: return_id
            rules:
              - name: attempt
                emit:
                  plain:
                    id: x
                    value: {json.dumps("{{ " + value + " }}")}
              - name: fine
                emit:
                  plain:
                    id: "{{{{ record.return_id }}}}"
    """


def assert_refused_then_next_record_maps(
    engine: MappingEngine, detail: str, where: str = "field 'value'"
) -> None:
    for key in ("ret_1", "ret_2"):
        outputs = engine.map_record("returns", a_return(return_id=key))
        assert [stream for stream, _ in outputs] == ["integration_exceptions", "plain"]
        (_, exception), (_, fine) = outputs
        assert exception["reason"] == "mapping_error"
        assert exception["rule"] == "attempt"
        assert exception["source_key"] == key
        assert exception["detail"].startswith(f"{where}: budget exceeded: ")
        assert detail in exception["detail"]
        assert "(BudgetError)" in exception["detail"]
        assert fine == {"id": key}


# Slow as a whole: each bomb is quick, but there are 27 of them.
@pytest.mark.slow
@pytest.mark.parametrize("name", list(BOMBS))
def test_a_size_bomb_costs_its_record_one_mapping_error(engine_for: EngineFor, name: str) -> None:
    expression, detail = BOMBS[name]
    assert_refused_then_next_record_maps(engine_for(two_rules(expression)), detail)


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("'%05d|%-4s|%.2f' % (42, 'ab', 1.005)", "00042|ab  |1.00"),
        ("'{:>6}|{:08.3f}'.format('ab', 3.14159)", "    ab|0003.142"),
        ("'ab' | center(6) ~ '|' ~ ('a\\nb' | indent(2, true))", "  ab  |  a\n  b"),
        ("['a', 'b'] | join(', ')", "a, b"),
        ("'a-b' | replace('-', '--')", "a--b"),
        ("[[1], [2, 3]] | sum(start=[])", [1, 2, 3]),
        ("(2 ** 64) * (10 ** 40)", 2**64 * 10**40),
        ("['x'] * 3 + ['y']", ["x", "x", "x", "y"]),
        ("{'a': [1, 'b']} | tojson", '{"a": [1, "b"]}'),
        ("'x'.ljust(3, '.') ~ (7).to_bytes(2, 'big') | length", "x..2"),
    ],
)
def test_ordinary_uses_of_the_guarded_operations_still_work(
    engine_for: EngineFor, expression: str, value: Any
) -> None:
    [(_, output), _] = engine_for(two_rules(expression)).map_record("returns", a_return())
    assert output["value"] == value


@pytest.fixture
def small_budgets() -> Iterator[budgets.Limits]:
    """Work budgets lowered for a test (the defaults take about a second to spend)."""
    limits = budgets.LIMITS
    saved = {name: getattr(limits, name) for name in budgets.Limits.__slots__}
    yield limits
    for name, value in saved.items():
        setattr(limits, name, value)


def test_nested_for_each_over_big_ranges_runs_out_of_steps(
    engine_for: EngineFor, small_budgets: budgets.Limits
) -> None:
    small_budgets.steps = 2_000
    engine = engine_for("""
        streams:
          returns:
            key: return_id
            rules:
              - name: attempt
                for_each: i in range(100000)
                emit:
                  plain:
                    id: x
                    cheap: "{{ i + 1 }}"
                    value:
                      for_each: j in range(100000)
                      value: "{{ i * j }}"
              - name: fine
                emit:
                  plain:
                    id: "{{ record.return_id }}"
    """)
    for key in ("ret_1", "ret_2"):
        outputs = engine.map_record("returns", a_return(return_id=key))
        assert [stream for stream, _ in outputs] == ["integration_exceptions", "plain"]
        exception = outputs[0][1]
        assert exception["rule"] == "attempt"
        assert exception["reason"] == "mapping_error"
        # The field whose loop spent the budget is named, not the cheap one before it.
        assert exception["detail"].startswith("item 0: field 'value' item ")
        assert "more than 2000 evaluation steps in one rule (BudgetError)" in exception["detail"]


def test_each_rule_has_its_own_steps(engine_for: EngineFor, small_budgets: budgets.Limits) -> None:
    small_budgets.steps = 1_000
    loop = "{ for_each: 'i in range(400)', value: '{{ i * 2 }}' }"
    engine = engine_for(f"""
        streams:
          returns:
            key: return_id
            rules:
              - name: first
                emit: {{plain: {{id: a, value: {loop}}}}}
              - name: second
                emit: {{plain: {{id: b, value: {loop}}}}}
    """)
    outputs = engine.map_record("returns", a_return())
    assert [record["id"] for _, record in outputs] == ["a", "b"]
    assert outputs[1][1]["value"][-1] == 798


def test_the_wall_clock_is_a_backstop(engine_for: EngineFor, small_budgets: budgets.Limits) -> None:
    small_budgets.seconds = 0.0  # every record is already late at its first clock reading
    engine = engine_for(two_rules("range(1000) | map('string') | list | length"))
    engine_loop = engine_for("""
        streams:
          returns:
            key: return_id
            rules:
              - name: attempt
                emit:
                  plain:
                    id: x
                    value: {for_each: 'i in range(1000)', value: '{{ i }}'}
    """)
    assert engine.map_record("returns", a_return())[0][1]["value"] == 1000  # no clock read
    [(_, exception)] = engine_loop.map_record("returns", a_return())
    assert exception["rule"] == "attempt"
    assert exception["detail"].startswith("field 'value' item ")
    assert "the record took more than 0 s to map (BudgetError)" in exception["detail"]


def test_definitions_doubling_a_shared_list_stop_at_the_output_budget(
    engine_for: EngineFor, small_budgets: budgets.Limits
) -> None:
    # Each definition is two references to the one before: 2**40 leaves, 41 objects.
    small_budgets.output = 100_000
    definitions = "".join(f'  d{n + 1}: "{{{{ [d{n}, d{n}] }}}}"\n' for n in range(40))
    engine = engine_for(
        'definitions:\n  d0: "{{ record.rma_number }}"\n'
        + definitions
        + textwrap.dedent("""\
            streams:
              returns:
                key: return_id
                rules:
                  - name: attempt
                    emit: {plain: {id: x, value: "{{ d40 }}"}}
                  - name: fine
                    emit: {plain: {id: "{{ record.return_id }}"}}
        """)
    )
    assert_refused_then_next_record_maps(engine, "an output of more than 100000 characters")


def test_sum_of_lists_is_linear_and_bounded() -> None:
    budgets.METER.start_record()  # what the engine does per record
    total = Expression(parse_expression("lists | sum(start=[])"))
    summed = total(Scope({"lists": [[index] for index in range(50_000)]}, {}, {}))
    assert summed == list(range(50_000))
    with pytest.raises(budgets.BudgetError, match="a summed list of 100002 items"):
        total(Scope({"lists": [[index, index] for index in range(60_000)]}, {}, {}))


@pytest.mark.slow
def test_the_mapper_survives_every_bomb_under_a_memory_limit(
    write_mapping: MappingWriter, tmp_path: Path
) -> None:
    """The executable, limited to 1 GiB of address space, maps the records around the bombs."""
    (tmp_path / "schemas" / "plain.json").write_text(
        json.dumps({"type": "object", "properties": {"id": {}}, "required": ["id"]})
    )
    rules = "".join(
        f"""
              - name: {name}
                emit:
                  plain:
                    id: x
                    value: {json.dumps("{{ " + expression + " }}")}"""
        for name, (expression, _) in BOMBS.items()
    )
    body = f"""
        streams:
          returns:
            key: return_id
            rules:{rules}
              - name: fine
                emit:
                  plain:
                    id: "{{{{ record.return_id }}}}"
    """
    mapping = write_mapping(textwrap.dedent(OUTPUTS) + textwrap.dedent(body))
    config = tmp_path / "config.json"
    contract = str(tmp_path / "schemas")  # the target's schemas, and `plain`
    config.write_text(json.dumps({"mapping_files": [str(mapping)], "contract_schemas": contract}))
    schema = {"type": "SCHEMA", "stream": "returns", "schema": {"type": "object"}}
    messages = [
        {**schema, "key_properties": ["return_id"]},
        {"type": "RECORD", "stream": "returns", "record": a_return(return_id="ret_1")},
        {"type": "RECORD", "stream": "returns", "record": a_return(return_id="ret_2")},
    ]
    text = "".join(json.dumps(message, default=str) + "\n" for message in messages)

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))

    result = subprocess.run(
        [str(SWAP_TRANSFORMS), "--config", str(config)],
        input=text.encode(),
        capture_output=True,
        preexec_fn=limit_memory,  # a resource limit, set before the mapper starts
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    records = [
        json.loads(line)
        for line in result.stdout.decode().splitlines()
        if json.loads(line)["type"] == "RECORD"
    ]
    for key in ("ret_1", "ret_2"):
        refused = {
            r["record"]["rule"]: r["record"]["detail"]
            for r in records
            if r["stream"] == "integration_exceptions" and r["record"]["source_key"] == key
        }
        assert sorted(refused) == sorted(BOMBS)
        for name, (_, detail) in BOMBS.items():
            assert "budget exceeded" in refused[name]
            assert detail in refused[name]
        assert {"stream": "plain", "record": {"id": key}, "type": "RECORD"} in [
            {k: r[k] for k in ("stream", "record", "type")} for r in records
        ]


def test_escaped_texts_cannot_double_past_the_budget(engine_for: EngineFor) -> None:
    # Markup + text escapes the text: each `+` may grow it up to six times, counted as such.
    doubling = "".join(f'  m{n + 1}: "{{{{ m{n} + m{n} }}}}"\n' for n in range(12))
    engine = engine_for(
        "definitions:\n  m0: \"{{ ('<&>' * 1000) | escape }}\"\n"
        + doubling
        + textwrap.dedent("""\
            streams:
              returns:
                key: return_id
                rules:
                  - name: attempt
                    emit: {plain: {id: x, value: "{{ m12 | length }}"}}
                  - name: fine
                    emit: {plain: {id: "{{ record.return_id }}"}}
        """)
    )
    # A definition's failure names the chain of definitions (as any failing definition does).
    chain = ": ".join(f"definition 'm{n}'" for n in range(12, 3, -1))
    assert_refused_then_next_record_maps(engine, "a text of 1248000 characters", chain)
