"""Several Meltano commands started at the same moment in one project, through ``swap-meltano``.

Each round starts together two runs of the pipeline, an ``invoke`` of every plugin and an ops
command. Under plain Meltano 4.4 these share ``.meltano/run/<plugin>/`` and fail on each other's
files (issue 9: ``state.json: No such file or directory``, ``Invalid catalog``); through the
launcher each has run files of its own, and the claim on the state id lets exactly one run go.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from swap_meltano.claim import lock_name
from tests.support.pipeline import Pipeline
from tests.webhooks.support import ROOT, STATE_ID, VENV_BIN, meltano_jobs

# About 15 s a round on 2 idle cores (5 min in all); far longer on a loaded machine.
pytestmark = [pytest.mark.meltano, pytest.mark.slow, pytest.mark.timeout(3600)]

LAUNCHER = VENV_BIN / "swap-meltano"
ROUNDS = 20
RUN = ("run", "returns-to-klaviyo")
OTHERS = {
    "tap": ("invoke", "tap-swapcommerce", "--discover"),
    "mapper": ("invoke", "swap-transforms", "--about"),
    "target": ("invoke", "target-klaviyo", "--about"),
    "receiver": ("invoke", "swap-webhooks", "--help"),
    "ops": ("invoke", "target-klaviyo:summary"),
}
#: What Meltano 4.4 prints when another command removed or rewrote a plugin's run files.
CLASH = re.compile(r"No such file or directory|Invalid JSON|Invalid catalog|Invalid value for")
OUTCOME = re.compile(r"run outcome: ([a-z_]+)")


@dataclass
class Finished:
    name: str
    code: int
    output: str

    @property
    def outcome(self) -> str | None:
        found = OUTCOME.findall(self.output)
        return found[-1] if found else None


def start_together(pipeline: Pipeline, folder: Path) -> list[tuple[str, subprocess.Popen[bytes]]]:
    commands = {"run-1": RUN, "run-2": RUN, **OTHERS}
    started = []
    for name, args in commands.items():
        with (folder / f"{name}.log").open("wb") as out:
            started.append(
                (
                    name,
                    subprocess.Popen(
                        [str(LAUNCHER), *args],
                        cwd=ROOT,
                        env=pipeline.env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    ),
                )
            )
    return started


def finish(started: list[tuple[str, subprocess.Popen[bytes]]], folder: Path) -> list[Finished]:
    done = []
    try:
        for name, process in started:
            code = process.wait(timeout=600)
            done.append(Finished(name, code, (folder / f"{name}.log").read_text()))
    finally:
        for _, process in started:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=60)
    return done


def test_commands_started_together_never_corrupt_each_other(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    # A first run alone creates the ledger, which the ops command of every round reads.
    first = subprocess.run(
        [str(LAUNCHER), *RUN], cwd=ROOT, env=pipeline.env, capture_output=True, check=False
    )
    assert first.returncode == 0, first.stdout[-3000:]
    emails = []
    for round_number in range(ROUNDS):
        folder = tmp_path / f"round-{round_number:02d}"
        folder.mkdir()
        # Something new to deliver in the first rounds; later rounds may find nothing new.
        if round_number < 3:
            email = f"round.{round_number}@example.com"
            pipeline.swap.create_return(customer_email=email)
            emails.append(email)
        results = finish(start_together(pipeline, folder), folder)

        for result in results:
            assert not CLASH.search(result.output), (round_number, result.name, result.output)
        others = [r for r in results if not r.name.startswith("run-")]
        assert [(r.name, r.code) for r in others] == [(r.name, 0) for r in others], round_number
        runs = sorted((r for r in results if r.name.startswith("run-")), key=lambda r: r.code)
        # Exactly one run went; the other was refused before any plugin started.
        assert [r.code for r in runs] == [0, 1], (round_number, [r.output for r in runs])
        assert runs[1].outcome == "already_running"
        assert len(runs[1].output.splitlines()) == 2  # the refusal, and the outcome: no Meltano
        assert runs[0].outcome != "already_running"

    # One Meltano job per round (and the first run's), each a success: the refused runs never
    # became jobs.
    jobs = meltano_jobs(pipeline.sys_dir)
    assert [(j["job_name"], j["state"]) for j in jobs] == [(STATE_ID, "SUCCESS")] * (ROUNDS + 1)
    # Every new return reached Klaviyo exactly once.
    for email in emails:
        started = pipeline.klaviyo.events(metric="Return Started", email=email)
        assert len(started) == 1, email
    # Each command's system dir was removed when it ended; the shared plugin dirs remain.
    commands = pipeline.sys_dir / "commands"
    assert sorted(p.name for p in commands.iterdir()) == []
    assert (pipeline.sys_dir / "meltano.db.claims" / lock_name(STATE_ID)).exists()
    assert not (pipeline.sys_dir / "run" / "tap-swapcommerce").exists()
