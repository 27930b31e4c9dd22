"""Throughput of the default mapping on the Swap emulator's data: in-process and as a program.

    .venv/bin/python transforms/benchmarks/throughput.py [--returns 10000]

Builds the Singer input a tap would print for that many emulator returns (SCHEMA, RECORDs, a
STATE every 100 records), then times (1) `SwapTransformsMapper.listen` in this process, writing
to /dev/null, and (2) the `swap-transforms` executable reading the same file, start-up included.
Prints records/s of source returns; the numbers are for comparing changes on one machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from singer_sdk.contrib.msgspec import encoder

from emulators.swap import SwapEmulator
from swap_transforms.mapper import SwapTransformsMapper

logging.getLogger("swap_transforms").setLevel(logging.ERROR)  # rejections would flood stderr

ROOT = Path(__file__).resolve().parents[2]
MAPPING = ROOT / "transforms" / "swap_to_klaviyo.yml"


def singer_input(returns: int) -> str:
    with SwapEmulator(
        returns=returns,
        seed=7,
        now=datetime(2026, 6, 1, tzinfo=timezone.utc),
        rate_limit_per_minute=None,
    ) as swap:
        records = list(swap.all_returns())
    lines = [{"type": "SCHEMA", "stream": "returns", "schema": {}, "key_properties": ["return_id"]}]
    for index, record in enumerate(records, start=1):
        lines.append({"type": "RECORD", "stream": "returns", "record": record})
        if index % 100 == 0:
            lines.append({"type": "STATE", "value": {"bookmarks": {"returns": {"n": index}}}})
    return "".join(encoder.encode(line).decode() + "\n" for line in lines)


def in_process(text: str) -> float:
    mapper = SwapTransformsMapper(config={"mapping_files": [str(MAPPING)]})
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        started = time.perf_counter()
        mapper.listen(io.StringIO(text))
        return time.perf_counter() - started


def as_program(input_file: Path, config: Path) -> float:
    executable = Path(sys.executable).parent / "swap-transforms"
    with input_file.open("rb") as stdin, open(os.devnull, "wb") as sink:
        started = time.perf_counter()
        subprocess.run(  # noqa: S603 - our own executable, beside this interpreter
            [str(executable), "--config", str(config)],
            stdin=stdin,
            stdout=sink,
            stderr=subprocess.DEVNULL,
            check=True,
        )
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--returns", type=int, default=10_000)
    args = parser.parse_args()
    text = singer_input(args.returns)
    in_process_seconds = in_process(text)
    with tempfile.TemporaryDirectory() as folder:
        input_file = Path(folder) / "input.jsonl"
        input_file.write_text(text)
        config = Path(folder) / "config.json"
        config.write_text(json.dumps({"mapping_files": [str(MAPPING)]}))
        program_seconds = as_program(input_file, config)
    for label, seconds in (("in-process", in_process_seconds), ("executable", program_seconds)):
        rate = args.returns / seconds
        sys.stdout.write(f"{label:<11} {args.returns} returns in {seconds:.2f} s: {rate:,.0f}/s\n")


if __name__ == "__main__":
    main()
