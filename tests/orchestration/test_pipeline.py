"""How the Dagster asset judges a brand's run: by its outcome line, never by its exit status."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from swap_orchestration.pipeline import BrandRun, Project, outcome_of, run_brand


@pytest.mark.parametrize(
    ("outcome", "retry"),
    [
        ("succeeded", None),
        ("already_running", 30.0),
        ("throttle_deadline", 120.0),
        ("crashed", 60.0),
        ("interrupted", 30.0),
        ("no_outcome", 60.0),
        ("auth_failed", None),
        ("mapping_errors_held", None),
        ("set_aside_over_threshold", None),
        ("config", None),
    ],
)
def test_the_outcome_decides_whether_to_try_again(outcome: str, retry: float | None) -> None:
    run = BrandRun("acme", outcome, 1, 1.0, "", Path("x.log"))
    assert run.retry_after == retry


def test_the_last_outcome_line_counts_whatever_follows_it() -> None:
    lines = ["run outcome: crashed", "target done", "run outcome: auth_failed", "Run completed"]
    assert outcome_of(lines, 1) == "auth_failed"
    assert outcome_of(["Meltano could not start"], 1) == "no_outcome"
    assert outcome_of(["brand acme: ACME_KEY (Swap API key) is not set"], 2) == "config"


def test_a_run_keeps_its_whole_output_owner_only_and_reads_its_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / ".venv" / "bin" / "swap-brands"
    fake.parent.mkdir(parents=True)
    fake.write_text(
        '#!/bin/sh\necho "args: $*"\nfor i in $(seq 100); do echo line $i; done\n'
        "echo 'run outcome: throttle_deadline' >&2\necho 'Run completed'\nexit 1\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.delenv("SWAP_RUN_LOG_DIR", raising=False)
    run = run_brand(Project(tmp_path, tmp_path / "brands.yml"), "acme", "run-1-0")
    assert (run.outcome, run.exit_code) == ("throttle_deadline", 1)
    assert run.retry_after == 120.0
    text = run.log_file.read_text()
    assert text.startswith(f"args: --project-dir {tmp_path} --brands-file {tmp_path}/brands.yml")
    assert "run acme" in text.splitlines()[0]
    assert "line 1\n" in text
    assert run.tail.splitlines()[-1] == "Run completed"
    assert len(run.tail.splitlines()) == 40
    assert run.log_file == tmp_path / "runtime" / "dagster-runs" / "acme" / "run-1-0.log"
    assert stat.S_IMODE(run.log_file.stat().st_mode) == 0o600
