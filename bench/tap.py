"""Benchmark: tap-swapcommerce syncing N returns, beside a plain httpx loop doing the same work.

The plain loop fetches the same pages (keyset requests like the tap's) and writes the same
records as Singer RECORD lines; the tap adds singer-sdk, schema validation and state. Both run as
processes against the Swap emulator (rate limit off) in its own process. The goal is a tap time
of at most 1.5x the loop's, with memory flat as the sync grows (compare --returns 25000 and 100000).

    python -m bench.tap --returns 100000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from bench.common import BIN, emulators, measure, returns_only_catalog, write_json

PLAIN_LOOP = r"""
import json, sys, httpx
url, key, store = sys.argv[1:4]
out = sys.stdout
since, page, seen = None, 1, set()
with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60) as client:
    while True:
        params = {"swap_store_id": store, "items_per_page": 100, "page": page}
        if since:
            params["last_RMA_updated_date"] = since
        body = client.get("/v2/external/returns", params=params).json()
        rows = body["returns"]
        for row in rows:
            k = (row["date_updated"], row["return_id"])
            if k in seen:
                continue
            seen.add(k)
            out.write(json.dumps({"type": "RECORD", "stream": "returns", "record": row}) + "\n")
        if not body["pagination"]["has_next_page"] or not rows:
            break
        last = rows[-1]["date_updated"]
        since, page = (since, page + 1) if last == since else (last, 1)
"""


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--returns", type=int, default=100_000)
    args = parser.parse_args(argv)
    with (
        emulators("--swap-returns", str(args.returns), "--swap-rate-limit", "0") as env,
        tempfile.TemporaryDirectory() as tmp,
    ):
        config = write_json(
            Path(tmp, "tap.json"),
            {
                "api_url": env["SWAP_API_URL"],
                "api_key": env["SWAP_API_KEY"],
                "store_id": env["SWAP_STORE_ID"],
                "page_size": 100,
            },
        )
        catalog = returns_only_catalog(BIN / "tap-swapcommerce", config, Path(tmp, "catalog.json"))
        plain = measure(
            [
                sys.executable,
                "-c",
                PLAIN_LOOP,
                env["SWAP_API_URL"],
                env["SWAP_API_KEY"],
                env["SWAP_STORE_ID"],
            ]
        )
        tap = measure(
            [str(BIN / "tap-swapcommerce"), "--config", str(config), "--catalog", str(catalog)]
        )
    result = {
        "returns": args.returns,
        "tap": tap.as_dict(),
        "plain_httpx_loop": plain.as_dict(),
        "tap_over_plain": round(tap.wall / plain.wall, 2),
        "tap_returns_per_s": round(args.returns / tap.wall),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
