"""``swap-webhooks serve``: run the receiver under uvicorn until SIGTERM or SIGINT.

uvicorn's own signal handling gives a clean stop: it finishes the requests in flight, then the
app's lifespan stops the runner, whose run in progress (if any) is stopped and its deliveries
kept for the next start.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import warnings
from collections.abc import Iterator

import jwt
import uvicorn

from swap_webhooks import __version__
from swap_webhooks.about import about
from swap_webhooks.app import create_app
from swap_webhooks.runner import check_command
from swap_webhooks.server import server_config
from swap_webhooks.settings import SettingsError, load_settings

#: The signals that stop the receiver (uvicorn handles both).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: HS256 keys shorter than the hash (RFC 7518, 3.2) are weak.
MIN_SECRET_BYTES = 32


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="swap-webhooks",
        description="Receive Swap's signed return webhooks and trigger the pipeline on each.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--about", action="store_true", help="print the settings, then exit")
    parser.add_argument("--format", choices=["json", "markdown"], default="json")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the receiver until stopped")
    serve.add_argument("--config", help="JSON file of settings (SWAP_WEBHOOKS_* variables win)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8765)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    args = parser.parse_args(argv)
    if args.about:
        print(about(args.format))
        return 0
    if args.command is None:
        parser.error("a command is required (serve)")

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        settings = load_settings(args.config, host=args.host, port=args.port)
    except SettingsError as exc:
        print(f"swap-webhooks: {exc}", file=sys.stderr)
        return 2
    problem = check_command(settings, os.environ)
    if problem:
        print(f"swap-webhooks: run_command cannot start: {problem}", file=sys.stderr)
        return 2
    log = logging.getLogger("swap_webhooks")
    if not settings.secret_looks_right:
        log.warning("webhook_secret does not start with 'whsk_': is it Swap's webhook secret?")
    if len(settings.webhook_secret.reveal().encode()) < MIN_SECRET_BYTES:
        # Swap chooses the secret; say it once here rather than in PyJWT's warning per request.
        log.warning(
            "webhook_secret is shorter than %d bytes: ask Swap for a longer one", MIN_SECRET_BYTES
        )
    warnings.filterwarnings("ignore", category=jwt.InsecureKeyLengthWarning)
    config = server_config(create_app(settings), settings, log_level=args.log_level)
    server = uvicorn.Server(config)
    with _stop_signals_end_cleanly():
        server.run()
    return 0 if server.started else 1


@contextlib.contextmanager
def _stop_signals_end_cleanly() -> Iterator[None]:
    """A SIGTERM or SIGINT that uvicorn handled is a clean stop: exit 0, not "killed by 15".

    After its graceful shutdown uvicorn restores the handlers it found and raises the signal
    again; with these no-op handlers in place that re-raise does nothing and ``main`` returns 0.
    """
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
