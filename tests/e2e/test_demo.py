"""The README's demo path, for real: scripts/demo.sh runs both emulators and `meltano run` twice."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.support.shared import REPO

pytestmark = pytest.mark.meltano


def emulator_processes() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        cmdline = process.info["cmdline"] or []
        if "emulators" in cmdline and "serve" in cmdline and "runtime/demo" in " ".join(cmdline):
            found.append(process)
    return found


def test_demo_runs_the_pipeline_twice_and_leaves_nothing_running() -> None:
    # The set-up is the test run's own (scripts/test.sh ran it): the demo does not repeat it.
    env = {**os.environ, "DEMO_RETURNS": "300", "SKIP_SETUP": "1"}
    result = subprocess.run(
        ["bash", "scripts/demo.sh"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    run1, run2 = out.split("== Run 2")
    # Run 1 delivers every lifecycle metric; run 2 only what moved, the rest deduplicated.
    started_1 = int(re.search(r"accepted\s+Return Started\s+(\d+)", run1).group(1))  # type: ignore[union-attr]
    assert started_1 > 200
    assert "Return Started" not in run2.split("Klaviyo (emulator) now holds")[0]
    assert re.search(r"deduplicated klaviyo_events\s+\d+", run2)
    # What the emulator holds never has more Return Started events than returns with an email.
    holds = re.findall(r"(\d+)\s+Return Started events", out)
    assert holds[0] == holds[1] == str(started_1)
    assert not emulator_processes(), "the demo left an emulator running"
    # The sandbox keys the emulators accept never reach a log or the report.
    for log in (REPO / "runtime" / "demo").glob("*.log"):
        text = log.read_text()
        assert "swap_test_key" not in text, log
        assert "pk_test" not in text, log
    report = REPO / "runtime" / "demo" / "health-report.html"
    assert "Integration health" in out
    assert report.exists()
    assert "<svg" in report.read_text()

    ledger = REPO / "runtime" / "demo" / "klaviyo-ledger.sqlite"
    assert oct(ledger.stat().st_mode & 0o777) == "0o600"
    with sqlite3.connect(ledger) as db:
        runs = db.execute("SELECT status FROM runs ORDER BY started_at").fetchall()
        reasons = dict(
            db.execute(
                "SELECT reason, count(*) FROM deliveries WHERE outcome = 'mapper_exception' "
                "GROUP BY reason"
            ).fetchall()
        )
    assert [r[0] for r in runs] == ["succeeded", "succeeded"]
    assert set(reasons) <= {"missing_email", "invalid_email", "mapping_error"}
    assert reasons.get("missing_email")
    assert reasons.get("invalid_email")
    assert not Path(REPO / "runtime" / "demo" / "emulators.env").exists()
