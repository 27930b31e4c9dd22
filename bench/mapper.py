"""Benchmark: the swap-transforms mapper on N returns, beside meltano-map-transform.

Three runs over the same input (the tap's output for N emulator returns, saved once):
- the full default mapping (transforms/swap_to_klaviyo.yml);
- the `Return Started` rule alone;
- meltano-map-transform (the standard stream-map mapper, in its own virtualenv) running the same
  projection as a stream map.
The goal is for the `Return Started` rule to be clearly faster than meltano-map-transform, with
memory flat as the input grows.

    python -m bench.mapper --returns 100000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from bench.common import BIN, REPO, emulators, measure, returns_only_catalog, write_json

MMT_VERSION = "0.12.3"
VENVS = REPO / "bench" / ".venvs"
DATA = REPO / "bench" / ".data"

#: The `Return Started` projection, as a singer-sdk stream map (simpleeval expressions).
RETURN_STARTED_MAP = {
    "return_id": "return_id",  # the stream's key must stay
    "metric": "'Return Started'",
    "unique_id": "'swap:' + return_id + ':started'",
    "email": "(customer_email or '').strip().lower()",
    "time": "submission_date or date_updated",
    "value": "total",
    "value_currency": "customer_currency",
    "source_id": "return_id",
    "source_updated_at": "date_updated",
    "ReturnId": "return_id",
    "RMA": "rma_number",
    "OrderId": "order_id",
    "OrderName": "shopify_order_name",
    "ReturnTypes": "type or []",
    "SKUs": "[i['sku'] for s in (return_shipments or []) for i in (s['items'] or [])]",
    "Reasons": "[i['main_reason_text'] for s in (return_shipments or []) "
    "for i in (s['items'] or []) if i['main_reason_text']]",
    "Items": "[{'SKU': i['sku'], 'ProductName': i['product_name'], 'VariantName': "
    "i['variant_name'], 'Quantity': i['item_count'], 'Price': i['cost'], 'Reason': "
    "i['main_reason_text'], 'SubReason': i['sub_reason_text'], 'IsFaulty': i['is_faulty']} "
    "for s in (return_shipments or []) for i in (s['items'] or [])]",
    "ReturnStatus": "return_status",
    "PortalLink": "portal_quick_link",
    "__else__": None,
}


def tap_output(returns: int) -> Path:
    """The tap's Singer output for `returns` emulator returns, generated once and cached."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"returns-{returns}.singer.jsonl"
    if path.exists():
        return path
    with (
        emulators("--swap-returns", str(returns), "--swap-rate-limit", "0") as env,
        tempfile.TemporaryDirectory() as tmp,
    ):
        config = write_json(
            Path(tmp, "tap.json"),
            {
                "api_url": env["SWAP_API_URL"],
                "api_key": env["SWAP_API_KEY"],
                "store_id": env["SWAP_STORE_ID"],
            },
        )
        catalog = returns_only_catalog(BIN / "tap-swapcommerce", config, Path(tmp, "cat.json"))
        partial = path.with_suffix(".partial")
        with partial.open("wb") as out:
            subprocess.run(
                [str(BIN / "tap-swapcommerce"), "--config", str(config), "--catalog", str(catalog)],
                stdout=out,
                stderr=subprocess.DEVNULL,
                check=True,
            )
        partial.rename(path)
    return path


def meltano_map_transform() -> Path:
    """meltano-map-transform in its own virtualenv (it pins its own singer-sdk)."""
    venv = VENVS / f"meltano-map-transform-{MMT_VERSION}"
    executable = venv / "bin" / "meltano-map-transform"
    if not executable.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", f"meltano-map-transform=={MMT_VERSION}"],
            check=True,
            stderr=subprocess.DEVNULL,
        )
    return executable


def return_started_mapping(tmp: Path) -> Path:
    """The default mapping with only its `return_started` rule (paths made absolute)."""
    source = REPO / "transforms" / "swap_to_klaviyo.yml"
    mapping = yaml.safe_load(source.read_text())
    mapping["include"] = [str(source.parent / p) for p in mapping.get("include", [])]
    for output in mapping["outputs"].values():
        output["schema"] = str(source.parent / output["schema"])
    stream = mapping["streams"]["returns"]
    stream["rules"] = [r for r in stream["rules"] if r["name"] == "return_started"]
    path = tmp / "return_started.yml"
    path.write_text(yaml.safe_dump(mapping, sort_keys=False))
    return path


def run(command: list[str], source: Path, tmp: Path) -> dict[str, object]:
    output = tmp / "out.jsonl"
    with source.open("rb") as stdin, output.open("wb") as stdout:
        measured = measure(command, stdin=stdin, stdout=stdout)
    if measured.returncode != 0:
        raise RuntimeError(f"{command[0]} failed with {measured.returncode}")
    records = sum(1 for line in output.open("rb") if b'"RECORD"' in line[:30])
    return {**measured.as_dict(), "records_out": records}


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--returns", type=int, default=100_000)
    args = parser.parse_args(argv)
    source = tap_output(args.returns)
    mmt = meltano_map_transform()
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        full = write_json(
            tmp / "full.json", {"mapping_files": [str(REPO / "transforms" / "swap_to_klaviyo.yml")]}
        )
        alone = write_json(
            tmp / "alone.json", {"mapping_files": [str(return_started_mapping(tmp))]}
        )
        mmt_config = write_json(tmp / "mmt.json", {"stream_maps": {"returns": RETURN_STARTED_MAP}})
        results = {
            "full_mapping": run([str(BIN / "swap-transforms"), "--config", str(full)], source, tmp),
            "return_started_rule": run(
                [str(BIN / "swap-transforms"), "--config", str(alone)], source, tmp
            ),
            "meltano_map_transform": run([str(mmt), "--config", str(mmt_config)], source, tmp),
        }
    for result in results.values():
        result["returns_per_s"] = round(args.returns / float(str(result["wall_s"])))
    cpu = {name: float(str(result["cpu_s"])) for name, result in results.items()}
    report = {
        "returns": args.returns,
        **results,
        "return_started_speedup_over_meltano_map_transform_cpu": round(
            cpu["meltano_map_transform"] / cpu["return_started_rule"], 2
        ),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
