"""Command-line options of the Swap emulator, for ``python -m emulators serve``.

The key and store default to ``SWAP_API_KEY`` and ``SWAP_STORE_ID`` from the environment (the
variables the sandbox Meltano environment reads), so a key need never be typed on a command line.
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime

from emulators.swap.server import DEFAULT_RATE_LIMIT_PER_MINUTE, SwapEmulator


def add_swap_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Swap Returns API emulator")
    group.add_argument("--swap-returns", type=int, default=2000, help="returns in the data set")
    group.add_argument("--swap-seed", type=int, default=7, help="seed of the data set")
    group.add_argument("--swap-port", type=int, default=0, help="port (0: a free one)")
    group.add_argument(
        "--swap-api-key",
        default=os.environ.get("SWAP_API_KEY", "swap_test_key"),
        help="the valid X-API-Key (default: $SWAP_API_KEY, else swap_test_key)",
    )
    group.add_argument(
        "--swap-store-id",
        default=os.environ.get("SWAP_STORE_ID", "store_test"),
        help="the store's swap_store_id (default: $SWAP_STORE_ID, else store_test)",
    )
    group.add_argument(
        "--swap-rate-limit",
        type=int,
        default=DEFAULT_RATE_LIMIT_PER_MINUTE,
        help="requests per minute per key; 0 turns the limit off",
    )
    group.add_argument(
        "--swap-now",
        type=datetime.fromisoformat,
        default=None,
        help="ISO 8601 end of the data set's history (default: now, following the wall clock)",
    )
    group.add_argument(
        "--swap-malformed-every",
        type=int,
        default=None,
        help="make every Nth return break the contract's types",
    )


def swap_from_args(args: argparse.Namespace) -> SwapEmulator:
    """The emulator the options describe (not started); ``--time-scale`` is the shared option."""
    return SwapEmulator(
        returns=args.swap_returns,
        seed=args.swap_seed,
        now=args.swap_now,
        api_key=args.swap_api_key,
        store_id=args.swap_store_id,
        rate_limit_per_minute=args.swap_rate_limit or None,
        time_scale=getattr(args, "time_scale", 1.0),
        malformed_every=args.swap_malformed_every,
        port=args.swap_port,
    )
