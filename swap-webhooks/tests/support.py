"""What the receiver's own tests share: the receiver in a thread of the test process or as its
real ``swap-webhooks serve`` command, the fake run command (``fake_run.py`` beside this file), and
polling.

Imported as ``tests.support`` from this folder (the tests are a package), so that the receiver's
tests travel with it: nothing here needs Meltano, the project's root package or another plugin.
The project's benchmarks use their own copy (``harness/webhooks.py`` at the repository's root).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import uvicorn

from swap_webhooks import WEBHOOK_PATH, create_app, load_settings
from swap_webhooks.server import server_config
from swap_webhooks.settings import Settings

#: The receiver's command, as installed beside the Python running the tests.
SWAP_WEBHOOKS = Path(sysconfig.get_path("scripts")) / "swap-webhooks"
FAKE_RUN = Path(__file__).with_name("fake_run.py")
SECRET = "whsk_test_0123456789abcdef0123456789abcdef"
STORE = "store_test"


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


def fake_run_command(log: Path, *options: str) -> list[str]:
    return [sys.executable, str(FAKE_RUN), str(log), *options]


def fake_runs(log: Path) -> list[tuple[float, float | None]]:
    """``(start, end)`` of each fake run, in start order (end None while it runs)."""
    if not log.exists():
        return []
    starts: dict[int, float] = {}
    ends: dict[int, float] = {}
    for line in log.read_text().splitlines():
        row = json.loads(line)
        (starts if row["event"] == "start" else ends)[row["pid"]] = row["t"]
    return sorted((t, ends.get(pid)) for pid, t in starts.items())


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
                [str(SWAP_WEBHOOKS), "serve"],
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


class AlertSink:
    """A Slack-compatible alert webhook on a free loopback port that keeps the texts it is sent.

    A context manager: each test (or each brand of one) gets a destination of its own.
    """

    def __init__(self) -> None:
        self.texts: list[str] = []
        texts = self.texts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                texts.append(str(json.loads(body)["text"]))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        # A short poll: shutdown() waits for the serving loop to look (0.5 s by default).
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> AlertSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
