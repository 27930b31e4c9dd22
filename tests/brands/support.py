"""Several brands against their own emulators: one Swap store and one Klaviyo account each.

Each :class:`BrandSandbox` has its own Swap emulator (its own store id, key and seed) and its own
Klaviyo emulator (its own key), and an alert destination of its own on one :class:`AlertSink`.
:func:`brands_file` writes the brands file naming their variables; :func:`run_brand` runs one
brand as an operator does (``swap-brands run``), with a Meltano system dir of the test's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from emulators.klaviyo import KlaviyoEmulator
from emulators.swap import SwapEmulator, catalog_skus
from tests.support.shared import REPO

SWAP_BRANDS = REPO / ".venv" / "bin" / "swap-brands"
BASE_NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class AlertSink:
    """A loopback Slack-compatible webhook: every POST body, by path (one path per brand)."""

    def __init__(self) -> None:
        self.received: dict[str, list[dict[str, Any]]] = {}
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.received.setdefault(self.path, []).append(json.loads(body or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, brand: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/alerts/{brand}"

    def texts(self, brand: str) -> list[str]:
        return [str(body.get("text")) for body in self.received.get(f"/alerts/{brand}", [])]

    def __enter__(self) -> AlertSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class BrandSandbox:
    """One brand: its emulators and the variables holding its secrets."""

    name: str
    swap: SwapEmulator
    klaviyo: KlaviyoEmulator
    klaviyo_key: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return self.name.upper()

    def secrets(self) -> dict[str, str]:
        return {
            f"{self.prefix}_SWAP_API_KEY": self.swap.api_key,
            f"{self.prefix}_KLAVIYO_API_KEY": self.klaviyo_key,
            f"{self.prefix}_WEBHOOK_SECRET": f"whsk_{self.name}_0123456789abcdef0123456789",
        }

    def entry(self, alerts: AlertSink | None) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.name,
            "store_id": self.swap.store_id,
            "swap_api_key_env": f"{self.prefix}_SWAP_API_KEY",
            "klaviyo_api_key_env": f"{self.prefix}_KLAVIYO_API_KEY",
            "webhook_secret_env": f"{self.prefix}_WEBHOOK_SECRET",
            "overrides": {
                "swap_api_url": self.swap.url,
                "klaviyo_api_url": self.klaviyo.url,
                **self.overrides,
            },
        }
        if alerts is not None:
            entry["alert_webhook_url_env"] = f"{self.prefix}_ALERT_WEBHOOK_URL"
        return entry

    def expected_started(self) -> set[str]:
        """The ``Return Started`` ids this brand's Klaviyo must hold: one per return with an email.

        The data set types some emails wrong (none, empty, ``n/a``, no domain, no ``@``); the
        mapping sets those aside as ``missing_email``/``invalid_email``.
        """
        return {
            f"swap:{r['return_id']}:started"
            for r in self.swap.all_returns()
            if EMAIL.fullmatch(str(r.get("customer_email") or "").strip())
        }

    def started(self) -> set[str]:
        return {e["unique_id"] for e in self.klaviyo.events(metric="Return Started")}

    def event_ids(self) -> set[str]:
        return {e["unique_id"] for e in self.klaviyo.events()}


@contextlib.contextmanager
def sandboxes(names: list[str], returns: int = 12) -> Iterator[list[BrandSandbox]]:
    """One Swap and one Klaviyo emulator per brand, each with data of its own (own seed)."""
    with contextlib.ExitStack() as stack:
        found = []
        for number, name in enumerate(names):
            swap = stack.enter_context(
                SwapEmulator(
                    returns=returns,
                    seed=100 + number,
                    now=BASE_NOW + timedelta(hours=number),
                    api_key=f"swap_key_{name}",
                    store_id=f"store_{name}",
                    rate_limit_per_minute=None,
                )
            )
            key = f"pk_{name}_key"
            klaviyo = stack.enter_context(KlaviyoEmulator(api_key=key, job_delay=0.02))
            klaviyo.add_variants(catalog_skus(), inventory=0)
            found.append(BrandSandbox(name, swap, klaviyo, key))
        yield found


def brands_file(
    path: Path,
    brands: list[BrandSandbox],
    *,
    ledger: dict[str, Any] | None = None,
    alerts: AlertSink | None = None,
) -> Path:
    data = {
        "version": 1,
        "defaults": {
            "environment": "sandbox",
            "ledger": ledger or {"kind": "sqlite", "folder": str(path.parent / "ledgers")},
        },
        "brands": [brand.entry(alerts) for brand in brands],
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def brands_env(
    brands: list[BrandSandbox], meltano_env: dict[str, str], alerts: AlertSink | None = None
) -> dict[str, str]:
    """The environment of an operator's shell: every brand's secrets, a Meltano of the test's."""
    env = {**os.environ, **meltano_env}
    for variable in ("SWAP_API_URL", "KLAVIYO_API_URL", "TARGET_KLAVIYO_LEDGER_URL"):
        env.pop(variable, None)
    for brand in brands:
        env.update(brand.secrets())
        if alerts is not None:
            env[f"{brand.prefix}_ALERT_WEBHOOK_URL"] = alerts.url(brand.name)
    return env


def run_brand(name: str, file: Path, env: dict[str, str], project: Path = REPO) -> tuple[int, str]:
    """``swap-brands run <name>``: exit status and the whole output."""
    done = subprocess.run(
        [str(SWAP_BRANDS), "--project-dir", str(project), "--brands-file", str(file), "run", name],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def outcome(output: str) -> str | None:
    lines = [line for line in output.splitlines() if "run outcome: " in line]
    return lines[-1].split("run outcome: ", 1)[1].strip() if lines else None


def mapping_copy(folder: Path, old: str | None = None, new: str | None = None) -> Path:
    """The default mapping (with its schemas and definitions) in ``folder``, optionally changed."""
    for part in ("schemas", "definitions"):
        shutil.copytree(REPO / "transforms" / part, folder / part, dirs_exist_ok=True)
    text = (REPO / "transforms" / "swap_to_klaviyo.yml").read_text()
    if old is not None and new is not None:
        assert old in text, f"the default mapping no longer has {old!r}"
        text = text.replace(old, new, 1)
    mapping = folder / "swap_to_klaviyo.yml"
    mapping.write_text(text)
    return mapping
