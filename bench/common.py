"""What every benchmark needs: emulators in their own processes, and measured commands.

Figures come from real processes over loopback, as in production: wall time, CPU seconds and
peak resident memory of each process (sampled with psutil), never from in-process timers alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@dataclass
class Measured:
    """One process's cost: wall seconds, CPU seconds and peak RSS, plus RSS samples over time."""

    wall: float
    cpu: float
    peak_rss_mb: float
    returncode: int
    rss_samples_mb: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "wall_s": round(self.wall, 2),
            "cpu_s": round(self.cpu, 2),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
        }


class Sampler:
    """Polls a process tree's RSS and CPU until it exits."""

    def __init__(self, process: psutil.Process, interval: float = 0.05) -> None:
        self.process = process
        self.interval = interval
        self.peak = 0.0
        self.cpu = 0.0
        self.samples: list[float] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            try:
                procs = [self.process, *self.process.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in procs) / 2**20
                cpu = sum(sum(p.cpu_times()[:2]) for p in procs)
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            self.cpu = max(self.cpu, cpu)
            self.samples.append(rss)
            time.sleep(self.interval)

    def join(self) -> None:
        self._thread.join(timeout=2)


def measure(
    command: Sequence[str],
    *,
    stdin: IO[bytes] | int | None = None,
    stdout: IO[bytes] | int | None = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
) -> Measured:
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL, env=env, cwd=cwd
    )
    sampler = Sampler(psutil.Process(process.pid)).start()
    returncode = process.wait()
    wall = time.perf_counter() - started
    sampler.join()
    return Measured(wall, sampler.cpu, sampler.peak, returncode, sampler.samples)


@contextmanager
def emulators(*args: str) -> Iterator[dict[str, str]]:
    """Both emulators in their own process (as the real APIs are); yields their env vars."""
    with tempfile.TemporaryDirectory() as tmp:
        env_file = Path(tmp, "emulators.env")
        process = subprocess.Popen(
            [sys.executable, "-m", "emulators", "serve", "--env-file", str(env_file), *args],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.time() + 120
            while not env_file.exists() or not env_file.read_text():
                if process.poll() is not None or time.time() > deadline:
                    raise RuntimeError("the emulators did not start")
                time.sleep(0.1)
            values = {}
            for line in env_file.read_text().splitlines():
                key, _, value = line.removeprefix("export ").partition("=")
                values[key] = value
            yield values
        finally:
            process.terminate()
            process.wait(timeout=30)


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


def returns_only_catalog(tap: Path, config: Path, out: Path) -> Path:
    """The catalog the pipeline uses: the `returns` stream alone."""
    catalog = json.loads(
        subprocess.run(
            [str(tap), "--config", str(config), "--discover"],
            capture_output=True,
            check=True,
            text=True,
        ).stdout
    )
    for stream in catalog["streams"]:
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = stream["tap_stream_id"] == "returns"
    return write_json(out, catalog)
