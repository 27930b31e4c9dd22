"""``dagster dev`` for the tests: started from ``orchestration/.venv`` on a free port, and queried.

Dagster lives in its own virtualenv, so the tests start its command-line tool as a process (the
webserver, the daemon that dequeues runs, and the code location's server) and speak to its
webserver's GraphQL API over HTTP, as the webhook receiver does.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.request import Request, urlopen

import pytest

from tests.support.shared import REPO
from tests.webhooks.support import wait_until

DAGSTER = REPO / "orchestration" / ".venv" / "bin" / "dagster"
#: The code location's repositories: its schedules and partitions.
REPOSITORIES_QUERY = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    location { name }
    schedules { name cronSchedule }
    partitionSets { name partitionsOrError { ... on Partitions { results { name } } } }
} } } }
"""
#: Every run of the instance with its status and tags.
RUNS_QUERY = """
{ runsOrError { ... on Runs { results { runId jobName status tags { key value } } } } }
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def graphql(base: str, query: str = REPOSITORIES_QUERY) -> dict[str, Any]:
    body = json.dumps({"query": query}).encode()
    request = Request(f"{base}/graphql", body, {"Content-Type": "application/json"})
    with urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


def answering(url: str) -> bool:
    try:
        with urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except (URLError, OSError):
        return False


def dagster_home(folder: Path) -> Path:
    """A ``DAGSTER_HOME`` holding the project's instance settings (its run queue and limits)."""
    if not DAGSTER.exists():
        pytest.fail("orchestration/.venv is missing: scripts/setup-agency.sh (or test.sh) makes it")
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "orchestration" / "dagster.yaml", folder / "dagster.yaml")
    return folder


class DagsterDev:
    """``dagster dev -w orchestration/workspace.yaml`` on ``port``, its output in ``log``."""

    def __init__(self, env: Mapping[str, str], log: Path, port: int | None = None) -> None:
        self.env = dict(env)
        self.log = log
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DagsterDev:
        """Start it and wait until the webserver answers and the code location has loaded."""
        command = [str(DAGSTER), "dev", "-w", "orchestration/workspace.yaml", "-h", "127.0.0.1"]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*command, "-p", str(self.port)],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until(self._serving, timeout=240, what="dagster dev")
            wait_until(self.repositories, timeout=120, what="the code location to load")
        except BaseException:
            self.stop()
            raise
        return self

    def _serving(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"dagster dev exited:\n{self.log.read_text()[-5000:]}")
        return answering(f"{self.base}/server_info")

    def repositories(self) -> list[dict[str, Any]]:
        return list(graphql(self.base)["data"]["repositoriesOrError"].get("nodes") or [])

    def runs(self) -> list[dict[str, Any]]:
        """Every run: id, job, status and tags (as a dict)."""
        found = graphql(self.base, RUNS_QUERY)["data"]["runsOrError"]["results"]
        return [{**run, "tags": {tag["key"]: tag["value"] for tag in run["tags"]}} for run in found]

    def stop(self) -> None:
        """Stop the webserver, daemon and code server (the whole process group)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        with contextlib.suppress(ProcessLookupError):  # anything of it still left
            os.killpg(self.process.pid, signal.SIGKILL)

    def __enter__(self) -> DagsterDev:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
