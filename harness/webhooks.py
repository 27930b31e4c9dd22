"""What the webhook tests share: receivers (in a thread, or the real command in a process), the fake
run command, an isolated Meltano system directory, and polling.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import uvicorn

from swap_webhooks import WEBHOOK_PATH, create_app, load_settings
from swap_webhooks.server import server_config
from swap_webhooks.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
MELTANO = VENV_BIN / "meltano"
FAKE_RUN = Path(__file__).with_name("fake_run.py")
SECRET = "whsk_test_0123456789abcdef0123456789abcdef"
STORE = "store_test"
STATE_ID = "sandbox:tap-swapcommerce-to-target-klaviyo"


def wait_until(
    condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(interval)


def get_json(url: str) -> Any:
    with urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def settings(tmp: Path, run_command: list[str], **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "webhook_secret": SECRET,
        "store_id": STORE,
        "project_dir": str(tmp),
        "state_db": str(tmp / "webhooks.sqlite"),
        "run_command": run_command,
        "coalesce_seconds": 0.05,
        "retry_seconds": 0.2,
    }
    values.update(changes)
    return load_settings(env={}, **values)


class ReceiverThread:
    """The receiver app under uvicorn in a thread of the test process, on a free loopback port."""

    def __init__(self, config: Settings, env: Mapping[str, str] | None = None) -> None:
        self.settings = config
        self.app = create_app(config, env=env)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        # The hardened configuration `swap-webhooks serve` uses (timeouts, connection cap).
        self.server = uvicorn.Server(server_config(self.app, config, log_level="warning"))
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._socket]}, name="receiver"
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.base + WEBHOOK_PATH

    def start(self) -> ReceiverThread:
        self._thread.start()
        wait_until(lambda: self.server.started or not self._thread.is_alive(), what="startup")
        if not self.server.started:
            raise RuntimeError("the receiver did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=60)
        self._socket.close()
        assert not self._thread.is_alive(), "the receiver did not stop"

    def __enter__(self) -> ReceiverThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def metrics(self) -> dict[str, Any]:
        return dict(get_json(self.base + "/metrics"))

    def health(self) -> dict[str, Any]:
        return dict(get_json(self.base + "/health"))

    def idle(self) -> bool:
        """Nothing waits and nothing runs."""
        health = self.health()
        queue = health["queue"]
        return bool(
            queue["pending"] == 0 and queue["in_run"] == 0 and health["current_run"] is None
        )


class ReceiverProcess:
    """The real ``swap-webhooks serve`` command in its own process, configured by environment."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.env = {**os.environ, **env, "SWAP_WEBHOOKS_PORT": "0"}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.base = ""

    def start(self) -> ReceiverProcess:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "swap-webhooks"), "serve"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

        def listening() -> str | None:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"receiver exited: {self.log.read_text()[offset:]}")
            found = re.search(r"running on (http://\S+)", self.log.read_text()[offset:])
            return found.group(1) if found else None

        self.base = wait_until(listening, timeout=30, what="the receiver to listen")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    @property
    def url(self) -> str:
        return self.base + WEBHOOK_PATH


@contextlib.contextmanager
def isolated_meltano(tmp: Path) -> Iterator[dict[str, str]]:
    """Environment for ``meltano run`` with its own system db, run dir, logs and ledger.

    The project's installed plugins are shared through symlinks; everything a run writes (job
    rows and state, ``.meltano/run`` catalogs, logs, the Klaviyo ledger) stays under ``tmp``, so
    tests neither see nor disturb other runs in the same project.
    """
    sys_dir = tmp / "meltano-sys"
    sys_dir.mkdir()
    for kind in ("extractors", "loaders", "mappers", "utilities"):
        (sys_dir / kind).symlink_to(ROOT / ".meltano" / kind)
    source = sqlite3.connect(f"file:{ROOT / '.meltano' / 'meltano.db'}?mode=ro", uri=True)
    target = sqlite3.connect(sys_dir / "meltano.db")
    try:
        source.backup(target)
        target.execute("DELETE FROM runs")
        target.execute("DELETE FROM state")
        target.commit()
    finally:
        source.close()
        target.close()
    yield {
        "MELTANO_SYS_DIR_ROOT": str(sys_dir),
        "TARGET_KLAVIYO_LEDGER_URL": f"sqlite:///{tmp / 'ledger.sqlite'}",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


def meltano_jobs(sys_dir: str | Path) -> list[dict[str, Any]]:
    """The system db's job rows (``runs`` table), oldest first."""
    with contextlib.closing(sqlite3.connect(Path(sys_dir) / "meltano.db")) as db:
        rows = db.execute(
            "SELECT job_name, state, started_at, ended_at FROM runs ORDER BY started_at"
        ).fetchall()
    return [
        dict(zip(("job_name", "state", "started_at", "ended_at"), r, strict=True)) for r in rows
    ]


def emulator_env(swap: Any, klaviyo_url: str, klaviyo_key: str) -> dict[str, str]:
    return {
        "SWAP_API_URL": swap.url,
        "SWAP_API_KEY": swap.api_key,
        "SWAP_STORE_ID": swap.store_id,
        "KLAVIYO_API_URL": klaviyo_url,
        "KLAVIYO_API_KEY": klaviyo_key,
    }
