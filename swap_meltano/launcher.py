"""``swap-meltano <meltano arguments>``: a Meltano command with run files of its own.

Each command gets a system directory ``<.meltano>/commands/<id>/`` (``MELTANO_SYS_DIR_ROOT``)
where every plugin-type directory (``extractors``, ``loaders``, ``mappers``, ``utilities``, ...)
is a link to the project's, so plugin virtualenvs are shared and installed once, while the
``run/`` directory (config, catalog and ``state.json`` files of each invocation) is the command's
alone. The system database is pinned to the project's (``MELTANO_DATABASE_URI``), so job rows and
state (the default ``systemdb`` state backend), like the Klaviyo ledger, stay shared. A pipeline
run (``run``, ``el``, ``elt``, ``schedule run``) first claims its state ids (``claim.py``); when
another command holds one, it prints ``run outcome: already_running`` and exits 1 without
starting Meltano. Nothing else waits for anything: an ops command started during a run runs at
once. The command directory is removed when the command ends (or, if the launcher was killed,
by the next launcher once nobody holds its lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TextIO

from swap_meltano.claim import AlreadyRunningError, ClaimError, claimed
from swap_meltano.project import (
    PLUGIN_TYPES,
    CommandLine,
    MeltanoProject,
    expand_variables,
    pipeline_state_ids,
    sys_dir_default,
)

#: Exit status of a run refused because another run of the pipeline holds its claim: 1, like any
#: run that did not succeed (decisions §2); read the ``run outcome:`` line to tell them apart.
ALREADY_RUNNING_EXIT = 1
#: Exit status when the launcher itself cannot work (no Meltano, a claim it cannot take).
LAUNCHER_ERROR_EXIT = 2
#: Tells a launcher started under another (the receiver under ``swap-meltano invoke``) which
#: system dir is the project's: ``MELTANO_SYS_DIR_ROOT`` there is the outer command's own.
BASE_SYS_DIR_ENV = "SWAP_MELTANO_SYS_DIR"
COMMANDS_DIR = "commands"
#: A command directory whose lock is free and older than this was left by a killed launcher.
STALE_AFTER_SECONDS = 600.0
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
#: How long Meltano waits for the SQLite system database's write lock (Python's default: 5 s).
SQLITE_BUSY_TIMEOUT_SECONDS = 30.0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = CommandLine.parse(args)
    meltano = meltano_argv()
    if meltano is None:
        _say("cannot find the meltano executable")
        return LAUNCHER_ERROR_EXIT
    project = _find_project(command, os.environ)
    if project is None:  # meltano init, --version, --help: nothing to keep apart
        return run_child([*meltano, *args], dict(os.environ), [])
    base = Path(os.environ.get(BASE_SYS_DIR_ENV) or sys_dir_default(project, os.environ))
    database_uri = system_database_uri(project, os.environ, base)
    state_ids = pipeline_state_ids(project, command, os.environ)
    try:
        with claimed(state_ids, database_uri) as claim_fds, command_sys_dir(base) as (sys_dir, fd):
            env = command_env(os.environ, base=base, sys_dir=sys_dir, database_uri=database_uri)
            return run_child([*meltano, *args], env, [*claim_fds, fd])
    except AlreadyRunningError as refused:
        _say(f"{refused}; this run starts nothing")
        sys.stdout.write("run outcome: already_running\n")
        sys.stdout.flush()
        return ALREADY_RUNNING_EXIT
    except ClaimError as problem:
        _say(f"cannot claim the pipeline: {problem}")
        return LAUNCHER_ERROR_EXIT


def _say(message: str) -> None:
    sys.stderr.write(f"swap-meltano: {message}\n")
    sys.stderr.flush()


def meltano_argv() -> list[str] | None:
    """How to start Meltano: through ``meltano_main`` (decimals fixed) when it imports here."""
    if importlib.util.find_spec("meltano") is not None:
        return [sys.executable, "-m", "swap_meltano.meltano_main"]
    found = find_meltano()
    return None if found is None else [found]


def find_meltano() -> str | None:
    """Meltano installed beside this launcher (the project's virtualenv), else on ``PATH``."""
    beside = Path(sys.executable).parent / "meltano"
    return str(beside) if os.access(beside, os.X_OK) else shutil.which("meltano")


def _find_project(command: CommandLine, env: Mapping[str, str]) -> MeltanoProject | None:
    cwd = command.options.get("--cwd")
    env_file = command.options.get("--env-file")
    root = Path(cwd) if isinstance(cwd, str) else Path(env.get("MELTANO_PROJECT_ROOT") or ".")
    found = MeltanoProject.find(root.resolve())
    if found is not None and isinstance(env_file, str):
        return MeltanoProject.load(found.root, env_file)
    return found


def system_database_uri(project: MeltanoProject, env: Mapping[str, str], base: Path) -> str:
    """The project's system database: the configured ``database_uri``, else ``<base>/meltano.db``.

    ``$MELTANO_SYS_DIR_ROOT`` in a configured URI means the project's system dir, not the
    command's own (which would give every command an empty database). A SQLite database gets a
    longer busy timeout (:func:`with_sqlite_busy_timeout`).
    """
    configured = project.setting(env, "database_uri")
    if not configured:
        return with_sqlite_busy_timeout(f"sqlite:///{base / 'meltano.db'}")
    known = {**env, "MELTANO_PROJECT_ROOT": str(project.root), "MELTANO_SYS_DIR_ROOT": str(base)}
    return with_sqlite_busy_timeout(expand_variables(configured, known))


def with_sqlite_busy_timeout(uri: str) -> str:
    """A SQLite URI that waits up to ``SQLITE_BUSY_TIMEOUT_SECONDS`` for another writer.

    Meltano writes its job row, a heartbeat every second and each STATE to the system database;
    several runs at once (one per brand) take turns at its write lock. Python's default wait is
    5 s: a run that waits longer on a busy machine fails with "database is locked", before any
    plugin starts (the job row) or by Meltano killing the target (a STATE), and so ends without a
    ``run outcome:`` line. A URI that sets its own ``timeout`` keeps it.
    """
    if not uri.startswith("sqlite") or re.search(r"[?&]timeout=", uri):
        return uri
    return f"{uri}{'&' if '?' in uri else '?'}timeout={SQLITE_BUSY_TIMEOUT_SECONDS:g}"


def command_env(
    env: Mapping[str, str], *, base: Path, sys_dir: Path, database_uri: str
) -> dict[str, str]:
    launcher_bin = str(Path(sys.executable).parent)
    path = env.get("PATH", "")
    if launcher_bin not in path.split(os.pathsep):
        path = os.pathsep.join(p for p in (launcher_bin, path) if p)
    return {
        **env,
        "MELTANO_SYS_DIR_ROOT": str(sys_dir),
        "MELTANO_DATABASE_URI": database_uri,
        BASE_SYS_DIR_ENV: str(base),
        "PATH": path,
    }


@contextlib.contextmanager
def command_sys_dir(base: Path) -> Iterator[tuple[Path, int]]:
    """A fresh system dir whose plugin-type dirs link to ``base``'s; removed afterwards.

    Yields the dir and the descriptor of its lock, which the child inherits so that the dir
    counts as in use for as long as Meltano runs, even if the launcher is killed.
    """
    commands = base / COMMANDS_DIR
    commands.mkdir(parents=True, exist_ok=True)
    remove_stale_command_dirs(commands)
    name = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{secrets.token_hex(3)}"
    lock = _locked(commands / f"{name}.lock")
    folder = commands / name
    try:
        folder.mkdir()
        for kind in PLUGIN_TYPES:
            (base / kind).mkdir(exist_ok=True)
            (folder / kind).symlink_to((base / kind).resolve(), target_is_directory=True)
        yield folder, lock.fileno()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (commands / f"{name}.lock").unlink()
        lock.close()


def remove_stale_command_dirs(commands: Path, now: float | None = None) -> list[str]:
    """Remove command dirs left by killed launchers: lock free, and older than a few minutes."""
    removed = []
    cutoff = (time.time() if now is None else now) - STALE_AFTER_SECONDS
    for lock_path in commands.glob("*.lock"):
        with contextlib.suppress(FileNotFoundError):
            if lock_path.stat().st_mtime > cutoff:
                continue
            with open(lock_path, "a+") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                shutil.rmtree(lock_path.with_suffix(""), ignore_errors=True)
                lock_path.unlink()
                removed.append(lock_path.stem)
    return removed


def _locked(path: Path) -> TextIO:
    handle = open(path, "a+")  # noqa: SIM115 - held for the command's lifetime
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle


def run_child(args: list[str], env: dict[str, str], pass_fds: list[int]) -> int:
    """Run Meltano; SIGTERM and SIGHUP are passed on, its exit status is ours.

    Ctrl-C is not forwarded: the terminal sends SIGINT to Meltano too (same process group), and a
    second one would cut its clean stop short.
    """
    process = subprocess.Popen(args, env=env, pass_fds=pass_fds)  # noqa: S603 - our own argv

    def forward(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        code = process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code
