"""A brand's run waits out another writer of Meltano's SQLite system database.

Several brands run at once against one SQLite system database; each Meltano writes its job row,
a heartbeat every second and every STATE there, taking turns at its write lock. With Python's
default 5 s wait, a run that waited longer on a busy machine failed with "database is locked"
and ended without a ``run outcome:`` line (before any plugin started, or with Meltano killing
the target on a STATE). Here another connection holds the write lock for 8 s from the moment
Meltano says it is starting the job, so Meltano's job row has to wait longer than 5 s.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from tests.brands.support import SWAP_BRANDS, brands_env, brands_file, outcome, sandboxes
from tests.support.shared import REPO
from tests.webhooks.support import isolated_meltano

pytestmark = [pytest.mark.meltano, pytest.mark.slow]

#: Longer than SQLite's default busy timeout in Python (5 s), shorter than the launcher's.
HOLD_SECONDS = 8.0
STARTING = "Running job with name"


def test_a_run_waits_for_the_system_databases_write_lock(tmp_path: Path) -> None:
    with sandboxes(["solo"]) as brands, isolated_meltano(tmp_path) as meltano_env:
        file = brands_file(tmp_path / "brands.yml", brands)
        env = brands_env(brands, meltano_env)
        system_db = Path(meltano_env["MELTANO_SYS_DIR_ROOT"]) / "meltano.db"
        other = sqlite3.connect(system_db, isolation_level=None, check_same_thread=False)
        with contextlib.closing(other):
            other.execute("BEGIN IMMEDIATE")  # another run's write, held
            output = run_holding(file, env, other)
        [brand] = brands
        assert outcome(output) == "succeeded", output[-3000:]
        assert "database is locked" not in output
        assert brand.started() == brand.expected_started()


def run_holding(file: Path, env: dict[str, str], other: sqlite3.Connection) -> str:
    """``swap-brands run solo``; the write lock is released HOLD_SECONDS after the job starts."""
    command = [str(SWAP_BRANDS), "--project-dir", str(REPO), "--brands-file", str(file)]
    release = threading.Timer(HOLD_SECONDS, other.execute, ["COMMIT"])
    lines = []
    with subprocess.Popen(
        [*command, "run", "solo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if STARTING in line and not release.is_alive() and other.in_transaction:
                release.start()
        process.wait(timeout=600)
    assert release.ident is not None, "Meltano never said it was starting the job"
    release.join()
    return "".join(lines)
