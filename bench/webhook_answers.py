"""Answer times of the webhook receiver for N deliveries arriving at once (goal: p95 < 100 ms).

Runs the real ``swap-webhooks serve`` (its hardened uvicorn configuration, its state db with
``synchronous=FULL``) in its own process, with a stand-in run command (the runs it triggers are
not what is measured). Each round opens N connections at the same instant from one asyncio
client, each POSTing a freshly signed delivery; a delivery's answer time runs from its connect to
the last byte of the answer. Several rounds; the figure to quote is the median of the rounds' p95.
The receiver's CPU per round is printed too: on a busy machine (see ``uptime``) the answers wait
for a core, and CPU time says what a quiet one would take.

    .venv/bin/python -m bench.webhook_answers [--deliveries 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from emulators.swap import webhook_payload
from harness.webhooks import FAKE_RUN, SECRET, STORE, ReceiverProcess, get_json

GOAL_P95_MS = 100.0


async def deliver(port: int, body: bytes) -> tuple[float, int]:
    """One delivery over a new connection: (milliseconds from connect to answer, status)."""
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /webhooks/swap HTTP/1.1\r\nHost: receiver\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    answer = await reader.read()
    elapsed = (time.perf_counter() - start) * 1000
    writer.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return elapsed, status


async def burst(port: int, count: int, round_number: int) -> list[tuple[float, int]]:
    bodies = [
        json.dumps(
            webhook_payload(
                {"return_id": f"ret_bench_{round_number}_{n:04d}", "order_id": str(n)},
                "returnCreated",
                SECRET,
                STORE,
            )
        ).encode()
        for n in range(count)
    ]
    return await asyncio.gather(*(deliver(port, body) for body in bodies))


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    env = {
        "SWAP_WEBHOOKS_WEBHOOK_SECRET": SECRET,
        "SWAP_WEBHOOKS_STORE_ID": STORE,
        "SWAP_WEBHOOKS_PROJECT_DIR": str(work),
        "SWAP_WEBHOOKS_STATE_DB": str(work / "webhooks.sqlite"),
        "SWAP_WEBHOOKS_RUN_COMMAND": json.dumps([sys.executable, str(FAKE_RUN), str(work / "r")]),
    }
    if args.receiver_path:  # another version of the receiver, to compare on the same machine
        env["PYTHONPATH"] = str(args.receiver_path)
    receiver = ReceiverProcess(env, work / "receiver.log").start()
    port = int(receiver.base.rsplit(":", 1)[1])
    rounds: list[dict[str, Any]] = []
    try:
        assert receiver.process is not None
        server = psutil.Process(receiver.process.pid)
        for number in range(args.rounds):
            cpu_before = sum(server.cpu_times()[:2])
            results = asyncio.run(burst(port, args.deliveries, number))
            cpu = sum(server.cpu_times()[:2]) - cpu_before
            times = [ms for ms, _ in results]
            statuses = sorted({status for _, status in results})
            rounds.append(
                {
                    "median_ms": round(statistics.median(times), 1),
                    "p95_ms": round(quantile(times, 0.95), 1),
                    "max_ms": round(max(times), 1),
                    "statuses": statuses,
                    "server_cpu_ms": round(cpu * 1000),
                }
            )
            time.sleep(args.pause)
        server_side = get_json(receiver.base + "/metrics")["answer_ms"]
    finally:
        receiver.stop()
    p95s: list[float] = [r["p95_ms"] for r in rounds]
    return {
        "deliveries": args.deliveries,
        "rounds": rounds,
        "median_of_p95_ms": statistics.median(p95s),
        "server_side_answer_ms": server_side,
        "load": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between rounds")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--receiver-path", type=Path, help="PYTHONPATH of the receiver (an older swap-webhooks)"
    )
    args = parser.parse_args()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    print(f"uptime: {uptime.strip()}")
    with tempfile.TemporaryDirectory(prefix="webhook-answers-") as tmp:
        result = run(args, Path(tmp))
    for number, figures in enumerate(result["rounds"], 1):
        print(
            f"round {number}: {args.deliveries} at once: median {figures['median_ms']} ms,"
            f" p95 {figures['p95_ms']} ms, max {figures['max_ms']} ms,"
            f" statuses {figures['statuses']}; receiver CPU {figures['server_cpu_ms']} ms"
        )
    met = result["median_of_p95_ms"] < GOAL_P95_MS
    print(
        f"median of the rounds' p95: {result['median_of_p95_ms']} ms"
        f" (goal < {GOAL_P95_MS:.0f} ms: {'met' if met else 'NOT met'})"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
