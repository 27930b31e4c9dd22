"""Benchmark: the fixed cost of a pipeline run that finds nothing new (the idle cycle).

A schedule or a webhook starts `swap-meltano run returns-to-klaviyo` every few minutes; most of
those runs find nothing, so what one costs when there is nothing to do is what an agency pays for
each brand, and the floor under every webhook's latency. Measured as the README runs it: through
the launcher, in the project directory, against both emulators (in their own process, the demo's
1,000 returns), with a system database and ledger of the benchmark's own; a first run delivers
everything, then each measured run finds nothing and must end ``run outcome: succeeded``.

Per run: wall seconds, and CPU seconds (user + system) of the whole process tree, from the
operating system's accounting of the finished launcher (``wait4``: it includes every descendant
that was waited for, Meltano and its plugins, short-lived ones too). The median of ``--runs``.

``--components`` also measures, the same way, what each part of a run costs on its own: Meltano's
start-up (``meltano --version``), each plugin's start-up (``--about``), tap discovery, and
Meltano's own per-run work (system database, state, job record) with no-op plugins (a shell
``true`` as extractor and loader in a throwaway project).

    python -m bench.idle_cycle --runs 10 [--components]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.common import BIN, REPO, emulators, write_json
from harness.webhooks import isolated_meltano

RUN = [str(BIN / "swap-meltano"), "run", "returns-to-klaviyo"]
COMPONENTS = ("swap-meltano", "meltano", "tap-swapcommerce", "swap-transforms", "target-klaviyo")
OUTCOME = re.compile(r"run outcome: ([a-z_]+)")


@dataclass(frozen=True)
class Timed:
    """One finished process tree: wall seconds, CPU seconds of the tree, exit status, output."""

    wall: float
    cpu: float
    returncode: int
    output: str
    #: CPU seconds per component (launcher, meltano, each plugin), sampled: see ``CpuByProcess``.
    by_component: dict[str, float] = field(default_factory=dict)


class CpuByProcess:
    """Each process's own CPU seconds, polled every 20 ms, summed by component.

    A sample misses at most a process's last 20 ms (the whole tree's total comes from ``wait4``
    instead); it tells which component the seconds go to.
    """

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.seen: dict[int, tuple[str, float]] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._done.is_set():
            with contextlib.suppress(psutil.Error):
                for proc in [self.root, *self.root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        name = self.seen.get(proc.pid, ("", 0.0))[0] or component(proc.cmdline())
                        times = proc.cpu_times()
                        self.seen[proc.pid] = (name, times.user + times.system)
            time.sleep(0.02)

    def stop(self) -> dict[str, float]:
        self._done.set()
        self._thread.join(timeout=2)
        totals: dict[str, float] = {}
        for name, cpu in self.seen.values():
            totals[name] = totals.get(name, 0.0) + cpu
        return totals


def component(cmdline: list[str]) -> str:
    """Which part of a run a process is, from its command line."""
    if "swap_meltano.meltano_main" in cmdline[:3]:  # the launcher runs Meltano through it
        return "meltano"
    for part in cmdline[:2]:
        name = Path(part).name
        if name in COMPONENTS:
            return name
    return "other"


def timed(
    command: Sequence[str], env: dict[str, str], cwd: Path = REPO, *, by_component: bool = False
) -> Timed:
    """Run ``command`` and take the tree's CPU from ``wait4`` (descendants that were reaped)."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        sampler = CpuByProcess(process.pid) if by_component else None
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        parts = sampler.stop() if sampler else {}
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read().decode("utf-8", "replace")
    return Timed(wall, usage.ru_utime + usage.ru_stime, process.returncode, output, parts)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def outcome_of(result: Timed) -> str | None:
    found = OUTCOME.findall(result.output)
    return found[-1] if found else None


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def idle_runs(env: dict[str, str], runs: int, log: Path) -> dict[str, Any]:
    first = timed(RUN, env)
    log.write_text(first.output)
    if outcome_of(first) != "succeeded":
        raise SystemExit(f"the first run did not succeed ({outcome_of(first)}); see {log}")
    walls, cpus = [], []
    parts: dict[str, list[float]] = {}
    for number in range(runs):
        result = timed(RUN, env, by_component=True)
        for name, cpu in result.by_component.items():
            parts.setdefault(name, []).append(cpu)
        with log.open("a") as handle:
            handle.write(f"\n===== idle run {number + 1}\n{result.output}")
        if outcome_of(result) != "succeeded":
            raise SystemExit(f"idle run {number + 1}: {outcome_of(result)}; see {log}")
        walls.append(result.wall)
        cpus.append(result.cpu)
    return {
        "first_run": {"wall_s": round(first.wall, 2), "cpu_s": round(first.cpu, 2)},
        "wall_s": summary(walls),
        "cpu_s": summary(cpus),
        "cpu_s_by_component_sampled": {k: summary(v) for k, v in sorted(parts.items())},
    }


