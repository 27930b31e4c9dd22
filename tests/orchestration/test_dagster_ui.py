"""`dagster dev` serves the code location: the brands as partitions, a schedule each, in the UI."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.request import urlopen

import pytest

from tests.orchestration.support import DagsterDev, dagster_home
from tests.support.shared import REPO

pytestmark = pytest.mark.slow


def test_dagster_dev_serves_the_brands_code_location(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home(tmp_path / "dagster-home")),
        "SWAP_PROJECT_DIR": str(REPO),
        "SWAP_BRANDS_FILE": str(REPO / "brands.yml"),
        "SWAP_SCHEDULES": "stopped",
    }
    with DagsterDev(env, tmp_path / "dagster.log") as dagster:
        with urlopen(dagster.base + "/", timeout=30) as response:
            assert "Dagster" in response.read().decode()
        found = dagster.repositories()
    [repository] = found
    assert repository["location"]["name"] == "swap-klaviyo-brands"
    schedules = {s["name"]: s["cronSchedule"] for s in repository["schedules"]}
    assert schedules == {
        "acme_returns_to_klaviyo": "*/5 * * * *",
        "globex_returns_to_klaviyo": "*/10 * * * *",
    }
    partitions = {
        p["name"]
        for partition_set in repository["partitionSets"]
        for p in partition_set["partitionsOrError"]["results"]
    }
    assert partitions == {"acme", "globex"}
