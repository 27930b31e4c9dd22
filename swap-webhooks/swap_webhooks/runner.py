"""Turn accepted deliveries into pipeline runs: one at a time, a burst coalesced into one run.

The webhook is a trigger, not the data: a run is an ordinary incremental pipeline run that reads
Swap's API from its bookmark, so one run serves every delivery that was waiting when it started.
The loop is::

    wait for a pending delivery -> wait ``coalesce_seconds`` for the rest of a burst
    -> claim every pending delivery -> run the command -> record the outcome -> repeat

Deliveries that arrive during a run stay pending, so they cause exactly one more run after it,
which starts as soon as that run ends: they have already waited longer than the coalescing
window (a whole run), and any burst they belong to is in the store by then, so waiting the
window again would only add ``coalesce_seconds`` to their latency.

The run command is ``swap-meltano run returns-to-klaviyo``: run files of its own (so no other
Meltano command in the project can break it) and an atomic claim on the pipeline's state id. What
happens next follows the run's outcome, the last ``run outcome: <name>`` line of its output
(decisions §2), never Meltano's exit status:

- ``already_running`` (the schedule's or a person's run holds the claim): tried again every
  ``claim_retry_seconds`` (a refused try starts no Meltano), so it runs right after that run;
- ``succeeded``, ``set_aside_over_threshold``, ``mapping_errors_held``: the run read every return
  it was started for; its deliveries are handled and nothing backs off;
- anything else (``crashed``, ``auth_failed``, ``throttle_deadline``, a command that ended without
  an outcome line): a failure of the pipeline; the deliveries wait again and the next run comes
  after a wait that doubles from ``retry_seconds`` up to ``max_retry_seconds``.

Each run's whole output goes to ``<run_log_dir>/run-<id>.log`` (owner-only) and its last lines to
the state db, both shown on ``/health``. When no run has succeeded for ``stale_after_minutes``
while deliveries wait, one alert is posted to ``alert_webhook_url`` (a brand's own, from its
entry in the brands file), then again only when the last run's outcome changes or a day later,
until a run succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from swap_webhooks.alerts import post_alert, stale_alert_due, stale_alert_text
from swap_webhooks.dagster_runs import DagsterClient, DagsterError, RunState
from swap_webhooks.settings import Settings
from swap_webhooks.store import (
    ALREADY_RUNNING,
    CRASHED,
    HANDLED_OUTCOMES,
    INTERRUPTED,
    DeliveryStore,
    RunReport,
)

logger = logging.getLogger(__name__)

#: The pipeline's verdict on a run (decisions §2); the last such line of the output counts.
OUTCOME_LINE = re.compile(rb"run outcome: ([a-z_]+)")
#: What Meltano itself prints when its own job check finds a running job with the state id.
MELTANO_REFUSAL = b"pipeline is already running"
#: How many lines of each run's output the state db and ``/health`` keep.
TAIL_LINES = 40
#: Longer lines are cut in the tail (the log file keeps them whole).
TAIL_LINE_CHARS = 1000
#: How long a run gets to stop after SIGTERM before its whole process group is killed.
STOP_GRACE_SECONDS = 20.0
#: How often an idle receiver checks whether the pipeline has gone stale.
STALE_CHECK_SECONDS = 60.0
#: How often a run launched on Dagster is asked how it is doing.
DAGSTER_POLL_SECONDS = 1.0
_CHUNK = 65536


@dataclass(frozen=True)
class Attempt:
    """How one start of the run command ended."""

    outcome: str
    exit_code: int | None
    note: str | None = None


class OutputCapture:
    """A run's output: written whole to its log file; the last lines and outcome kept."""

    def __init__(self, log: BinaryIO) -> None:
        self.log = log
        self.lines: deque[str] = deque(maxlen=TAIL_LINES)
        self.outcome: str | None = None
        self.refused_by_meltano = False
        self._partial = b""

    def feed(self, chunk: bytes) -> None:
        self.log.write(chunk)
        *complete, self._partial = (self._partial + chunk).split(b"\n")
        for line in complete:
            self._line(line)
        if len(self._partial) > _CHUNK:  # a line without end is read in pieces, not hoarded
            self._line(self._partial)
            self._partial = b""

    def start_attempt(self) -> None:
        """Each try of the run is read on its own: an outcome belongs to the try that printed it."""
        self.outcome = None
        self.refused_by_meltano = False

    def close_attempt(self) -> None:
        if self._partial:
            self._line(self._partial)
            self._partial = b""
        self.log.flush()

    @property
    def tail(self) -> str:
        return "\n".join(self.lines)

    def _line(self, line: bytes) -> None:
        found = OUTCOME_LINE.findall(line)
        if found:
            self.outcome = found[-1].decode()
        self.refused_by_meltano = self.refused_by_meltano or MELTANO_REFUSAL in line
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        self.lines.append(text[:TAIL_LINE_CHARS])