NOOP_PROJECT = """\
    project_id: idle-cycle-noop
    send_anonymous_usage_stats: false
    default_environment: noop
    environments:
    - name: noop
    plugins:
      extractors:
      - name: tap-noop
        namespace: tap_noop
        executable: {true}
        capabilities: [state]
      loaders:
      - name: target-noop
        namespace: target_noop
        executable: {true}
    jobs:
    - name: noop
      tasks:
      - tap-noop target-noop
"""


def meltano_noop(tmp: Path, repeat: int) -> list[Timed]:
    """``meltano run`` of a job whose plugins do nothing (``true``): Meltano's own per-run work."""
    project = tmp / "noop-project"
    project.mkdir()
    (project / "meltano.yml").write_text(
        textwrap.dedent(NOOP_PROJECT).format(
            true=subprocess.check_output(["which", "true"], text=True).strip()
        )
    )
    env = {**os.environ, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"}
    env.pop("MELTANO_SYS_DIR_ROOT", None)
    return [timed([str(BIN / "meltano"), "run", "noop"], env, cwd=project) for _ in range(repeat)]


def plugin_bin(kind: str, name: str) -> str:
    """A plugin's executable in the virtualenv Meltano installed it in (what a run starts)."""
    return str(REPO / ".meltano" / kind / name / "venv" / "bin" / name)


def components(env: dict[str, str], tmp: Path, repeat: int) -> dict[str, Any]:
    """Each part of a run's fixed cost on its own, the median of ``repeat`` runs."""
    tap_config = write_json(
        tmp / "tap.json",
        {
            k: env[v]
            for k, v in (
                ("api_url", "SWAP_API_URL"),
                ("api_key", "SWAP_API_KEY"),
                ("store_id", "SWAP_STORE_ID"),
            )
        },
    )
    tap, mapper, target = (
        plugin_bin("extractors", "tap-swapcommerce"),
        plugin_bin("mappers", "swap-transforms"),
        plugin_bin("loaders", "target-klaviyo"),
    )
    commands = {
        "meltano --version": [str(BIN / "meltano"), "--version"],
        "python -c pass": [sys.executable, "-c", "pass"],
        "tap-swapcommerce --about": [tap, "--about"],
        "tap-swapcommerce --discover": [
            tap,
            "--config",
            str(tap_config),
            "--discover",
        ],
        "swap-transforms --about": [mapper, "--about"],
        "target-klaviyo --about": [target, "--about"],
    }
    figures: dict[str, Any] = {}
    for name, command in commands.items():
        results = [timed(command, env) for _ in range(repeat)]
        figures[name] = {
            "wall_s": summary([r.wall for r in results]),
            "cpu_s": summary([r.cpu for r in results]),
        }
    noop = meltano_noop(tmp, repeat)
    if any(r.returncode != 0 for r in noop):
        raise SystemExit(f"the no-op meltano run failed:\n{noop[0].output}")
    figures["meltano run (no-op plugins)"] = {
        "wall_s": summary([r.wall for r in noop]),
        "cpu_s": summary([r.cpu for r in noop]),
    }
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="measured no-change runs")
    parser.add_argument("--returns", type=int, default=1000, help="returns in the Swap emulator")
    parser.add_argument("--components", action="store_true", help="also time each part alone")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each component")
    parser.add_argument("--log", type=Path, help="keep every run's output in this file")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"uptime_before": uptime(), "runs": args.runs}
    with tempfile.TemporaryDirectory(prefix="idle-cycle-") as directory:
        tmp = Path(directory)
        log = args.log or tmp / "runs.log"
        with (
            emulators("--swap-returns", str(args.returns)) as emulator_env,
            isolated_meltano(tmp) as meltano_env,
        ):
            env = {**os.environ, **emulator_env, **meltano_env}
            report["idle"] = idle_runs(env, args.runs, log)
            print(json.dumps(report["idle"], indent=2), flush=True)  # kept if components fail
            if args.components:
                report["components"] = components(env, tmp, args.repeat)
    report["uptime_after"] = uptime()
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
