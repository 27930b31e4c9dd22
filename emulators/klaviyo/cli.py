"""Command-line options of the Klaviyo emulator, for the lead's ``python -m emulators serve``.

``--time-scale`` is shared by both emulators and defined by the caller; it is read here from
``args.time_scale`` (1.0 when absent).
"""

from __future__ import annotations

import argparse
import os

from emulators.klaviyo.server import KlaviyoEmulator


def add_klaviyo_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Klaviyo emulator")
    group.add_argument(
        "--klaviyo-port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)"
    )
    group.add_argument(
        "--klaviyo-api-key",
        default=None,
        help="private API key clients must send (default: $KLAVIYO_API_KEY, else the sandbox key)",
    )
    group.add_argument(
        "--klaviyo-rate-limits",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="enforce Klaviyo's per-endpoint rate limits (default: on)",
    )
    group.add_argument(
        "--klaviyo-job-delay",
        type=float,
        default=0.1,
        help="seconds before a bulk job runs, before time scaling (default: 0.1)",
    )
    group.add_argument(
        "--klaviyo-keep-event-properties",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="store event properties (turn off for million-event benchmarks)",
    )
    group.add_argument(
        "--klaviyo-list-duplicates",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="list properties keep a value appended twice; unappend removes one (default: off)",
    )


def klaviyo_from_args(args: argparse.Namespace) -> KlaviyoEmulator:
    """An emulator configured from parsed options; not started yet.

    The key's fallback is resolved here rather than as an argparse default, so that no help
    formatter can ever print it; the resolved key is written back to ``args.klaviyo_api_key`` for
    callers that hand it on to clients.
    """
    api_key = args.klaviyo_api_key or os.environ.get("KLAVIYO_API_KEY") or "pk_test"
    args.klaviyo_api_key = api_key
    return KlaviyoEmulator(
        api_key=api_key,
        rate_limits=args.klaviyo_rate_limits,
        time_scale=getattr(args, "time_scale", 1.0),
        job_delay=args.klaviyo_job_delay,
        keep_event_properties=getattr(args, "klaviyo_keep_event_properties", True),
        list_duplicates=getattr(args, "klaviyo_list_duplicates", False),
        seed=getattr(args, "seed", 0),
        port=args.klaviyo_port,
    )
