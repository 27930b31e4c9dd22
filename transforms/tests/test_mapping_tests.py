"""`swap-transforms-test`: the analysts' YAML tests of a mapping, and the contract list.

The runner is engine behaviour (how expectations are compared and reported); what the default
mapping sends is in transforms/swap_to_klaviyo.tests.yml, which these tests only run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from swap_transforms import mapping_tests
from swap_transforms.engine import MappingEngine
from swap_transforms.mapping_tests import map_by_rule
from tests.support import DEFAULT_MAPPING, TRANSFORMS, a_return, with_items

BIN = Path(sys.executable).parent
DEFAULT_TESTS = TRANSFORMS / "swap_to_klaviyo.tests.yml"
CONTRACT = TRANSFORMS / "contract.yml"
Run = Callable[..., tuple[int, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """Runs swap-transforms-test in this process; (exit status, stdout + stderr)."""

    def call(*args: str) -> tuple[int, str]:
        status = mapping_tests.main(list(args))
        captured = capsys.readouterr()
        return status, captured.out + captured.err

    return call


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the transforms folder an analyst can edit."""
    copy = tmp_path / "transforms"
    shutil.copytree(TRANSFORMS, copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return copy


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert text.count(old) >= count, (path, old)
    path.write_text(text.replace(old, new))


@pytest.mark.slow
def test_the_default_mapping_passes_its_yaml_tests(run: Run) -> None:
    status, out = run(str(DEFAULT_TESTS))
    assert status == 0, out
    assert re.search(r"(\d+) test\(s\), ok", out)
    assert "FAIL" not in out


@pytest.mark.slow
def test_the_console_script_and_its_default_folder() -> None:
    result = subprocess.run(
        [str(BIN / "swap-transforms-test")],
        cwd=TRANSFORMS.parent,  # the project root (or where the plugin's folder was copied)
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "transforms/swap_to_klaviyo.tests.yml: " in result.stdout


@pytest.mark.slow
def test_a_broken_expectation_names_test_rule_field_expected_and_actual(
    run: Run, project: Path
) -> None:
    tests = project / "swap_to_klaviyo.tests.yml"
    edit(tests, "            ItemCount: 2\n", "            ItemCount: 3\n")
    status, out = run(str(tests))
    assert status == 1
    line = next(
        number
        for number, text in enumerate(tests.read_text().splitlines(), start=1)
        if "ItemCount: 3" in text
    )
    # The failure points at the expected record (its first line), not at the whole file.
    assert f"FAIL {tests}:" in out
    block = out.split("FAIL ")[1]
    place = int(block.split()[0].rsplit(":", 1)[1])
    assert place < line
    assert "test 'a closed return sends every stage once'" in block
    assert "  rule      return_started (klaviyo_events)\n" in block
    assert "  field     properties.ItemCount\n" in block
    assert "  expected  3\n  actual    2\n" in block
    assert "1 failure(s)" in out


@pytest.mark.slow
def test_an_unexpected_rejection_fails_and_comes_first(run: Run, project: Path) -> None:
    mapping = project / "swap_to_klaviyo.yml"
    # A property that fails at run time on every return with a total.
    edit(
        mapping,
        '              PortalLink: "{{ record.portal_quick_link | default(none) }}"\n',
        '              PortalLink: "{{ record.portal_quick_link | default(none) }}"\n'
        '              Share: "{{ record.total / 0 }}"\n',
    )
    status, out = run(str(project / "swap_to_klaviyo.tests.yml"))
    assert status == 1
    first = out.split("FAIL ")[1]
    assert "test 'a closed return sends every stage once'" in first
    assert "unexpected rejection (list it under rejected: if intended)" in first
    assert "  rule      return_started (integration_exceptions)" in first
    assert '"reason":"mapping_error"' in first
    assert "field 'properties.Share'" in first
    second = out.split("FAIL ")[2]
    assert "expected 'klaviyo_events' output not produced" in second
    assert '"metric":"Return Started"' in second


@pytest.mark.slow
def test_an_output_that_must_be_absent(run: Run, project: Path) -> None:
    tests = project / "swap_to_klaviyo.tests.yml"
    edit(
        tests,
        "    absent:\n      klaviyo_events:\n        - {metric: Return Cancelled}\n",
        "    absent:\n      klaviyo_events:\n        - {metric: Return Processed}\n",
    )
    status, out = run(str(tests))
    assert status == 1
    assert "an output the test says must not exist: " in out
    assert "  rule      return_processed (klaviyo_events)" in out


@pytest.mark.slow
def test_every_rule_and_contract_name_must_be_expected(run: Run, project: Path) -> None:
    tests = project / "swap_to_klaviyo.tests.yml"
    document = yaml.safe_load(tests.read_text())
    kept = [t for t in document["tests"] if "Inspected" not in yaml.safe_dump(t)]
    text = tests.read_text()
    start = text.index("\ntests:\n")
    tests.write_text(text[:start] + "\n" + yaml.safe_dump({"tests": kept}, sort_keys=False))
    edit(
        project / "contract.yml",
        "  swap_last_refund_amount: refund of that return, in its currency\n",
        "  swap_last_refund_amount: refund of that return, in its currency\n"
        "  swap_vip: not sent by the mapping\n",
    )
    status, out = run(str(tests))
    assert status == 1
    assert "rule 'return_inspected' (" in out
    assert "is not covered: no test expects an output or a rejection of it" in out
    assert "metric 'Return Inspected' of the contract list" in out
    assert "profile property 'swap_vip' of the contract list" in out


@pytest.mark.slow
def test_a_name_not_in_the_contract_list_is_refused(run: Run, project: Path) -> None:
    edit(project / "swap_to_klaviyo.yml", "metric: Return Received", "metric: Return Arrived")
    edit(
        project / "swap_to_klaviyo.tests.yml",
        "metric: Return Received",
        "metric: Return Arrived",
        count=2,
    )
    status, out = run(str(project / "swap_to_klaviyo.tests.yml"))
    assert status == 1
    assert "metric 'Return Arrived' is not in the contract list" in out
    assert "metric 'Return Received' of the contract list" in out


PER_ITEM_RULE = """\
      - name: item_returned
        description: One event per returned line, for per-SKU flows.
        for_each: "item in items"
        emit:
          klaviyo_events:
            <<: *event
            unique_id: "swap:{{ record.return_id }}:item:{{ item.shopify_line_item_id }}"
            metric: Item Returned
            time: "{{ (record.submission_date or record.date_updated) | iso }}"
            value: "{{ item.cost | money }}"
            properties:
              <<: *return
              SKU: "{{ item.sku }}"
              Reason: "{{ item.main_reason_text }}"

"""

PER_ITEM_TEST = """
  - name: every returned line is an Item Returned event
    input: {record: *closed}
    outputs:
      klaviyo_events:
        - {metric: Item Returned, unique_id: "swap:ret_100:item:l1", value: 50.25,
           properties: {SKU: JKT-M-NAV, Reason: Too big}}
        - {metric: Item Returned, unique_id: "swap:ret_100:item:l2", value: 30.25,
           properties: {SKU: CAP-OS-RED, Reason: Changed my mind}}
"""


@pytest.mark.slow
def test_renaming_a_metric_and_adding_a_per_item_event_takes_yaml_edits_only(
    run: Run, project: Path
) -> None:
    mapping = project / "swap_to_klaviyo.yml"
    tests = project / "swap_to_klaviyo.tests.yml"
    contract = project / "contract.yml"
    # Rename: the contract list, the mapping, the tests.
    edit(contract, "  Return Received:\n", "  Return Arrived:\n")
    edit(mapping, "metric: Return Received", "metric: Return Arrived")
    edit(tests, "metric: Return Received", "metric: Return Arrived", count=2)  # every one
    # A per-item event: the contract list, a rule, a test.
    edit(
        contract,
        "\nprofile_properties:\n",
        "  Item Returned:\n    when: per returned line\n"
        "    properties: [ReturnId, RMA, OrderId, OrderName, SKU, Reason]\n"
        "\nprofile_properties:\n",
    )
    edit(
        mapping, "      - name: item_restocked\n", PER_ITEM_RULE + "      - name: item_restocked\n"
    )
    tests.write_text(tests.read_text() + PER_ITEM_TEST)
    # The "every stage once" test lists every event of a closed return (complete: true).
    edit(
        tests,
        '        - {metric: Item Restocked, unique_id: "swap:ret_100:restock:l1"}\n',
        '        - {metric: Item Restocked, unique_id: "swap:ret_100:restock:l1"}\n'
        "        - {metric: Item Returned}\n        - {metric: Item Returned}\n",
    )
    status, out = run(str(tests))
    assert status == 0, out
    # The project's other checks read the same YAML: the renamed metric reaches the README
    # check only through contract.yml (what a reviewer sees changing).
    assert "Return Arrived" in contract_metrics(contract)
    assert "Item Returned" in contract_metrics(contract)


def contract_metrics(path: Path) -> list[str]:
    return list(yaml.safe_load(path.read_text())["metrics"])


def readme_metrics(path: Path) -> list[str]:
    """The first column of the README's metric table (`| metric | ...`)."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"\|\s*metric\s*\|", line))
    names = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        names.append(line.split("|")[1].strip().strip("`"))
    return names


def test_the_readme_table_lists_the_contract() -> None:
    readme = TRANSFORMS / "README.md"
    contract = yaml.safe_load(CONTRACT.read_text())
    assert readme_metrics(readme) == list(contract["metrics"]), (
        f"{readme}'s metric table differs from {CONTRACT}: update the table"
    )
    text = readme.read_text()
    for name in [*contract["profile_properties"], *contract["lists"]]:
        assert re.search(rf"\b{name}\b", text), f"{readme} does not mention {name}"
    mentioned = set(re.findall(r"`(swap_[a-z_]+)`", text))
    assert mentioned <= {*contract["profile_properties"], *contract["lists"]}, (
        f"{readme} names profile properties that are not in {CONTRACT}"
    )


def test_a_test_file_that_breaks_its_schema_names_file_and_line(run: Run, tmp_path: Path) -> None:
    tests = tmp_path / "mine.tests.yml"
    tests.write_text(
        textwrap.dedent(f"""\
            version: 1
            mapping: [{DEFAULT_MAPPING}]
            tests:
              - name: one
                input: {{record: {{return_id: r}}, sample: x.jsonl}}
                outputs: {{}}
              - name: two
                input: {{record: {{return_id: r}}}}
                expected: {{}}
            """)
    )
    status, out = run(str(tests))
    assert status == 2
    assert f"{tests}:5: tests.0.input: needs exactly one of: record or records or sample" in out
    assert f"{tests}:7: tests.1: Additional properties are not allowed ('expected'" in out
    assert "Traceback" not in out


@pytest.mark.slow
def test_timestamps_stay_text_and_numbers_decimal(run: Run, tmp_path: Path) -> None:
    """An unquoted ISO time in YAML is Swap's text, and 80.5 is the mapper's Decimal 80.50."""
    tests = tmp_path / "mine.tests.yml"
    body = (
        DEFAULT_TESTS.read_text()
        .split("\ntests:\n")[0]
        .replace("mapping: [swap_to_klaviyo.yml]", f"mapping: [{DEFAULT_MAPPING}]")
        .replace("contract: contract.yml\n", "")
    )
    tests.write_text(
        body
        + textwrap.dedent("""
            tests:
              - name: unquoted
                input: {record: {<<: *closed, submission_date: 2026-03-01T09:00:00.000Z}}
                outputs:
                  klaviyo_events:
                    - {metric: Return Started, time: "2026-03-01T09:00:00Z", value: 80.5}
            """)
    )
    status, out = run(str(tests), "-k", "unquoted")
    assert status == 0, out


def test_outputs_are_attributed_to_the_rules_that_made_them(
    default_engine: MappingEngine, emulator_returns: list[dict[str, Any]]
) -> None:
    records = [
        *emulator_returns[:150],
        with_items(a_return(), {"sku": None}, {}),
        a_return(customer_email=None),
    ]
    rules_seen = set()
    for record in records:
        produced = map_by_rule(default_engine, "returns", record)
        assert [(p.stream, p.record) for p in produced] == [
            (stream, out) for stream, out in default_engine.map_record("returns", record)
        ]
        for item in produced:
            if item.stream == "integration_exceptions":
                assert item.rule == item.record["rule"]
        rules_seen |= {p.rule for p in produced}
    every_rule = {
        rule.name
        for runs in default_engine._streams.values()
        for rules in runs
        for rule in rules.rules
    }
    assert rules_seen == every_rule | {None}


def test_the_committed_sample_is_what_its_script_writes() -> None:
    sys.path.insert(0, str(TRANSFORMS / "samples"))
    try:
        import generate  # type: ignore[import-not-found]  # noqa: PLC0415
    finally:
        sys.path.remove(str(TRANSFORMS / "samples"))
    assert generate.sample_text() == (TRANSFORMS / "samples" / "returns.jsonl").read_text(), (
        "run .venv/bin/python transforms/samples/generate.py"
    )


@pytest.mark.slow
def test_a_field_the_source_does_not_have_is_refused_at_load(run: Run, project: Path) -> None:
    """The tap's shipped schemas stand in for its SCHEMA message: a typo never reaches a test."""
    mapping = project / "swap_to_klaviyo.yml"
    edit(mapping, "record.customer_currency", "record.customer_curency")
    status, out = run(str(project / "swap_to_klaviyo.tests.yml"))
    assert status == 2
    assert f"{mapping}:" in out
    assert "unknown field 'customer_curency'" in out
    assert "(did you mean 'customer_currency'?)" in out
    assert "FAIL" not in out


@pytest.mark.slow
def test_the_tests_of_a_file_against_another_mapping(run: Run, project: Path) -> None:
    mine = project / "mine.yml"
    mine.write_text(
        (project / "swap_to_klaviyo.yml")
        .read_text()
        .replace("metric: Return Cancelled", "metric: Return Canceled")
    )
    status, out = run(str(DEFAULT_TESTS), "--mapping", str(mine), "-k", "expired")
    assert status == 1
    assert "test 'an expired return is cancelled, at date_updated when date_closed is null'" in out
    assert '"metric":"Return Canceled"' in out
    assert "1 test(s)" in out
