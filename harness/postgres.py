"""A throwaway PostgreSQL cluster (tests, benchmarks): Debian's server binaries, a non-root user.

The session fixture ``postgres_url`` runs ``initdb`` and ``pg_ctl`` from
``/usr/lib/postgresql/<version>/bin`` (Debian's ``postgresql`` package) as the ``postgres``
system user when the tests run as root (PostgreSQL refuses to run as root), in a temporary data
directory owned by it, on a free loopback port, with trust authentication for loopback only. It
stops and deletes the cluster at the end of the session. ``postgres_db`` gives each test a
database of its own on it.

Without PostgreSQL (or psycopg) a test using them fails when ``CI`` is set (CI must run it:
``scripts/test.sh`` installs the package) and is skipped otherwise, saying what to install.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

#: The system user running the server when the tests run as root (Debian's package creates it).
SERVER_USER = "postgres"


def missing(why: str) -> None:
    """A missing component fails in CI and skips elsewhere (decisions.md §7)."""
    message = f"{why}; install it with `apt-get install -y postgresql` (scripts/test.sh does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def server_binaries() -> Path | None:
    """The newest installed PostgreSQL's ``bin`` folder holding ``initdb`` and ``pg_ctl``."""
    found = [
        path
        for path in Path("/usr/lib/postgresql").glob("*/bin")
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file()
    ]
    return max(found, key=lambda p: int(p.parent.name)) if found else None


def _as_server_user(command: list[str]) -> list[str]:
    """``command`` run as a non-root user: PostgreSQL will not run as root."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", SERVER_USER, "--", *command]


def _server_user_ids() -> tuple[int, int]:
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        shell = ["--shell", "/usr/sbin/nologin"]
        subprocess.run(["useradd", "--system", "--no-create-home", *shell, SERVER_USER], check=True)
        entry = pwd.getpwnam(SERVER_USER)
    return entry.pw_uid, entry.pw_gid


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Cluster:
    """One PostgreSQL cluster in a temporary folder: ``start``, ``url``, ``stop``."""

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        # Under /tmp when root: a TMPDIR only root may enter would lock the server user out.
        where = "/tmp" if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="klaviyo-pg-", dir=where))
        self.data = self.root / "data"
        self.port = 0
        uid, gid = _server_user_ids()
        os.chown(self.root, uid, gid)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            _as_server_user([str(self.binaries / args[0]), *args[1:]]),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def start(self) -> None:
        done = self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "-N"
        )
        if done.returncode:
            pytest.fail(f"initdb failed: {done.stderr.strip()[-2000:]}")
        for _attempt in range(5):  # another process may take the free port first
            self.port = _free_port()
            options = (
                f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c full_page_writes=off -c synchronous_commit=off"
            )
            log = self.root / "server.log"
            done = self._run(
                "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(log), "-w", "start"
            )
            if done.returncode == 0:
                return
        pytest.fail(f"PostgreSQL did not start: {done.stderr.strip()[-2000:]}")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
