"""Runs of the same pipeline kept apart: Meltano's own job check, and the launcher's claim.

Meltano's per-state-id check is a check then an insert (``JobFinder.latest_running``, then the job
row), not an atomic claim: two runs started within milliseconds of each other can both pass it (4
of 14 simultaneous starts here) and then clash on the shared ``.meltano/run`` files. The first test
starts the second run once the first holds Meltano's lock, the case that check does cover; the
launcher (``swap-meltano``) claims atomically, which ``test_concurrent_commands.py`` checks for
simultaneous starts. The receiver runs through the launcher and retries a refused run at once.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from emulators.swap import LIST_PATH
from swap_webhooks.store import DeliveryStore
from tests.support.pipeline import Pipeline
from tests.webhooks.support import (
    MELTANO,
    ROOT,
    SECRET,
    STATE_ID,
    VENV_BIN,
    ReceiverThread,
    meltano_jobs,
    settings,
    wait_until,
)

pytestmark = [pytest.mark.meltano, pytest.mark.slow]


LAUNCHER = VENV_BIN / "swap-meltano"


def start_meltano_run(
    pipeline: Pipeline, log: Path, program: Path = MELTANO
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(program), "run", "returns-to-klaviyo"],
            cwd=ROOT,
            env=pipeline.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def running_jobs(pipeline: Pipeline) -> list[dict[str, object]]:
    return [j for j in meltano_jobs(pipeline.sys_dir) if j["state"] == "RUNNING"]


def hold_first_page(pipeline: Pipeline, seconds: float) -> None:
    """Keep the next run busy: its first page of returns comes ``seconds`` late."""
    pipeline.swap.faults.add(kind="slow", delay=seconds, path=LIST_PATH, count=1)


def test_a_second_meltano_run_is_refused_while_the_first_runs(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    hold_first_page(pipeline, 4.0)
    first = start_meltano_run(pipeline, tmp_path / "first.log")
    second = None
    try:
        wait_until(lambda: running_jobs(pipeline), timeout=60, what="the first job to run")
        second = start_meltano_run(pipeline, tmp_path / "second.log")
        assert second.wait(timeout=120) == 1
        # Refused while the first was still running: never both running.
        assert first.poll() is None
        assert first.wait(timeout=120) == 0
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=60)

    refusal = (tmp_path / "second.log").read_text()
    assert f"Another '{STATE_ID}' pipeline is already running" in refusal
    # The refused run never became a job: one job, and it succeeded.
    jobs = meltano_jobs(pipeline.sys_dir)
    assert [(j["job_name"], j["state"]) for j in jobs] == [(STATE_ID, "SUCCESS")]


def test_the_receiver_runs_right_after_a_run_that_holds_the_claim(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    hold_first_page(pipeline, 4.0)
    person = start_meltano_run(pipeline, tmp_path / "person.log", LAUNCHER)
    config = settings(
        tmp_path,
        [str(LAUNCHER), "run", "returns-to-klaviyo"],
        project_dir=str(ROOT),
        claim_retry_seconds=0.5,
        retry_seconds=3600,  # a back-off would leave the delivery waiting past the test
    )
    try:
        wait_until(lambda: running_jobs(pipeline), timeout=60, what="the person's job to run")
        with ReceiverThread(config, env=pipeline.env) as receiver:
            created, result = pipeline.swap.create_return_and_notify(
                receiver.url, SECRET, customer_email="lock.retry@example.com"
            )
            assert result.status == 200
            wait_until(
                lambda: receiver.metrics()["runs"]["succeeded"] == 1,
                timeout=180,
                interval=0.5,
                what="the receiver's run to get through",
            )
            metrics = receiver.metrics()
        assert person.wait(timeout=120) == 0
    finally:
        if person.poll() is None:
            person.terminate()
            person.wait(timeout=60)

    assert metrics["runs"]["already_running"] >= 1
    assert metrics["runs"]["crashed"] == 0
    with DeliveryStore(config.state_db) as store:
        [delivery] = store.deliveries()
        [run] = store.runs()
    assert delivery["status"] == "handled"
    assert delivery["attempts"] == 1
    assert run["refusals"] == metrics["runs"]["already_running"]
    assert run["outcome"] == "succeeded"
    assert Path(run["log_file"]).read_text().count("run outcome: already_running") >= 1
    # The jobs that did run never overlapped.
    jobs = meltano_jobs(pipeline.sys_dir)
    assert [j["state"] for j in jobs] == ["SUCCESS", "SUCCESS"]
    assert str(jobs[0]["ended_at"]) <= str(jobs[1]["started_at"])
    started = pipeline.klaviyo.events(metric="Return Started", email="lock.retry@example.com")
    assert [e["unique_id"] for e in started] == [f"swap:{created['return_id']}:started"]
