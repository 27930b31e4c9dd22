"""Benchmark: the whole pipeline on N returns, beside each stage run alone.

Runs, against both emulators in their own process (Klaviyo's rate limits off, and the target's
raised to match, so that the figures show the software, not the published limits):
- each stage alone: the tap to a file, the mapper from that file, the target from the mapper's
  output;
- the pipeline as production runs it: `meltano run tap-swapcommerce swap-to-klaviyo
  target-klaviyo`, sampling each plugin process's memory.
Reports wall time, records per second and peak memory per process. The pipeline should add
little to its slowest stage.

    python -m bench.pipeline --returns 100000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench.common import BIN, REPO, emulators, measure, returns_only_catalog, write_json

FAST_LIMITS = {
    name: [{"requests": 1000, "seconds": 1}]
    for name in (
        "events",
        "profile_import",
        "profile_import_job",
        "profile_import_errors",
        "catalog_update",
        "catalog_update_job",
        "catalog_variants",
        "profiles",
    )
}
PLUGINS = ("tap-swapcommerce", "swap-transforms", "target-klaviyo")


def plugin_of(cmdline: list[str]) -> str:
    """Which plugin a process runs, from its executable (meltano's own command line names all)."""
    for part in cmdline[:2]:
        for plugin in PLUGINS:
            if part.endswith(f"/{plugin}"):
                return plugin
    return "meltano"


def count_records(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.startswith(b'{"type":"RECORD"'))


def stages_alone(env: dict[str, str], tmp: Path, returns: int) -> dict[str, Any]:
    tap_config = write_json(
        tmp / "tap.json",
        {
            "api_url": env["SWAP_API_URL"],
            "api_key": env["SWAP_API_KEY"],
            "store_id": env["SWAP_STORE_ID"],
        },
    )
    catalog = returns_only_catalog(BIN / "tap-swapcommerce", tap_config, tmp / "catalog.json")
    mapper_config = write_json(
        tmp / "mapper.json", {"mapping_files": [str(REPO / "transforms" / "swap_to_klaviyo.yml")]}
    )
    target_config = write_json(
        tmp / "target.json",
        {
            "api_url": env["KLAVIYO_API_URL"],
            "api_key": env["KLAVIYO_API_KEY"],
            "ledger_url": f"sqlite:///{tmp}/alone-ledger.sqlite",
            "rate_limits": FAST_LIMITS,
            "profile_check": "record",
        },
    )
    tap_out, mapper_out = tmp / "tap.jsonl", tmp / "mapper.jsonl"
    with tap_out.open("wb") as out:
        tap = measure(
            [str(BIN / "tap-swapcommerce"), "--config", str(tap_config), "--catalog", str(catalog)],
            stdout=out,
        )
    with tap_out.open("rb") as source, mapper_out.open("wb") as out:
        mapper = measure(
            [str(BIN / "swap-transforms"), "--config", str(mapper_config)], stdin=source, stdout=out
        )
    with mapper_out.open("rb") as source:
        target = measure(
            [str(BIN / "target-klaviyo"), "--config", str(target_config)], stdin=source
        )
    mapped = count_records(mapper_out)
    return {
        "tap": {**tap.as_dict(), "records_per_s": round(returns / tap.wall)},
        "mapper": {
            **mapper.as_dict(),
            "records_in_per_s": round(returns / mapper.wall),
            "records_out": mapped,
        },
        "target": {**target.as_dict(), "records_per_s": round(mapped / target.wall)},
    }


def pipeline(env: dict[str, str], tmp: Path, returns: int) -> dict[str, Any]:
    run_env = {
        **os.environ,
        **env,
        "TARGET_KLAVIYO_LEDGER_URL": f"sqlite:///{tmp}/pipeline-ledger.sqlite",
        "TARGET_KLAVIYO_RATE_LIMITS": json.dumps(FAST_LIMITS),
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp}/meltano.db",
    }
    subprocess.run(
        [str(BIN / "meltano"), "migrate"], cwd=REPO, env=run_env, check=False, capture_output=True
    )
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(BIN / "meltano"), "run", "tap-swapcommerce", "swap-to-klaviyo", "target-klaviyo"],
        cwd=REPO,
        env=run_env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "meltano.log").open("wb"),
    )
    root = psutil.Process(process.pid)
    peaks: dict[str, float] = {}
    cpu: dict[str, float] = {}
    while process.poll() is None:
        for proc in [root, *root.children(recursive=True)]:
            try:
                name = plugin_of(proc.cmdline())
                peaks[name] = max(peaks.get(name, 0.0), proc.memory_info().rss / 2**20)
                cpu[name] = max(cpu.get(name, 0.0), sum(proc.cpu_times()[:2]))
            except psutil.Error:
                continue
        time.sleep(0.1)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"meltano run failed; see {tmp / 'meltano.log'}")
    return {
        "wall_s": round(wall, 1),
        "returns_per_s": round(returns / wall),
        "peak_rss_mb": {k: round(v, 1) for k, v in sorted(peaks.items())},
        "cpu_s": {k: round(v, 1) for k, v in sorted(cpu.items())},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--returns", type=int, default=100_000)
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"returns": args.returns}
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        emulator_args = (
            "--swap-returns",
            str(args.returns),
            "--swap-rate-limit",
            "0",
            "--no-klaviyo-rate-limits",
            "--no-klaviyo-keep-event-properties",
            "--klaviyo-job-delay",
            "0",
        )
        with emulators(*emulator_args) as env:
            report["stages_alone"] = stages_alone(env, tmp, args.returns)
        with emulators(*emulator_args) as env:
            report["pipeline"] = pipeline(env, tmp, args.returns)
    slowest = max(float(s["wall_s"]) for s in report["stages_alone"].values())
    report["pipeline_over_slowest_stage"] = round(report["pipeline"]["wall_s"] / slowest, 2)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
