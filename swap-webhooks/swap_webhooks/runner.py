"""Turn accepted deliveries into pipeline runs: one at a time, a burst coalesced into one run.

The webhook is a trigger, not the data: a run is an ordinary incremental ``meltano run`` that reads
Swap's API from its bookmark, so one run serves every delivery that was waiting when it started.
The loop is::

    wait for a pending delivery -> wait ``coalesce_seconds`` for the rest of a burst
    -> claim every pending delivery -> run the command -> record the outcome -> repeat

Deliveries that arrive during a run stay pending, so they cause exactly one more run after it.

Runs of the same pipeline by the schedule or a person are kept apart by Meltano's per-state-id
job lock: Meltano refuses to start ("Another '...' pipeline is already running"). That is not a
failure here: the deliveries go back to pending and the run is tried again after
``retry_seconds``. A failed run is retried too, after a wait that doubles up to
``max_retry_seconds``, so a broken pipeline is not restarted in a tight loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from swap_webhooks.settings import Settings
from swap_webhooks.store import FAILED, INTERRUPTED, LOCKED_OUT, SUCCEEDED, DeliveryStore

logger = logging.getLogger(__name__)

#: What Meltano prints when the job's state id already has a running job.
LOCKED_OUT_MARKER = b"pipeline is already running"
#: How long a run gets to stop after SIGTERM before its whole process group is killed.
STOP_GRACE_SECONDS = 20.0
_CHUNK = 65536


@dataclass
class RunResult:
    """How a run ended, as the store records it."""

    outcome: str
    exit_code: int | None


class Runner:
    """The single consumer of the delivery queue; ``notify()`` after each accepted delivery."""

    def __init__(
        self,
        settings: Settings,
        store: DeliveryStore,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.env = dict(os.environ if env is None else env)
        self.command = resolve_command(settings, self.env)
        self.state = "starting"
        self.current_run: dict[str, object] | None = None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._failures = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="swap-webhooks-runner")

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def notify(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Stop the loop; a run in progress is stopped too, and its deliveries wait for restart."""
        self._stopping.set()
        self._wake.set()
        if self._task is None:
            return
        await self._terminate_run()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    # -- the loop --------------------------------------------------------------------------------

    async def _loop(self) -> None:
        interrupted = await asyncio.to_thread(self.store.recover)
        if interrupted:
            logger.warning(
                "%d run(s) cut short by a stop: their deliveries wait again", interrupted
            )
        await asyncio.to_thread(self.store.prune, self.settings.retention_days, time.time())
        while not self._stopping.is_set():
            try:
                await self._step()
            except Exception:
                # Keep serving: the deliveries are safe in the store and the next step retries.
                logger.exception("runner step failed")
                await self._sleep(self._backoff())
                # A run whose end could not be recorded still holds its deliveries: free them.
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.store.recover)

    async def _step(self) -> None:
        self._wake.clear()
        if not await asyncio.to_thread(self.store.pending):
            self.state = "idle"
            await self._wait_for_wake()
            return
        self.state = "coalescing"
        if not await self._sleep(self.settings.coalesce_seconds):
            return
        claim = await asyncio.to_thread(self.store.claim)
        if claim is None:
            return
        self.state = "running"
        self.current_run = {"id": claim.run_id, "deliveries": claim.deliveries}
        logger.info("run %d started for %d deliveries", claim.run_id, claim.deliveries)
        try:
            result = await self._execute()
        finally:
            self.current_run = None
        await asyncio.to_thread(self.store.finish, claim.run_id, result.outcome, result.exit_code)
        logger.info("run %d %s (exit %s)", claim.run_id, result.outcome, result.exit_code)
        if result.outcome == SUCCEEDED:
            self._failures = 0
            await asyncio.to_thread(self.store.prune, self.settings.retention_days, time.time())
        elif result.outcome == LOCKED_OUT:
            self.state = "waiting_for_lock"
            await self._sleep(self.settings.retry_seconds)
        elif result.outcome == FAILED:
            self._failures += 1
            self.state = "backing_off"
            await self._sleep(self._backoff())

    def _backoff(self) -> float:
        base = max(self.settings.retry_seconds, 0.1)
        return float(min(base * 2 ** max(self._failures - 1, 0), self.settings.max_retry_seconds))

    async def _execute(self) -> RunResult:
        """Run the command in the project directory; its output is only scanned, not kept.

        Meltano keeps its own log of each run (``.meltano/logs/elt/``); copying it here would
        only duplicate what customer data it may hold.
        """
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.command,
                cwd=self.settings.project_dir,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            logger.error("cannot start the run command: %s", exc.strerror or type(exc).__name__)
            return RunResult(FAILED, None)
        process = self._process
        if self._stopping.is_set():
            # stop() came while the process was being created: it could not see it yet.
            await self._terminate_run()
        try:
            locked_out = await asyncio.wait_for(
                self._scan_output(process), timeout=self.settings.run_timeout_seconds
            )
            exit_code = await process.wait()
        except asyncio.TimeoutError:
            logger.error("run exceeded run_timeout_seconds; stopping it")
            await self._terminate_run()
            return RunResult(FAILED, process.returncode)
        finally:
            self._process = None
        if exit_code == 0:
            return RunResult(SUCCEEDED, exit_code)
        if self._stopping.is_set():
            return RunResult(INTERRUPTED, exit_code)
        if locked_out:
            logger.info("Meltano refused the run: another run of the pipeline holds its lock")
            return RunResult(LOCKED_OUT, exit_code)
        return RunResult(FAILED, exit_code)

    @staticmethod
    async def _scan_output(process: asyncio.subprocess.Process) -> bool:
        assert process.stdout is not None
        found = False
        tail = b""
        while chunk := await process.stdout.read(_CHUNK):
            if not found:
                window = tail + chunk
                found = LOCKED_OUT_MARKER in window
                tail = window[-len(LOCKED_OUT_MARKER) :]
        return found

    async def _terminate_run(self) -> None:
        """SIGTERM the run (Meltano then marks its job failed and stops its plugins), then kill."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=STOP_GRACE_SECONDS)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        # Anything the run left behind in its session (plugins) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    # -- waiting ---------------------------------------------------------------------------------

    async def _wait_for_wake(self) -> None:
        await self._wake.wait()

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; False when the receiver is stopping."""
        if seconds > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        return not self._stopping.is_set()


