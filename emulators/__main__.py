"""``python -m emulators``: run the sandbox emulators for the demo, and drive or inspect them.

``serve`` starts both emulators on free loopback ports and writes their URLs and sandbox keys to
an env file (the variables the ``sandbox`` Meltano environment reads), then runs until SIGTERM or
SIGINT. ``advance`` moves some Swap returns along their lifecycle; ``show`` prints what reached
Klaviyo. The last two talk to a running ``serve`` through its control endpoints.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import zlib
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.request import Request, urlopen

from emulators.klaviyo import KlaviyoEmulator, add_klaviyo_arguments, klaviyo_from_args
from emulators.swap import SwapEmulator, add_swap_arguments, catalog_skus, swap_from_args


def serve(args: argparse.Namespace) -> None:
    swap = swap_from_args(args)
    klaviyo: KlaviyoEmulator = klaviyo_from_args(args)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with swap, klaviyo:
        if args.seed_catalog:
            # The shop's $custom catalog: every SKU Swap's data set returns, in stock.
            klaviyo.add_variants(catalog_skus(), inventory=args.seed_inventory)
        if args.seed_profiles:
            _seed_profiles(swap, klaviyo)
        env = {
            "SWAP_API_URL": swap.url,
            "SWAP_API_KEY": swap.api_key,
            "SWAP_STORE_ID": swap.store_id,
            "KLAVIYO_API_URL": klaviyo.url,
            "KLAVIYO_API_KEY": args.klaviyo_api_key,
        }
        _write_env_file(Path(args.env_file), env)
        print(f"Swap emulator    {swap.url}", flush=True)
        print(f"Klaviyo emulator {klaviyo.url}", flush=True)
        print(f"Environment in   {args.env_file}", flush=True)
        stop.wait()
    Path(args.env_file).unlink(missing_ok=True)


def _seed_profiles(swap: SwapEmulator, klaviyo: KlaviyoEmulator) -> None:
    """The brand's Klaviyo account as a shop has it: most returning customers are known.

    One customer in ten shopped with another address than the one in the returns portal (the
    profile check flags their events as new profiles) and one in twenty-five is suppressed.
    """
    emails = {str(r.get("customer_email") or "").strip().lower() for r in swap.all_returns()} - {""}
    for email in sorted(emails):
        if "@" not in email or email.endswith("@"):
            continue
        bucket = zlib.crc32(email.encode()) % 100
        if bucket < 10:
            continue
        klaviyo.add_profile(email=email, suppressed=bucket < 14, consent="SUBSCRIBED")


def _write_env_file(path: Path, env: dict[str, str]) -> None:
    """Write atomically and owner-only: a reader never sees half a file, and keys stay private."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".emulators-")
    with os.fdopen(fd, "w") as handle:
        handle.writelines(f"export {key}={value}\n" for key, value in env.items())
    os.replace(tmp, path)


def _env(path: str) -> dict[str, str]:
    values = {}
    for line in Path(path).read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        values[key] = value
    return values


def _call(url: str, method: str = "GET", body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = Request(url, data=data, method=method, headers={"Content-Type": "application/json"})  # noqa: S310
    with urlopen(request, timeout=30) as response:  # noqa: S310 - loopback emulator URLs only
        return json.loads(response.read() or b"null")


def advance(args: argparse.Namespace) -> None:
    env = _env(args.env_file)
    body = {"fraction": args.fraction} if args.count is None else {"count": args.count}
    changed = _call(f"{env['SWAP_API_URL']}/_emulator/advance", "POST", body)["changed"]
    print(f"Swap emulator: {len(changed)} returns moved one step along their lifecycle")


def show(args: argparse.Namespace) -> None:
    """What Klaviyo holds now: events per metric, suppressed customers, restocked inventory."""
    env = _env(args.env_file)
    base = env["KLAVIYO_API_URL"]
    events = _call(f"{base}/_emulator/events")["events"]
    profiles = _call(f"{base}/_emulator/profiles")["profiles"]
    stats = _call(f"{base}/_emulator/stats")
    print("Klaviyo (emulator) now holds:")
    for metric, count in sorted(Counter(e["metric"] for e in events).items()):
        print(f"  {count:6d}  {metric} events")
    open_returns = [p for p in profiles if (p.get("properties") or {}).get("swap_open_returns")]
    print(f"  {len(profiles):6d}  profiles, {len(open_returns)} with open returns (suppressed)")
    print(
        f"  {stats.get('variant_jobs', 0):6d}  catalog inventory jobs;"
        f" {stats.get('flow_triggering_events', 0)} events could trigger flows,"
        f" {stats.get('backfill_events', 0)} were backfilled history"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulators", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve_cmd = commands.add_parser("serve", help="run both emulators until stopped")
    serve_cmd.add_argument("--env-file", default="runtime/emulators.env")
    serve_cmd.add_argument("--time-scale", type=float, default=1.0, help="speed up rate limits")
    serve_cmd.add_argument("--seed", type=int, default=0, help="seed of injected random faults")
    serve_cmd.add_argument(
        "--seed-catalog",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="create the $custom catalog variants of Swap's SKUs in Klaviyo",
    )
    serve_cmd.add_argument("--seed-inventory", type=int, default=0)
    serve_cmd.add_argument(
        "--seed-profiles",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="create Klaviyo profiles for most of Swap's customers (a shop's account)",
    )
    add_swap_arguments(serve_cmd)
    add_klaviyo_arguments(serve_cmd)
    serve_cmd.set_defaults(func=serve)

    advance_cmd = commands.add_parser("advance", help="move Swap returns along their lifecycle")
    advance_cmd.add_argument("--env-file", default="runtime/emulators.env")
    advance_cmd.add_argument("--fraction", type=float, default=0.3)
    advance_cmd.add_argument("--count", type=int, default=None)
    advance_cmd.set_defaults(func=advance)

    show_cmd = commands.add_parser("show", help="print what reached the Klaviyo emulator")
    show_cmd.add_argument("--env-file", default="runtime/emulators.env")
    show_cmd.set_defaults(func=show)

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
