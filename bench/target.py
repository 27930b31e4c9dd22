"""Benchmark: target-klaviyo loading events into the Klaviyo emulator.

1. N events (default 100,000), emulator rate limits off: requests per 1,000 events (the floor is
   1), client CPU seconds per 10,000 events and peak memory of the target process.
2. M events (default 1,000,000) with the emulator enforcing Klaviyo's burst and steady limits,
   time-scaled (the target's `rate_limits` setting scaled the same way): throughput as a fraction
   of the most those limits allow. Goal: over 95%, memory flat as input grows.

The input comes from a generator process piped into the target, as a tap would feed it.

    python -m bench.target --events 100000 --limited-events 1000000 --time-scale 4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

from bench.common import BIN, emulators, measure, write_json

SCHEMA = json.loads(
    (
        Path(__file__).resolve().parent.parent
        / "target-klaviyo"
        / "target_klaviyo"
        / "schemas"
        / "klaviyo_events.json"
    ).read_text()
)
EVENTS_PER_MINUTE = 150 * 1000  # Klaviyo's steady limit (150 requests/min) x 1,000 events


def generate(count: int, profiles: int) -> None:
    """Singer messages for `count` events across `profiles` customers, with STATE every 10,000."""
    out = sys.stdout
    out.write(
        json.dumps(
            {
                "type": "SCHEMA",
                "stream": "klaviyo_events",
                "schema": SCHEMA,
                "key_properties": ["unique_id"],
            }
        )
        + "\n"
    )
    start = datetime.now(timezone.utc) - timedelta(days=3)
    for index in range(count):
        customer = index % profiles
        record = {
            "unique_id": f"bench:{index}",
            "metric": ("Return Started", "Return Received", "Refunded Order")[index % 3],
            "profile": {"email": f"customer{customer}@example.com"},
            "time": (start + timedelta(seconds=index)).isoformat(),
            "value": 19.99 + index % 50,
            "value_currency": "GBP",
            "properties": {
                "ReturnId": f"r{index // 3}",
                "RMA": f"SW-{index // 3}",
                "SKUs": ["TEE-M-BLK", "TEE-L-BLK"],
                "Items": [{"SKU": "TEE-M-BLK", "Quantity": 1, "Price": 19.99}],
            },
            "source_id": f"r{index // 3}",
            "source_updated_at": (start + timedelta(seconds=index)).isoformat(),
        }
        out.write(
            json.dumps({"type": "RECORD", "stream": "klaviyo_events", "record": record}) + "\n"
        )
        if (index + 1) % 10_000 == 0:
            out.write(json.dumps({"type": "STATE", "value": {"position": index + 1}}) + "\n")
    out.write(json.dumps({"type": "STATE", "value": {"position": count}}) + "\n")


def load(events: int, env: dict[str, str], tmp: Path, rate_limits: Any = None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "api_url": env["KLAVIYO_API_URL"],
        "api_key": env["KLAVIYO_API_KEY"],
        "ledger_url": f"sqlite:///{tmp}/ledger-{events}.sqlite",
        "backfill_after_hours": 1,
    }
    if rate_limits:
        config["rate_limits"] = rate_limits
    config_file = write_json(tmp / f"target-{events}.json", config)
    generator = subprocess.Popen(
        [sys.executable, "-m", "bench.target", "generate", str(events)], stdout=subprocess.PIPE
    )
    assert generator.stdout is not None
    started = time.perf_counter()
    measured = measure(
        [str(BIN / "target-klaviyo"), "--config", str(config_file)], stdin=generator.stdout
    )
    generator.wait()
    if measured.returncode != 0:
        raise RuntimeError(f"target-klaviyo failed with {measured.returncode}")
    stats = httpx.get(f"{env['KLAVIYO_API_URL']}/_emulator/stats", timeout=30).json()
    requests = stats["requests"].get("POST /api/event-bulk-create-jobs", 0)
    return {
        "events": events,
        "seconds": round(time.perf_counter() - started, 1),
        "target": measured.as_dict(),
        "event_requests": requests,
        "events_held": stats["events"],
        "throttled_429": stats["throttled"],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--limited-events", type=int, default=1_000_000)
    parser.add_argument("--time-scale", type=float, default=4.0)
    args = parser.parse_args(argv)
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        if args.events:
            with emulators(
                "--no-klaviyo-rate-limits",
                "--no-klaviyo-keep-event-properties",
                "--swap-returns",
                "10",
            ) as env:
                run = load(args.events, env, tmp)
            run["requests_per_1000_events"] = round(run["event_requests"] / (args.events / 1000), 2)
            run["cpu_s_per_10000_events"] = round(
                run["target"]["cpu_s"] / (args.events / 10_000), 2
            )
            report["unlimited"] = run
        if args.limited_events:
            scale = args.time_scale
            limits = {
                "events": [
                    {"requests": 10, "seconds": 1 / scale},
                    {"requests": 150, "seconds": 60 / scale},
                ]
            }
            with emulators(
                "--klaviyo-rate-limits",
                "--no-klaviyo-keep-event-properties",
                "--time-scale",
                str(scale),
                "--swap-returns",
                "10",
            ) as env:
                run = load(args.limited_events, env, tmp, limits)
            allowed_per_s = EVENTS_PER_MINUTE * scale / 60
            achieved = args.limited_events / run["seconds"]
            run["events_per_s"] = round(achieved)
            run["limit_events_per_s"] = round(allowed_per_s)
            run["fraction_of_limit"] = round(achieved / allowed_per_s, 3)
            report["rate_limited"] = run
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "generate":
        generate(int(sys.argv[2]), profiles=max(1, int(sys.argv[2]) // 5))
    else:
        main()