def describe_command(settings: Settings) -> str:
    """The run command for logs: its program and arguments, which hold no secret by design."""
    return " ".join(settings.run_command)


def resolve_command(settings: Settings, env: Mapping[str, str]) -> tuple[str, ...]:
    """The run command with its program found: on ``PATH``, or for ``meltano``, Meltano's own.

    Under ``meltano invoke swap-webhooks:serve`` Meltano's executable need not be on ``PATH`` (a
    virtualenv not activated), but Meltano links it at ``<sys dir>/run/bin`` and says where its
    sys dir is (``MELTANO_SYS_DIR_ROOT``).
    """
    program, *args = settings.run_command
    if os.sep in program:
        path = Path(program)
        return (str(path if path.is_absolute() else settings.project_dir / path), *args)
    found = shutil.which(program, path=env.get("PATH"))
    if found is None and program == "meltano":
        sys_dir = env.get("MELTANO_SYS_DIR_ROOT") or str(settings.project_dir / ".meltano")
        link = Path(sys_dir) / "run" / "bin"
        found = str(link) if os.access(link, os.X_OK) else None
    return (found or program, *args)


def check_command(settings: Settings, env: Mapping[str, str]) -> str | None:
    """Why the run command cannot start (missing or not executable), or None when it can."""
    program = resolve_command(settings, env)[0]
    if os.sep not in program:
        return f"{program!r} is not on PATH; give run_command an absolute path"
    if not os.access(program, os.X_OK) or Path(program).is_dir():
        return f"{program} is not an executable file"
    return None
