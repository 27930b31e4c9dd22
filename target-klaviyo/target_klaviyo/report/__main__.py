"""``python -m target_klaviyo.report LEDGER_URL OUTPUT.html [--since WHEN]``.

A scheduled job (or a person) builds the page and gets the summary on stdout in one command.
WHEN is an ISO time or an age (`30d`, `12h`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from target_klaviyo.report.render import build_report
from target_klaviyo.report.summary import terminal_summary
from target_klaviyo.window import parse_since


def _since(value: str) -> datetime:
    try:
        return parse_since(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m target_klaviyo.report",
        description="Build the Swap -> Klaviyo delivery health report from the delivery ledger.",
    )
    parser.add_argument("ledger_url", help="SQLAlchemy URL of the ledger, e.g. sqlite:///ledger.db")
    parser.add_argument("output", type=Path, help="HTML file to write")
    parser.add_argument(
        "--since",
        type=_since,
        help="only records from this time on: ISO (UTC if no offset) or an age (30d, 12h)",
    )
    args = parser.parse_args(argv)
    try:
        data = build_report(args.ledger_url, args.output, since=args.since)
    except FileNotFoundError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    sys.stdout.write(f"{terminal_summary(data)}\n  Report: {args.output}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
