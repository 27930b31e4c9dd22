"""The docs name the metrics and profile properties of transforms/contract.yml, no others.

Flows, segments and reports are built by people reading the README and the runbook: a metric
renamed or added in ``contract.yml`` (and the mapping) but not in their tables leaves them
building on a name Klaviyo never receives, or missing one it does. Names are compared both ways:
every contract name is in each table, and each table names nothing the contract lacks. The
files are read as text; no plugin is imported.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.shared import REPO

CONTRACT = REPO / "transforms" / "contract.yml"
README = REPO / "README.md"
#: Every README whose metric table (a table whose first header cell is ``metric``) is checked.
METRIC_TABLES = [README, REPO / "transforms" / "README.md"]
RUNBOOK = REPO / "docs" / "runbook.md"
#: The root README's section that lists what reaches Klaviyo (its table and property names).
KLAVIYO_SECTION = "## What reaches Klaviyo"
#: A Klaviyo metric name as the contract writes them: capitalised words (``Return Started``).
METRIC_NAME = re.compile(r"`([A-Z][a-z]+(?: [A-Z][a-z]+)+)`")
PROPERTY_NAME = re.compile(r"`(swap_[a-z_]+)`")


def contract() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CONTRACT.read_text())
    return loaded


def contract_properties() -> set[str]:
    """The profile properties and list properties a profile update sets."""
    names = contract()
    return {*names["profile_properties"], *names["lists"]}


def metric_table(text: str) -> list[str]:
    """The first column of the table headed ``| metric | ...``, backticks removed."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"\|\s*metric\s*\|", line)]
    if len(starts) != 1:
        return []
    names = []
    for line in lines[starts[0] + 2 :]:
        if not line.startswith("|"):
            break
        names.append(line.split("|")[1].strip().strip("`"))
    return names


def section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    start = text.index(heading + "\n")
    following = re.search(rf"^#{{1,{len(level)}}} ", text[start + len(heading) :], re.MULTILINE)
    end = start + len(heading) + following.start() if following else len(text)
    return text[start:end]


def first_column_outside_parentheses(table_text: str) -> str:
    """A table's first cells, without what they say in parentheses (details, not names)."""
    cells = [line.split("|")[1] for line in table_text.splitlines() if line.startswith("|")]
    return "\n".join(re.sub(r"\([^)]*\)", "", cell) for cell in cells[2:])


def differences(documented: set[str], contracted: set[str], where: str, what: str) -> str:
    """The names one side lacks, as the message a reviewer needs; empty when both agree."""
    problems = []
    if missing := sorted(contracted - documented):
        problems.append(f"{where} lacks the {what} {missing} of {CONTRACT.relative_to(REPO)}")
    if unknown := sorted(documented - contracted):
        problems.append(
            f"{where} names the {what} {unknown}, which {CONTRACT.relative_to(REPO)} does not "
            "have (renamed or removed?)"
        )
    if problems:
        problems.append("update the documentation with the contract, the mapping and its tests")
    return "; ".join(problems)


@pytest.mark.parametrize("readme", METRIC_TABLES, ids=lambda path: str(path.relative_to(REPO)))
def test_each_readme_metric_table_lists_the_contracts_metrics(readme: Path) -> None:
    table = metric_table(readme.read_text())
    assert table, f"{readme.relative_to(REPO)} has no single '| metric |' table"
    assert len(table) == len(set(table)), f"{readme.relative_to(REPO)} lists a metric twice"
    where = f"{readme.relative_to(REPO)}'s metric table"
    problem = differences(set(table), set(contract()["metrics"]), where, "metrics")
    assert not problem, problem


def test_the_readme_names_the_contracts_profile_properties() -> None:
    text = section(README.read_text(), KLAVIYO_SECTION)
    where = f"README.md's '{KLAVIYO_SECTION[3:]}'"
    named = set(PROPERTY_NAME.findall(text))
    problem = differences(named, contract_properties(), where, "profile properties")
    assert not problem, problem


def test_the_runbooks_table_names_the_contracts_metrics_and_properties() -> None:
    table = section(
        RUNBOOK.read_text(), "## 1. What the connector drives in Klaviyo, and who owns it"
    )
    names = first_column_outside_parentheses(table)
    where = "docs/runbook.md's table of what the connector drives"
    metrics = differences(
        set(METRIC_NAME.findall(names)), set(contract()["metrics"]), where, "metrics"
    )
    properties = differences(
        set(PROPERTY_NAME.findall(names)), contract_properties(), where, "profile properties"
    )
    assert not metrics, metrics
    assert not properties, properties


def test_a_renamed_or_added_metric_is_named_in_the_message() -> None:
    """The comparison itself: what a rename in contract.yml alone would make these tests say."""
    documented = set(metric_table(README.read_text()))
    renamed = (set(contract()["metrics"]) - {"Return Received"}) | {"Return Arrived", "Item Lost"}
    problem = differences(documented, renamed, "README.md's metric table", "metrics")
    assert "lacks the metrics ['Item Lost', 'Return Arrived']" in problem
    assert "names the metrics ['Return Received'], which transforms/contract.yml" in problem
