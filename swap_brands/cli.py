"""``swap-brands``: the brands of one deployment, from ``brands.yml``.

``list`` checks the file and shows each brand; ``run <brand>`` runs that brand's pipeline through
the project's launcher; ``remove <brand> --purge`` deletes its ledger data and Meltano state and
its entry; ``summary`` shows each brand's last outcome, lag and set-aside records.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from swap_brands.config import Brand, BrandsFile, BrandsFileError, brands_file_path, load_brands
from swap_brands.ledgers import LedgerConfigError, purge, summarize
from swap_brands.runs import MissingSecretError, exec_run, launcher
from swap_meltano.claim import AlreadyRunningError, ClaimError, claimed
from swap_meltano.launcher import system_database_uri
from swap_meltano.project import MeltanoProject, sys_dir_default

#: Exit status for a brands file, setting or secret that is missing or wrong (no run started).
CONFIG_ERROR_EXIT = 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    root = _project_root(args.project_dir)
    env = dict(os.environ)
    path = Path(args.brands_file) if args.brands_file else brands_file_path(root, env)
    try:
        brands = load_brands(path)
        return int(args.func(args, brands, root, env))
    except BrandsFileError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return CONFIG_ERROR_EXIT
    except (MissingSecretError, LedgerConfigError) as error:
        print(f"swap-brands: {error}", file=sys.stderr)
        return CONFIG_ERROR_EXIT


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swap-brands", description=__doc__)
    parser.add_argument("--project-dir", help="the Meltano project (default: found from here)")
    parser.add_argument("--brands-file", help="default: $SWAP_BRANDS_FILE, else brands.yml")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="check the brands file and list its brands")
    listing.add_argument("--format", choices=("text", "json"), default="text")
    listing.set_defaults(func=_list)
    run = commands.add_parser("run", help="run one brand's pipeline (through swap-meltano)")
    run.add_argument("brand")
    run.set_defaults(func=_run)
    remove = commands.add_parser("remove", help="delete a brand's ledger data, state and entry")
    remove.add_argument("brand")
    remove.add_argument("--purge", action="store_true", help="required: this deletes data")
    remove.set_defaults(func=_remove)
    summary = commands.add_parser("summary", help="each brand's last outcome, lag, set-asides")
    summary.add_argument("--format", choices=("text", "json"), default="text")
    summary.set_defaults(func=_summary)
    return parser


def _project_root(given: str | None) -> Path:
    start = Path(given or os.environ.get("MELTANO_PROJECT_ROOT") or ".").resolve()
    project = MeltanoProject.find(start)
    if project is None:
        raise SystemExit(f"swap-brands: no meltano.yml in {start} or its parents")
    return project.root


def _list(args: argparse.Namespace, brands: BrandsFile, root: Path, env: Mapping) -> int:
    rows = [_public(brand) for brand in brands.brands]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{len(rows)} brand(s) in {brands.path} (environment {brands.environment}):")
    for row in rows:
        print(f"  {row['name']:<20} store {row['store_id']:<24} schedule {row['schedule']}")
    return 0


def _public(brand: Brand) -> dict:
    """What may be shown of a brand: names of variables, never their values."""
    return {
        "name": brand.name,
        "store_id": brand.store_id,
        "state_id": brand.state_id,
        "schedule": brand.schedule,
        "ledger": brand.ledger.kind,
        "swap_api_key_env": brand.swap_api_key_env,
        "klaviyo_api_key_env": brand.klaviyo_api_key_env,
        "webhook_secret_env": brand.webhook_secret_env,
        "alert_webhook_url_env": brand.alert_webhook_url_env,
        "overrides": dict(brand.overrides),
    }


def _run(args: argparse.Namespace, brands: BrandsFile, root: Path, env: Mapping) -> int:
    exec_run(brands.brand(args.brand), root, env)
    return 1  # not reached: exec_run replaces this process


def _remove(args: argparse.Namespace, brands: BrandsFile, root: Path, env: Mapping) -> int:
    in_file = any(b.name == args.brand for b in brands.brands)
    brand = brands.brand(args.brand) if in_file else brands.removed_brand(args.brand)
    if not args.purge:
        print(
            f"swap-brands: removing {brand.name} deletes its ledger data and its Meltano state "
            f"({brand.state_id}); run again with --purge to do it",
            file=sys.stderr,
        )
        return CONFIG_ERROR_EXIT
    project = MeltanoProject.load(root)
    database_uri = system_database_uri(project, env, sys_dir_default(project, env))
    try:
        # Under the pipeline's claim: never while the brand's run is in progress.
        with claimed([brand.state_id], database_uri):
            print(f"ledger: {purge(brand, root, env)}")
            _clear_state(brand, root, env)
    except AlreadyRunningError:
        print(f"swap-brands: {brand.name} is running; remove it once the run ends", file=sys.stderr)
        return 1
    except ClaimError as error:
        print(f"swap-brands: cannot claim {brand.state_id}: {error}", file=sys.stderr)
        return 1
    if in_file:
        _drop_entry(brands.path, brand.name)
        print(f"entry: {brand.name} removed from {brands.path}")
    return 0


def _clear_state(brand: Brand, root: Path, env: Mapping) -> None:
    command = [launcher(), "state", "clear", "--force", brand.state_id]
    done = subprocess.run(  # noqa: S603 - our own launcher and arguments
        command, cwd=root, env=dict(env), capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise LedgerConfigError(f"meltano state clear failed: {done.stderr.strip()[-500:]}")
    print(f"state: {brand.state_id} cleared")


def _drop_entry(path: Path, name: str) -> None:
    """Remove the brand's entry, keeping the file's comments and layout (ruamel round trip)."""
    from ruamel.yaml import YAML  # noqa: PLC0415 - only this command edits the file

    yaml = YAML()
    yaml.preserve_quotes = True
    data = yaml.load(path.read_text(encoding="utf-8"))
    data["brands"] = [entry for entry in data["brands"] if entry.get("name") != name]
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        yaml.dump(data, handle)
    tmp.replace(path)


def _summary(args: argparse.Namespace, brands: BrandsFile, root: Path, env: Mapping) -> int:
    summaries = [summarize(brand, root, env) for brand in brands.brands]
    if args.format == "json":
        print(json.dumps([s.as_json() for s in summaries], indent=2))
        return 0
    print(f"{'brand':<20} {'last outcome':<26} {'lag (min)':>10}  set aside")
    for item in summaries:
        outcome = item.last_outcome or item.problem or "-"
        lag = "-" if item.lag_minutes is None else f"{item.lag_minutes:.1f}"
        aside = ", ".join(f"{r} {n}" for r, n in sorted(item.set_aside.items())) or "none"
        print(f"{item.brand:<20} {outcome:<26} {lag:>10}  {aside}")
    return 0