class Runner:
    """The single consumer of the delivery queue; ``notify()`` after each accepted delivery."""

    def __init__(
        self,
        settings: Settings,
        store: DeliveryStore,
        *,
        env: Mapping[str, str] | None = None,
        brand: str | None = None,
    ) -> None:
        self.settings = settings
        #: The brand's name (brands file): its alerts name it, and with ``dagster_url`` its runs
        #: are this partition launched on Dagster. Its alert destination is in ``settings``.
        self.brand = self.partition = brand
        url = settings.dagster_url
        self.dagster = DagsterClient(url) if url and brand else None
        self.store = store
        self.env = dict(os.environ if env is None else env)
        self.command = resolve_command(settings, self.env)
        self.state = "starting"
        self.current_run: dict[str, object] | None = None
        self.stale_since: str | None = None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._failures = 0
        #: A delivery was accepted while a run was going: the next run needs no coalescing.
        self._arrived_during_run = False

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="swap-webhooks-runner")

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def notify(self) -> None:
        if self.current_run is not None:
            self._arrived_during_run = True
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
        await self._resume_dagster_runs()
        if self._stopping.is_set():
            return
        interrupted = await asyncio.to_thread(self.store.recover)
        if interrupted:
            logger.warning(
                "%d run(s) cut short by a stop: their deliveries wait again", interrupted
            )
        await self._prune()
        while not self._stopping.is_set():
            try:
                await self._check_stale()
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
        if not await self._coalesce():
            return
        claim = await asyncio.to_thread(self.store.claim)
        if claim is None:
            return
        logger.info("run %d started for %d deliveries", claim.run_id, claim.deliveries)
        await self._run(claim.run_id, claim.deliveries)

    async def _run(self, run_id: int, deliveries: int, launched: str | None = None) -> None:
        """Run (or, with ``launched``, follow the Dagster run of) a claimed run; record its end.

        A run whose Dagster run goes on when the receiver stops is left ``running`` in the state
        db, with its deliveries: the next start follows it again instead of launching another.
        """
        log_file = self._log_path(run_id)
        self.state = "running"
        self.current_run = {
            "id": run_id,
            "deliveries": deliveries,
            "refusals": 0,
            "log_file": str(log_file),
        }
        if launched is not None:
            self.current_run["dagster_run_id"] = launched
        started = time.monotonic()
        try:
            if launched is None:
                report = await self._run_until_started(log_file, run_id)
            else:
                report = await self._follow_again(log_file, run_id, launched)
            left_on_dagster = self._stopping.is_set() and "dagster_run_id" in self.current_run
        finally:
            self.current_run = None
        if left_on_dagster and report.outcome == INTERRUPTED:
            logger.info("run %d: its Dagster run goes on; followed again at the next start", run_id)
            return
        report = replace(
            report, duration_seconds=round(time.monotonic() - started, 3), log_file=str(log_file)
        )
        await asyncio.to_thread(self.store.finish, run_id, report)
        logger.info(
            "run %d: %s (exit %s, %.1f s); output in %s",
            run_id,
            report.outcome,
            report.exit_code,
            report.duration_seconds,
            log_file,
        )
        await self._after(report)

    async def _coalesce(self) -> bool:
        """Wait for the rest of a burst, unless the deliveries waited through a run already."""
        if self._arrived_during_run:
            self._arrived_during_run = False
            return not self._stopping.is_set()
        self.state = "coalescing"
        return await self._sleep(self.settings.coalesce_seconds)

    async def _after(self, report: RunReport) -> None:
        """Back off only for failures of the pipeline itself."""
        if report.outcome in HANDLED_OUTCOMES:
            self._failures = 0
            self.stale_since = None
            await self._prune()
        elif report.outcome == INTERRUPTED and self._stopping.is_set():
            return
        else:
            self._failures += 1
            self.state = "backing_off"
            await self._sleep(self._backoff())

    def _backoff(self) -> float:
        base = max(self.settings.retry_seconds, 0.1)
        return float(min(base * 2 ** max(self._failures - 1, 0), self.settings.max_retry_seconds))

    async def _run_until_started(self, log_file: Path, run_id: int) -> RunReport:
        """Run the command; while another run holds the pipeline's claim, try again right away."""
        refusals = 0
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with _owner_only(log_file) as log:
            capture = OutputCapture(log)
            while True:
                attempt = await self._execute(capture, run_id)
                if attempt.outcome != ALREADY_RUNNING or self._stopping.is_set():
                    break
                refusals += 1
                await asyncio.to_thread(self.store.count_refusal_of_run)
                if self.current_run is not None:
                    self.current_run["refusals"] = refusals
                self.state = "waiting_for_other_run"
                if not await self._sleep(self.settings.claim_retry_seconds):
                    attempt = Attempt(INTERRUPTED, attempt.exit_code, "stopped while waiting")
                    break
                self.state = "running"
        return RunReport(
            attempt.outcome,
            attempt.exit_code,
            refusals=refusals,
            note=attempt.note,
            output_tail=capture.tail,
        )

    async def _execute(self, capture: OutputCapture, run_id: int) -> Attempt:
        """Start the command once in the project directory and read how it ended."""
        capture.start_attempt()
        if self.dagster is not None:
            return await self._launch_on_dagster(capture, run_id)
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
            reason = exc.strerror or type(exc).__name__
            logger.error("cannot start the run command: %s", reason)
            return Attempt(CRASHED, None, f"cannot start the run command: {reason}")
        process = self._process
        if self._stopping.is_set():
            # stop() came while the process was being created: it could not see it yet.
            await self._terminate_run()
        try:
            await asyncio.wait_for(
                self._read_output(process, capture), timeout=self.settings.run_timeout_seconds
            )
            exit_code = await process.wait()
        except asyncio.TimeoutError:
            logger.error("run exceeded run_timeout_seconds; stopping it")
            await self._terminate_run()
            capture.close_attempt()
            return Attempt(CRASHED, process.returncode, "stopped after run_timeout_seconds")
        finally:
            self._process = None
        capture.close_attempt()
        return self._judge(capture, exit_code)

    def _judge(self, capture: OutputCapture, exit_code: int) -> Attempt:
        if self._stopping.is_set():
            return Attempt(INTERRUPTED, exit_code, "the receiver stopped")
        if capture.outcome is not None:
            return Attempt(capture.outcome, exit_code)
        if capture.refused_by_meltano:
            return Attempt(ALREADY_RUNNING, exit_code, "Meltano's own job check refused it")
        # Even with exit status 0: the pipeline always ends with its outcome line, so a run
        # without one ended before it could say what it did (decisions §2: never the exit code).
        return Attempt(CRASHED, exit_code, "ended without a run outcome line")

    # -- runs on Dagster (dagster_url) ------------------------------------------------------------

    async def _resume_dagster_runs(self) -> None:
        """Runs launched on Dagster before the receiver stopped: followed, not launched again."""
        if self.dagster is None:
            return
        try:
            for run_id, deliveries, launched in await asyncio.to_thread(
                self.store.unfinished_dagster_runs
            ):
                if self._stopping.is_set():
                    return
                await self._run(run_id, deliveries, launched)
        except Exception:
            # The recovery that follows frees their deliveries for a new launch.
            logger.exception("could not follow the Dagster runs launched before the stop")

    async def _follow_again(self, log_file: Path, run_id: int, launched: str) -> RunReport:
        with _owner_only(log_file) as log:
            capture = OutputCapture(log)
            _say(capture, f"the receiver started again: following Dagster run {launched}")
            attempt = await self._follow_dagster_run(capture, run_id, launched)
        return RunReport(
            attempt.outcome, attempt.exit_code, note=attempt.note, output_tail=capture.tail
        )

    async def _launch_on_dagster(self, capture: OutputCapture, run_id: int) -> Attempt:
        """Launch the brand's partition on Dagster, then follow that run to its outcome.

        A launch Dagster did not accept (unreachable, refused) is a failed run: the deliveries
        wait again and the next try comes after the usual back-off. Once accepted, the run's id
        is in the state db, and this run holds its deliveries until Dagster's run has ended, so
        no second launch happens while it is queued or running.
        """
        assert self.dagster is not None
        assert self.partition is not None
        tags = {"swap/brand": self.partition, "swap/webhook_run": str(run_id)}
        try:
            launched = await self.dagster.launch(self.partition, tags)
        except DagsterError as error:
            logger.warning("Dagster did not launch %s's run: %s", self.partition, error)
            _say(capture, f"Dagster did not launch the run: {error}")
            return Attempt(CRASHED, None, f"Dagster did not launch the run: {error}")
        await self._record_dagster_run(run_id, launched)
        logger.info("run %d: Dagster run %s launched for %s", run_id, launched, self.partition)
        _say(capture, f"Dagster run {launched} launched (partition {self.partition})")
        return await self._follow_dagster_run(capture, run_id, launched)

    async def _record_dagster_run(self, run_id: int, launched: str) -> None:
        await asyncio.to_thread(self.store.record_dagster_run, run_id, launched)
        if self.current_run is not None:
            self.current_run["dagster_run_id"] = launched

    async def _follow_dagster_run(
        self, capture: OutputCapture, run_id: int, launched: str
    ) -> Attempt:
        """Poll the run until it (or Dagster's own retry of it) ends.

        Dagster out of reach meanwhile is waited out, up to ``run_timeout_seconds``.
        """
        assert self.dagster is not None
        deadline = time.monotonic() + self.settings.run_timeout_seconds
        seen = None
        while True:
            try:
                state = await self.dagster.state(launched)
                status = _described(state)
                if state.retried_as is not None:
                    _say(capture, f"Dagster run {launched}: FAILURE; retried as {state.retried_as}")
                    launched = state.retried_as
                    await self._record_dagster_run(run_id, launched)
                    continue
                if state.finished and not state.to_be_retried:
                    outcome = await self.dagster.outcome(launched)
                    return _dagster_verdict(capture, launched, state.status, outcome)
            except DagsterError as error:
                status = f"not known ({error})"
            if status != seen:
                _say(capture, f"Dagster run {launched}: {status}")
                seen = status
            if time.monotonic() > deadline:
                return await self._give_up_on(capture, launched)
            if not await self._sleep(DAGSTER_POLL_SECONDS):
                note = f"the receiver stopped; Dagster run {launched} goes on"
                return Attempt(INTERRUPTED, None, note)

    async def _give_up_on(self, capture: OutputCapture, launched: str) -> Attempt:
        """Past ``run_timeout_seconds``: ask Dagster to stop the run, and count it as failed."""
        assert self.dagster is not None
        logger.error("Dagster run %s exceeded run_timeout_seconds; terminating it", launched)
        try:
            await self.dagster.terminate(launched)
        except DagsterError as error:
            _say(capture, f"could not terminate Dagster run {launched}: {error}")
        return Attempt(CRASHED, None, f"Dagster run {launched} stopped after run_timeout_seconds")

    @staticmethod
    async def _read_output(process: asyncio.subprocess.Process, capture: OutputCapture) -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(_CHUNK):
            await asyncio.to_thread(capture.feed, chunk)

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

    # -- logs, staleness -------------------------------------------------------------------------

    def _log_path(self, run_id: int) -> Path:
        return self.settings.run_log_dir / f"run-{run_id}.log"

    async def _prune(self) -> None:
        """Forget old deliveries and runs, and the log files of runs no longer kept."""
        await asyncio.to_thread(self.store.prune, self.settings.retention_days, time.time())
        kept = {f"run-{run['id']}.log" for run in await asyncio.to_thread(self.store.runs)}
        folder = self.settings.run_log_dir
        for path in folder.glob("run-*.log") if folder.is_dir() else []:
            if path.name not in kept:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    async def _check_stale(self) -> None:
        """Alert when no run has succeeded for ``stale_after_minutes`` while one was needed.

        Once, then again when the last run's outcome changes or a day later (decisions §2).
        """
        since = await asyncio.to_thread(self.store.waiting_since)
        limit = self.settings.stale_after_minutes * 60
        if since is None or _age_seconds(since) < limit:
            self.stale_since = None
            return
        self.stale_since = since
        runs = await asyncio.to_thread(self.store.runs, 1)  # checked between runs: it has ended
        last = runs[0] if runs else None
        outcome = None if last is None else str(last["outcome"])
        sent_at = await asyncio.to_thread(self.store.stale_alert_sent)
        alerted = await asyncio.to_thread(self.store.stale_alert_outcome)
        if not stale_alert_due(sent_at, alerted, outcome, datetime.now(timezone.utc)):
            return
        text = stale_alert_text(self.settings.stale_after_minutes, since, last, brand=self.brand)
        logger.warning("%s", text)
        url = self.settings.alert_webhook_url
        if url and not await asyncio.to_thread(post_alert, url.reveal(), text):
            return  # tried again at the next check
        await asyncio.to_thread(self.store.mark_stale_alert_sent, outcome)

    # -- waiting ---------------------------------------------------------------------------------

    async def _wait_for_wake(self) -> None:
        """Wait for a delivery; wake now and then to see whether the pipeline went stale."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=STALE_CHECK_SECONDS)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; False when the receiver is stopping."""
        if seconds > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        return not self._stopping.is_set()


