"""Meltano's per-state-id job lock, which keeps the receiver's runs apart from the schedule's and
a person's: checked on the real ``meltano run returns-to-klaviyo``.

Found while writing these: the lock is a check then an insert (``JobFinder.latest_running``, then
the job row), not an atomic claim. Two runs started within milliseconds of each other can both pass
the check (4 of 14 simultaneous starts here); they then clash on the shared
``.meltano/run`` catalog file and fail. The tests below start the second run once the first holds
the lock, which is the case the lock does cover.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from emulators.swap import LIST_PATH
from swap_webhooks.store import DeliveryStore
from tests.webhooks.conftest import Pipeline
from tests.webhooks.support import (
    MELTANO,
    ROOT,
    SECRET,
    STATE_ID,
    ReceiverThread,
    meltano_jobs,
    settings,
    wait_until,
)

pytestmark = [pytest.mark.meltano, pytest.mark.slow]


def start_meltano_run(pipeline: Pipeline, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(MELTANO), "run", "returns-to-klaviyo"],
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


def test_the_receiver_retries_a_run_refused_by_the_lock_until_it_runs(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    hold_first_page(pipeline, 4.0)
    person = start_meltano_run(pipeline, tmp_path / "person.log")
    config = settings(
        tmp_path,
        [str(MELTANO), "run", "returns-to-klaviyo"],
        project_dir=str(ROOT),
        retry_seconds=1.0,
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

    assert metrics["runs"]["locked_out"] >= 1
    assert metrics["runs"]["failed"] == 0
    with DeliveryStore(config.state_db) as store:
        [delivery] = store.deliveries()
    assert delivery["status"] == "handled"
    assert delivery["attempts"] == metrics["runs"]["locked_out"] + 1
    # The jobs that did run never overlapped.
    jobs = meltano_jobs(pipeline.sys_dir)
    assert [j["state"] for j in jobs] == ["SUCCESS", "SUCCESS"]
    assert str(jobs[0]["ended_at"]) <= str(jobs[1]["started_at"])
    started = pipeline.klaviyo.events(metric="Return Started", email="lock.retry@example.com")
    assert [e["unique_id"] for e in started] == [f"swap:{created['return_id']}:started"]
