"""`dagster dev` serves the code location: the brands as partitions, a schedule each, in the UI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from urllib.error import URLError
from urllib.request import Request, urlopen

import pytest

from tests.support.shared import REPO
from tests.webhooks.support import wait_until

pytestmark = pytest.mark.slow

DAGSTER = REPO / "orchestration" / ".venv" / "bin" / "dagster"
QUERY = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    location { name }
    schedules { name cronSchedule }
    partitionSets { name partitionsOrError { ... on Partitions { results { name } } } }
} } } }
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def graphql(base: str) -> dict:
    body = json.dumps({"query": QUERY}).encode()
    request = Request(f"{base}/graphql", body, {"Content-Type": "application/json"})
    with urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


def answering(url: str) -> bool:
    try:
        with urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except (URLError, OSError):
        return False


def test_dagster_dev_serves_the_brands_code_location(tmp_path: Path) -> None:
    if not DAGSTER.exists():
        pytest.fail("orchestration/.venv is missing: scripts/setup-agency.sh (or test.sh) makes it")
    home = tmp_path / "dagster-home"
    home.mkdir()
    shutil.copy(REPO / "orchestration" / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SWAP_PROJECT_DIR": str(REPO),
        "SWAP_BRANDS_FILE": str(REPO / "brands.yml"),
        "SWAP_SCHEDULES": "stopped",
    }
    log = (tmp_path / "dagster.log").open("w")
    command = [str(DAGSTER), "dev", "-w", "orchestration/workspace.yaml", "-h", "127.0.0.1"]
    process = subprocess.Popen(
        [*command, "-p", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answering(f"{base}/server_info"), timeout=240, what="dagster dev")
        with urlopen(base + "/", timeout=30) as response:
            assert "Dagster" in response.read().decode()
        found = wait_until(
            lambda: graphql(base)["data"]["repositoriesOrError"].get("nodes"),
            timeout=120,
            what="the code location to load",
        )
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
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
