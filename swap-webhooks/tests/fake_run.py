"""A stand-in for ``meltano run`` (the receiver's ``run_command`` in its tests): records when it
starts and ends, and can be held or refused. The receiver's own copy, so that its tests need no
Meltano and nothing from the project's root (whose benchmarks use ``harness/fake_run.py``).

Usage: ``python fake_run.py LOG [--gate FILE] [--duration S] [--locked-out N] [--already-running N]
[--fail N] [--outcome NAME | --no-outcome] [--exit CODE] [--lines N]``.
Appends ``{"event": "start"|"end", "t": <epoch>, "pid": ...}`` lines to LOG. While the gate file
exists the run waits (a test "holds" it). The first N calls print Meltano's lock refusal and exit 1
(``--locked-out``), the launcher's ``run outcome: already_running`` (``--already-running``), or
just exit 1 (``--fail``; ``--fail-while FILE``: while FILE exists); N is counted in ``LOG.calls``.
A run that goes through prints N numbered lines (``--lines``), then ``run outcome: NAME``
(``succeeded`` unless given; none with ``--no-outcome``), and exits with ``--exit``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path


def record(log: Path, event: str) -> None:
    with log.open("a") as handle:
        handle.write(json.dumps({"event": event, "t": time.time(), "pid": os.getpid()}) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("log", type=Path)
    parser.add_argument("--gate", type=Path)
    parser.add_argument("--duration", type=float, default=0.0)
    parser.add_argument("--locked-out", type=int, default=0)
    parser.add_argument("--fail", type=int, default=0)
    parser.add_argument("--fail-while", type=Path)
    parser.add_argument("--already-running", type=int, default=0)
    # The pipeline always prints its outcome; --no-outcome plays one that ended without.
    parser.add_argument("--outcome", default="succeeded")
    parser.add_argument("--no-outcome", action="store_true")
    parser.add_argument("--exit", type=int, default=0)
    parser.add_argument("--lines", type=int, default=0)
    args = parser.parse_args()
    # Like Meltano, stop cleanly on SIGTERM (the "end" record is written on the way out).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    calls_file = args.log.with_name(args.log.name + ".calls")
    calls = int(calls_file.read_text()) if calls_file.exists() else 0
    calls_file.write_text(str(calls + 1))
    record(args.log, "start")
    try:
        if calls < args.locked_out:
            print(
                "Another 'sandbox:tap-swapcommerce-to-target-klaviyo' pipeline is already"
                " running which started at 2026-01-01 00:00:00."
            )
            return 1
        if calls < args.already_running:
            print("swap-meltano: another run of the pipeline is in progress")
            print("run outcome: already_running")
            return 1
        if calls < args.fail or (args.fail_while is not None and args.fail_while.exists()):
            print("Extractor failed")
            return 1
        deadline = time.monotonic() + 120
        while args.gate is not None and args.gate.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(args.duration)
        for number in range(1, args.lines + 1):
            print(f"log line {number}")
        if not args.no_outcome:
            print(f"2026-12-05T00:00:00Z [info] run outcome: {args.outcome} cmd_type=elt")
            print("Block run completed.")
        return int(args.exit)
    finally:
        record(args.log, "end")


if __name__ == "__main__":
    sys.exit(main())
