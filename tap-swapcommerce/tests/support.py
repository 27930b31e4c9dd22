"""What the tap's tests share: the tap's real executable run as Meltano runs it, and its output.

Imported as ``tests.support`` from this folder (the tests are a package), so that the tap's tests
travel with it: nothing here needs the project's root package, Meltano or another plugin.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulators.swap import SwapEmulator

TAP = [sys.executable, "-m", "tap_swapcommerce.tap"]


def config_for(swap: SwapEmulator, **overrides: Any) -> dict[str, Any]:
    return {
        "api_url": swap.url,
        "api_key": swap.api_key,
        "store_id": swap.store_id,
        "page_size": 50,
        **overrides,
    }


@dataclass
class Sync:
    """What one run of the real tap executable printed."""

    messages: list[dict[str, Any]]
    stderr: str

    @property
    def records(self) -> dict[str, list[dict[str, Any]]]:
        by_stream: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for message in self.messages:
            if message["type"] == "RECORD":
                by_stream[message["stream"]].append(message["record"])
        return by_stream

    @property
    def state_messages(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == "STATE"]


def sync(config: dict[str, Any], state: dict[str, Any] | None = None) -> Sync:
    """Run the tap as Meltano would: its executable, a config file and a state file."""
    with tempfile.TemporaryDirectory() as tmp:
        config_file = Path(tmp, "config.json")
        config_file.write_text(json.dumps(config))
        command = [*TAP, "--config", str(config_file)]
        if state:
            state_file = Path(tmp, "state.json")
            state_file.write_text(json.dumps(state))
            command += ["--state", str(state_file)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    return Sync([json.loads(line) for line in result.stdout.splitlines()], result.stderr)


def select_all(config: dict[str, Any]) -> Sync:
    """A sync with every stream selected (the default catalog selects them all)."""
    return sync(config)


def final_state(run: Sync) -> dict[str, Any]:
    value: dict[str, Any] = run.state_messages[-1]["value"]
    return value
