"""One brand's run as Dagster sees it: a ``swap-brands run <brand>`` subprocess and its outcome.

Dagster and Meltano live in separate virtualenvs, so this module imports nothing of the project:
it starts the project's ``swap-brands`` executable, keeps the run's whole output in a log file,
and reads the run's outcome from its last ``run outcome: <outcome>`` line (decisions §2), never
from the exit status, which is 1 for every kind of failure. What to do next follows from the
outcome: a passing condition (another run holds the brand, Klaviyo throttled, a crash) is tried
again after a wait; a condition a person must fix (a revoked key, a mapping error, too much set
aside) fails the run without retries, so it shows red at once and alerts once.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

OUTCOME = re.compile(r"run outcome: ([a-z_]+)")
#: Waits (seconds) before the next try, for outcomes worth trying again.
RETRY_AFTER = {
    "already_running": 30.0,
    "throttle_deadline": 120.0,
    "crashed": 60.0,
    "interrupted": 30.0,
    # No outcome line at all: the run never reached the target (Meltano could not start).
    "no_outcome": 60.0,
}
#: Outcomes a person must act on: no retry.
NO_RETRY = frozenset({"auth_failed", "mapping_errors_held", "set_aside_over_threshold", "config"})
MAX_RETRIES = 3
TAIL_LINES = 40
#: swap-brands' exit status for a brands file, setting or secret that is wrong (no run started).
CONFIG_ERROR_EXIT = 2


@dataclass(frozen=True)
class Project:
    """Where the Meltano project and its tools are, seen from Dagster's process."""

    root: Path
    brands_file: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Project:
        env = os.environ if env is None else env
        default = Path(__file__).resolve().parents[2]
        root = Path(env.get("SWAP_PROJECT_DIR") or default).resolve()
        brands = env.get("SWAP_BRANDS_FILE")
        return cls(root, Path(brands) if brands else None)

    @property
    def swap_brands(self) -> str:
        return str(self.root / ".venv" / "bin" / "swap-brands")

    def command(self, *args: str) -> list[str]:
        command = [self.swap_brands, "--project-dir", str(self.root)]
        if self.brands_file is not None:
            command += ["--brands-file", str(self.brands_file)]
        return [*command, *args]

    def brands(self) -> list[dict]:
        """The brands file's entries (checked by swap-brands; an invalid file fails loading)."""
        done = subprocess.run(  # noqa: S603 - the project's own executable
            self.command("list", "--format", "json"),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"swap-brands list failed:\n{done.stderr.strip()[-3000:]}")
        return list(json.loads(done.stdout))

    def log_dir(self, brand: str) -> Path:
        """Each run's whole output: ``$SWAP_RUN_LOG_DIR/<brand>/``, else the project's runtime."""
        configured = os.environ.get("SWAP_RUN_LOG_DIR")
        root = Path(configured) if configured else self.root / "runtime" / "dagster-runs"
        return root / brand


@dataclass(frozen=True)
class BrandRun:
    """What one ``swap-brands run`` left: its outcome, exit status, output tail and log."""

    brand: str
    outcome: str
    exit_code: int
    duration_seconds: float
    tail: str
    log_file: Path

    @property
    def succeeded(self) -> bool:
        return self.outcome == "succeeded"

    @property
    def retry_after(self) -> float | None:
        """Seconds to wait before trying again, or None when retrying cannot help."""
        if self.succeeded or self.outcome in NO_RETRY:
            return None
        return RETRY_AFTER.get(self.outcome, RETRY_AFTER["no_outcome"])


def outcome_of(lines: list[str], exit_code: int) -> str:
    """The last ``run outcome:`` line's outcome; ``config`` or ``no_outcome`` without one."""
    for line in reversed(lines):
        found = OUTCOME.search(line)
        if found:
            return found.group(1)
    return "config" if exit_code == CONFIG_ERROR_EXIT else "no_outcome"


def run_brand(project: Project, brand: str, run_label: str) -> BrandRun:
    """Run the brand's pipeline once; its whole output goes to a log file, owner-only."""
    folder = project.log_dir(brand)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_file = folder / f"{run_label}.log"
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with _opened(log_file) as log, _started(project.command("run", brand)) as process:
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            tail.append(line.rstrip("\n"))
        code = process.wait()
    lines = list(tail)
    return BrandRun(
        brand=brand,
        outcome=outcome_of(lines, code),
        exit_code=code,
        duration_seconds=round(time.monotonic() - started, 2),
        tail="\n".join(lines),
        log_file=log_file,
    )


@contextlib.contextmanager
def _opened(path: Path) -> Iterator:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as handle:
        yield handle


@contextlib.contextmanager
def _started(command: list[str]) -> Iterator[subprocess.Popen[str]]:
    """The run's process, stopped cleanly if Dagster stops this step (terminate, a signal).

    SIGTERM lets the target record ``interrupted`` and keep what it delivered.
    """
    process = subprocess.Popen(  # noqa: S603 - the project's own executable
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    with process:  # closes its pipe
        try:
            yield process
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
