"""One outcome per run: why it ended, in words everything that starts runs can read.

``meltano run`` exits 1 for any plugin failure, so its exit code cannot say why a run ended
(``decisions.md`` §2). The target writes one of :data:`OUTCOMES` into the ledger's
``runs.status``, and prints it as its last log line, ``run outcome: <outcome>``: the webhook
receiver, the orchestrator and the alerts read that, never the exit code.

Which exception ends a run with which outcome (:func:`outcome_of`):

- :class:`~target_klaviyo.client.KlaviyoAuthError` (401/403): ``auth_failed``.
- :class:`~target_klaviyo.client.KlaviyoUnavailable`, including
  :class:`~target_klaviyo.client.ThrottleDeadline`: ``throttle_deadline``. Klaviyo did not take a
  request within the run's bounded waits: throttled past ``throttle_deadline_seconds``, or still
  failing (5xx, timeouts) after ``max_retries``, or a job unfinished after
  ``job_timeout_seconds``. It is a failure of the pipeline (back off, run again later), not a
  bug; ``runs.error`` says which it was.
- :class:`AlreadyRunning` (another run held the ledger for ``lock_timeout_seconds``):
  ``already_running``.
- :class:`RunInterrupted` (SIGTERM or SIGINT): ``interrupted``.
- Anything else is unexpected: ``crashed``, with the error's type and a safe message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from target_klaviyo.client import KlaviyoAuthError, KlaviyoUnavailable
from target_klaviyo.masking import scrub
from target_klaviyo.terminal import escape_controls

SUCCEEDED = "succeeded"
SET_ASIDE_OVER_THRESHOLD = "set_aside_over_threshold"
MAPPING_ERRORS_HELD = "mapping_errors_held"
THROTTLE_DEADLINE = "throttle_deadline"
AUTH_FAILED = "auth_failed"
ALREADY_RUNNING = "already_running"
CRASHED = "crashed"
INTERRUPTED = "interrupted"

#: Every outcome a target run can end with (a public contract: readers match these strings).
OUTCOMES = (
    SUCCEEDED,
    SET_ASIDE_OVER_THRESHOLD,
    MAPPING_ERRORS_HELD,
    THROTTLE_DEADLINE,
    AUTH_FAILED,
    ALREADY_RUNNING,
    CRASHED,
    INTERRUPTED,
)

#: When several apply, the first of these wins.
PRECEDENCE = (
    CRASHED,
    AUTH_FAILED,
    THROTTLE_DEADLINE,
    MAPPING_ERRORS_HELD,
    SET_ASIDE_OVER_THRESHOLD,
    SUCCEEDED,
)

#: ``integration_exceptions`` reasons that say the mapping is wrong: the mapper holds the
#: bookmark after the first, and the run fails once everything else is delivered.
HOLDING_REASONS = ("mapping_error", "invalid_output")

EXIT_SET_ASIDE = 3

#: The log line every run ends with; readers match :data:`OUTCOME_LINE`.
OUTCOME_LINE = re.compile(r"run outcome: ([a-z_]+)")

#: Longest error message kept in the ledger and the alert.
_MAX_MESSAGE = 500
_KEY_LIKE = re.compile(r"\b(pk|sk)_[A-Za-z0-9_]{6,}")


class AlreadyRunning(Exception):  # noqa: N818 - named after the outcome it causes
    """Another run held the ledger's run lock for longer than ``lock_timeout_seconds``."""


class RunInterrupted(BaseException):
    """SIGTERM or SIGINT reached the target: record what can be recorded, then exit.

    A ``BaseException`` so that no ``except Exception`` on the way swallows it.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by signal {signum}")


def outcome_of(error: BaseException) -> str:
    """The outcome of a run that ``error`` ended (see the module's docstring for the mapping)."""
    if isinstance(error, RunInterrupted | KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(error, AlreadyRunning):
        return ALREADY_RUNNING
    if isinstance(error, KlaviyoAuthError):
        return AUTH_FAILED
    if isinstance(error, KlaviyoUnavailable):
        return THROTTLE_DEADLINE
    return CRASHED


def first_by_precedence(outcomes: Iterable[str]) -> str:
    """The outcome that wins among several that apply (``succeeded`` if none)."""
    found = set(outcomes)
    return next((o for o in PRECEDENCE if o in found), SUCCEEDED)


def exit_code(outcome: str) -> int:
    """0 succeeded, 3 too many records set aside, 1 any other failure."""
    if outcome == SUCCEEDED:
        return 0
    return EXIT_SET_ASIDE if outcome == SET_ASIDE_OVER_THRESHOLD else 1


def safe_error(error: BaseException, secrets: Iterable[str] = ()) -> str:
    """``Type: message`` with no customer e-mail or phone, no key, one line, bounded.

    Database errors keep only the driver's first line: SQLAlchemy appends the statement and its
    parameters (set-aside payloads) to its message.
    """
    kind = type(error).__name__
    cause = getattr(error, "orig", None)
    message = str(cause if isinstance(cause, BaseException) else error)
    message = message.strip().splitlines()[0] if message.strip() else ""
    for secret in secrets:
        if secret and len(secret) >= 4:
            message = message.replace(secret, "***")
    message = _KEY_LIKE.sub("***", scrub(message) or "")
    message = escape_controls(message)
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "…"
    return f"{kind}: {message}" if message else kind
