"""``swap-meltano``: the state ids it claims, the claim itself, and the per-command system dir.

The 20-round test of commands started together in the real project is
``tests/webhooks/test_concurrent_commands.py``; these are the launcher's parts, quick.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from swap_meltano.claim import AlreadyRunningError, ClaimError, advisory_key, claimed
from swap_meltano.launcher import (
    STALE_AFTER_SECONDS,
    command_sys_dir,
    remove_stale_command_dirs,
    system_database_uri,
    with_sqlite_busy_timeout,
)
from swap_meltano.project import CommandLine, MeltanoProject, pipeline_state_ids
from tests.support.shared import REPO

LAUNCHER = REPO / ".venv" / "bin" / "swap-meltano"
STATE_ID = "sandbox:tap-swapcommerce-to-target-klaviyo"


@pytest.fixture
def project() -> MeltanoProject:
    found = MeltanoProject.find(REPO)
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["run", "returns-to-klaviyo"], {}, [STATE_ID]),
        (
            ["--environment=prod", "run", "returns-to-klaviyo"],
            {},
            [STATE_ID.replace("sandbox", "prod")],
        ),
        (
            ["--environment", "prod", "run", "returns-to-klaviyo"],
            {},
            [STATE_ID.replace("sandbox", "prod")],
        ),
        (
            ["run", "returns-to-klaviyo"],
            {"MELTANO_ENVIRONMENT": "prod"},
            [STATE_ID.replace("sandbox", "prod")],
        ),
        (
            ["run", "tap-swapcommerce", "swap-to-klaviyo", "target-klaviyo", "--force"],
            {},
            [STATE_ID],
        ),
        (["run", "--state-id-suffix", "acme", "returns-to-klaviyo"], {}, [STATE_ID + ":acme"]),
        (["run", "returns-to-klaviyo"], {"MELTANO_RUN_STATE_ID_SUFFIX": "b"}, [STATE_ID + ":b"]),
        (["schedule", "run", "returns-to-klaviyo-every-5-minutes"], {}, [STATE_ID]),
        (["el", "tap-swapcommerce", "target-klaviyo", "--state-id", "mine"], {}, ["mine"]),
        (["--no-environment", "run", "returns-to-klaviyo"], {}, []),
        (["invoke", "tap-swapcommerce", "--discover"], {}, []),
        (["invoke", "target-klaviyo:summary"], {}, []),
        (["state", "list"], {}, []),
    ],
)
def test_the_state_ids_a_command_writes(
    project: MeltanoProject, argv: list[str], env: dict[str, str], expected: list[str]
) -> None:
    assert pipeline_state_ids(project, CommandLine.parse(argv), env) == expected


def test_a_claim_is_exclusive_and_ends_with_its_holder(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'meltano.db'}"
    with claimed([STATE_ID], uri) as fds:
        assert len(fds) == 1
        with pytest.raises(AlreadyRunningError, match=STATE_ID), claimed([STATE_ID], uri):
            pass
        with claimed(["sandbox:other-to-pipeline"], uri):  # another pipeline is not held up
            pass
    with claimed([STATE_ID], uri):  # released
        pass
    assert {p.parent.name for p in tmp_path.glob("*/*.lock")} == {"meltano.db.claims"}


def test_an_unknown_system_database_cannot_claim() -> None:
    with pytest.raises(ClaimError, match="mysql"), claimed([STATE_ID], "mysql://h/db"):
        pass


def test_a_postgres_system_database_claims_with_an_advisory_lock(postgres_db: str) -> None:
    with claimed([STATE_ID], postgres_db):
        with pytest.raises(AlreadyRunningError), claimed([STATE_ID], postgres_db):
            pass
        with claimed(["sandbox:other-to-pipeline"], postgres_db):
            pass
    with claimed([STATE_ID], postgres_db):  # the session that held it is closed
        pass
    assert advisory_key(STATE_ID) == advisory_key(STATE_ID) != advisory_key(STATE_ID + ":x")


def test_the_system_database_is_the_projects(project: MeltanoProject, tmp_path: Path) -> None:
    default = f"sqlite:///{tmp_path / 'meltano.db'}?timeout=30"
    assert system_database_uri(project, {}, tmp_path) == default
    env = {"MELTANO_DATABASE_URI": "sqlite:///$MELTANO_SYS_DIR_ROOT/other.db"}
    assert (
        system_database_uri(project, env, tmp_path) == f"sqlite:///{tmp_path}/other.db?timeout=30"
    )


def test_a_sqlite_system_database_waits_longer_for_its_write_lock() -> None:
    """Python's 5 s let concurrent brand runs fail on "database is locked" (tests/brands)."""
    assert with_sqlite_busy_timeout("sqlite:////x/meltano.db?mode=rw") == (
        "sqlite:////x/meltano.db?mode=rw&timeout=30"
    )
    assert with_sqlite_busy_timeout("sqlite:////x/meltano.db?timeout=2") == (
        "sqlite:////x/meltano.db?timeout=2"
    )
    postgres = "postgresql+psycopg://u@localhost/meltano"
    assert with_sqlite_busy_timeout(postgres) == postgres


def test_claims_of_a_sqlite_database_with_options_sit_beside_the_file(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'meltano.db'}?timeout=30"
    with claimed([STATE_ID], uri):
        [claim] = (tmp_path / "meltano.db.claims").iterdir()
        assert claim.name.startswith("sandbox_tap-swapcommerce-to-target-klaviyo.")


def test_each_command_dir_links_the_plugins_and_goes_away(tmp_path: Path) -> None:
    base = tmp_path / ".meltano"
    (base / "extractors" / "tap-x" / "venv").mkdir(parents=True)
    with command_sys_dir(base) as (folder, _fd):
        assert (folder / "extractors" / "tap-x" / "venv").is_dir()
        assert (folder / "extractors").resolve() == (base / "extractors").resolve()
        assert (folder / "utilities").is_symlink()
        (folder / "run" / "tap-x").mkdir(parents=True)  # what Meltano writes stays its own
        assert not (base / "run").exists()
        with command_sys_dir(base) as (other, _):
            assert other != folder
    assert list((base / "commands").iterdir()) == []
    assert (base / "extractors" / "tap-x" / "venv").is_dir()


def test_dirs_of_killed_commands_are_removed_once_nobody_holds_them(tmp_path: Path) -> None:
    commands = tmp_path / "commands"
    (commands / "dead").mkdir(parents=True)
    (commands / "dead.lock").touch()
    old = time.time() - STALE_AFTER_SECONDS - 1
    os.utime(commands / "dead.lock", (old, old))
    with command_sys_dir(tmp_path) as (alive, _):
        os.utime(alive.with_suffix(".lock"), (old, old))
        assert remove_stale_command_dirs(commands) == []  # held: kept whatever its age
        assert alive.is_dir()
    assert not (commands / "dead").exists()


def test_a_second_run_ends_at_once_with_already_running(tmp_path: Path) -> None:
    """Through the real console script: the claim is held, so Meltano never starts."""
    base = tmp_path / "sys"
    base.mkdir()
    env = {**os.environ, "MELTANO_SYS_DIR_ROOT": str(base)}
    env.pop("SWAP_MELTANO_SYS_DIR", None)
    with claimed([STATE_ID], f"sqlite:///{base / 'meltano.db'}"):
        result = subprocess.run(
            [str(LAUNCHER), "run", "returns-to-klaviyo"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert result.stdout == "run outcome: already_running\n"
    assert f"another run of {STATE_ID} is in progress (pid {os.getpid()}" in result.stderr
    assert not (base / "commands").exists() or not any((base / "commands").iterdir())
