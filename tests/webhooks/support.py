"""The webhook tests' helpers: the development harness ``harness.webhooks`` (bench/ uses it too)."""

from __future__ import annotations

from harness.webhooks import (
    FAKE_RUN,
    MELTANO,
    ROOT,
    SECRET,
    STATE_ID,
    STORE,
    VENV_BIN,
    ReceiverProcess,
    ReceiverThread,
    emulator_env,
    fake_run_command,
    fake_runs,
    get_json,
    isolated_meltano,
    meltano_jobs,
    settings,
    wait_until,
)

__all__ = [
    "FAKE_RUN",
    "MELTANO",
    "ROOT",
    "SECRET",
    "STATE_ID",
    "STORE",
    "VENV_BIN",
    "ReceiverProcess",
    "ReceiverThread",
    "emulator_env",
    "fake_run_command",
    "fake_runs",
    "get_json",
    "isolated_meltano",
    "meltano_jobs",
    "settings",
    "wait_until",
]
