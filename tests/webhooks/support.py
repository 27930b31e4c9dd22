"""The project's webhook tests' helpers (the receiver with the real pipeline, Meltano's system db):
the development harness ``harness.webhooks``, which bench/ uses too. The receiver's own tests, with
a fake run command, live with it in ``swap-webhooks/tests`` (their helpers in its
``tests/support.py``)."""

from __future__ import annotations

from harness.webhooks import (
    MELTANO,
    ROOT,
    SECRET,
    STATE_ID,
    VENV_BIN,
    ReceiverThread,
    emulator_env,
    isolated_meltano,
    meltano_jobs,
    settings,
    wait_until,
)

__all__ = [
    "MELTANO",
    "ROOT",
    "SECRET",
    "STATE_ID",
    "VENV_BIN",
    "ReceiverThread",
    "emulator_env",
    "isolated_meltano",
    "meltano_jobs",
    "settings",
    "wait_until",
]
