"""Benchmark: many brands on one machine (an agency's cycle).

Twenty brands (``--brands``), each with its own Swap and Klaviyo emulator (in this process, on
loopback) and ``--returns`` returns, run as production runs them: ``swap-brands run <brand>``
(the launcher, Meltano, tap, mapper and target), ``--concurrency`` at a time (the Dagster run
queue's global limit, ``orchestration/dagster.yaml``), with a Meltano system database and SQLite
ledgers of the benchmark's own. Measured:

- the first cycle (every brand delivers its history): wall time for all brands;
- ``--idle-cycles`` cycles in which nothing changed: wall time for all brands, and CPU seconds per
  brand per idle cycle (user + system of every process of the run, from the operating system's
  accounting of waited-for children);
- from those, how many brands one machine keeps on a 5-minute cycle: the CPU bound
  (cores x 300 s x ``--headroom`` / CPU per brand) and the wall bound (300 s x concurrency /
  wall per run), whichever is lower.

    python -m bench.brands --brands 20 --concurrency 4
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from bench.common import REPO
from emulators.klaviyo import KlaviyoEmulator
from emulators.swap import SwapEmulator, catalog_skus

SWAP_BRANDS = REPO / ".venv" / "bin" / "swap-brands"
CYCLE_SECONDS = 300.0


@contextlib.contextmanager
def postgres_cluster(wanted: bool) -> Iterator[str | None]:
    """A throwaway PostgreSQL (tests/support/postgres.py's cluster), or None."""
    if not wanted:
        yield None
        return
    from harness.postgres import Cluster, server_binaries  # noqa: PLC0415

    binaries = server_binaries()
    if binaries is None:
        raise SystemExit("PostgreSQL is not installed (apt-get install -y postgresql)")
    cluster = Cluster(binaries)
    cluster.start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


@contextlib.contextmanager
def brand_emulators(count: int, returns: int) -> Iterator[list[dict[str, Any]]]:
    now = datetime(2026, 6, 1, tzinfo=timezone.utc)
    with contextlib.ExitStack() as stack:
        brands = []
        for number in range(count):
            name = f"brand{number:02d}"
            swap = stack.enter_context(
                SwapEmulator(
                    returns=returns,
                    seed=500 + number,
                    now=now,
                    api_key=f"swap_{name}",
                    store_id=f"store_{name}",
                    rate_limit_per_minute=None,
                )
            )
            klaviyo = stack.enter_context(
                KlaviyoEmulator(api_key=f"pk_{name}", job_delay=0.02, keep_event_properties=False)
            )
            klaviyo.add_variants(catalog_skus(), inventory=0)
            brands.append({"name": name, "swap": swap, "klaviyo": klaviyo})
        yield brands


def brands_file(work: Path, brands: list[dict[str, Any]], postgres: bool) -> Path:
    entries = [
        {
            "name": b["name"],
            "store_id": b["swap"].store_id,
            "swap_api_key_env": f"{b['name'].upper()}_SWAP_KEY",
            "klaviyo_api_key_env": f"{b['name'].upper()}_KLAVIYO_KEY",
            "overrides": {"swap_api_url": b["swap"].url, "klaviyo_api_url": b["klaviyo"].url},
        }
        for b in brands
    ]
    ledger: dict[str, str] = {"kind": "sqlite", "folder": str(work / "ledgers")}
    if postgres:
        ledger = {"kind": "postgres", "url_env": "SWAP_LEDGER_DATABASE_URL"}
    data = {"version": 1, "defaults": {"environment": "sandbox", "ledger": ledger}}
    path = work / "brands.yml"
    path.write_text(yaml.safe_dump({**data, "brands": entries}, sort_keys=False))
    return path


def meltano_env(work: Path, brands: list[dict[str, Any]], postgres: str | None) -> dict[str, str]:
    """A system dir of the benchmark's own (plugins linked, job rows and state empty).

    With ``postgres`` (a SQLAlchemy URL), Meltano's system database and state are there, as in
    the agency set-up; SQLite otherwise.
    """
    sys_dir = work / "meltano-sys"
    sys_dir.mkdir()
    for kind in ("extractors", "loaders", "mappers", "utilities"):
        (sys_dir / kind).symlink_to(REPO / ".meltano" / kind)
    shutil.copy(REPO / ".meltano" / "meltano.db", sys_dir / "meltano.db")
    with contextlib.closing(sqlite3.connect(sys_dir / "meltano.db")) as db:
        db.execute("DELETE FROM runs")
        db.execute("DELETE FROM state")
        db.commit()
    env = {**os.environ, "MELTANO_SYS_DIR_ROOT": str(sys_dir)}
    if postgres:
        env["MELTANO_DATABASE_URI"] = postgres
        env["SWAP_LEDGER_DATABASE_URL"] = postgres
        subprocess.run(
            [str(REPO / ".venv/bin/meltano"), "upgrade", "database"],
            env=env,
            cwd=REPO,
            check=True,
            capture_output=True,
        )
    for b in brands:
        env[f"{b['name'].upper()}_SWAP_KEY"] = b["swap"].api_key
        env[f"{b['name'].upper()}_KLAVIYO_KEY"] = f"pk_{b['name']}"
    return env


def run_one(name: str, file: Path, env: dict[str, str]) -> tuple[str, float, str]:
    started = time.monotonic()
    done = subprocess.run(
        [str(SWAP_BRANDS), "--project-dir", str(REPO), "--brands-file", str(file), "run", name],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    output = done.stdout + done.stderr
    lines = [x for x in output.splitlines() if "run outcome: " in x]
    outcome = lines[-1].split("run outcome: ")[1].strip() if lines else "none"
    if outcome not in ("succeeded", "set_aside_over_threshold"):
        sys.stderr.write(f"== {name}: {outcome}\n{output[-2500:]}\n")
    return name, time.monotonic() - started, outcome


def cycle(names: list[str], file: Path, env: dict[str, str], concurrency: int) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        runs = list(pool.map(lambda n: run_one(n, file, env), names))
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    outcomes = dict(Counter(outcome for _n, _w, outcome in runs))
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "cpu_per_brand_s": round(cpu / len(names), 2),
        "wall_per_run_s": round(sum(w for _n, w, _o in runs) / len(runs), 2),
        "outcomes": outcomes,
    }


def capacity(idle: dict[str, Any], concurrency: int, headroom: float) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    cpu_bound = cores * CYCLE_SECONDS * headroom / idle["cpu_per_brand_s"]
    wall_bound = CYCLE_SECONDS * concurrency / idle["wall_per_run_s"]
    return {
        "cores": cores,
        "cpu_bound_brands": int(cpu_bound),
        "wall_bound_brands": int(wall_bound),
        "brands_on_a_5_minute_cycle": int(min(cpu_bound, wall_bound)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--brands", type=int, default=20)
    parser.add_argument("--returns", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--idle-cycles", type=int, default=2)
    parser.add_argument("--headroom", type=float, default=0.7, help="share of CPU to plan for")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="system db, state and ledgers in a throwaway cluster",
    )
    args = parser.parse_args()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    with (
        tempfile.TemporaryDirectory(prefix="bench-brands-") as tmp,
        brand_emulators(args.brands, args.returns) as brands,
        postgres_cluster(args.postgres) as postgres,
    ):
        work = Path(tmp)
        file = brands_file(work, brands, postgres is not None)
        env = meltano_env(work, brands, postgres)
        names = [b["name"] for b in brands]
        first = cycle(names, file, env, args.concurrency)
        idle = [cycle(names, file, env, args.concurrency) for _ in range(args.idle_cycles)]
        events = sum(len(b["klaviyo"].events()) for b in brands)
    best = min(idle, key=lambda c: c["cpu_per_brand_s"]) if idle else first
    result = {
        "brands": args.brands,
        "returns_per_brand": args.returns,
        "concurrency": args.concurrency,
        "system_db_and_ledgers": "postgresql" if args.postgres else "sqlite",
        "first_cycle": first,
        "idle_cycles": idle,
        "klaviyo_events": events,
        "capacity": capacity(best, args.concurrency, args.headroom),
        "uptime_before": uptime.strip(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