def _described(state: RunState) -> str:
    return f"{state.status} (Dagster will retry it)" if state.to_be_retried else state.status


def _dagster_verdict(
    capture: OutputCapture, launched: str, status: str, outcome: str | None
) -> Attempt:
    """The run's outcome as its asset recorded it (decisions §2), never Dagster's status alone.

    Without one the run ended before it could say what it did: ``interrupted`` when it was
    cancelled, else ``crashed`` (even after SUCCESS: nothing passes on an unknown outcome).
    """
    note = f"Dagster run {launched}: {status}"
    if outcome is None:
        outcome = INTERRUPTED if status == "CANCELED" else CRASHED
        note += " without a run outcome"
    _say(capture, f"Dagster run {launched}: {status}; run outcome: {outcome}")
    return Attempt(outcome, None, note)


def _say(capture: OutputCapture, text: str) -> None:
    """A line of the receiver's own in the run's log (what Dagster did; its log is Dagster's)."""
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    capture.feed(f"{stamp} swap-webhooks: {text}\n".encode())
    capture.close_attempt()


def _age_seconds(iso: str) -> float:
    return (datetime.now(timezone.utc) - datetime.fromisoformat(iso)).total_seconds()


@contextlib.contextmanager
def _owner_only(path: Path) -> Iterator[BinaryIO]:
    """Append to ``path``, created readable by its owner only (the pipeline's log)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as handle:
        yield handle


def describe_command(settings: Settings) -> str:
    """The run command for logs: its program and arguments, which hold no secret by design."""
    return " ".join(settings.run_command)


def resolve_command(settings: Settings, env: Mapping[str, str]) -> tuple[str, ...]:
    """The run command with its program found: on ``PATH``, else beside Meltano's executable.

    Under ``meltano invoke swap-webhooks:serve`` the project's virtualenv need not be on ``PATH``
    (not activated), but Meltano links its executable at ``<sys dir>/run/bin`` and says where its
    sys dir is (``MELTANO_SYS_DIR_ROOT``); ``meltano`` is that link, and ``swap-meltano`` (the
    project's launcher, installed with Meltano) sits beside its target.
    """
    program, *args = settings.run_command
    if os.sep in program:
        path = Path(program)
        return (str(path if path.is_absolute() else settings.project_dir / path), *args)
    found = shutil.which(program, path=env.get("PATH"))
    if found is None:
        sys_dir = env.get("MELTANO_SYS_DIR_ROOT") or str(settings.project_dir / ".meltano")
        link = Path(sys_dir) / "run" / "bin"
        beside = link if program == "meltano" else link.resolve().parent / program
        found = str(beside) if link.exists() and os.access(beside, os.X_OK) else None
    return (found or program, *args)


def check_command(settings: Settings, env: Mapping[str, str]) -> str | None:
    """Why the run command cannot start (missing or not executable), or None when it can."""
    if settings.dagster_url:
        return None  # runs are launched on Dagster: no command of ours starts them
    program = resolve_command(settings, env)[0]
    if os.sep not in program:
        return f"{program!r} is not on PATH; give run_command an absolute path"
    if not os.access(program, os.X_OK) or Path(program).is_dir():
        return f"{program} is not an executable file"
    return None
