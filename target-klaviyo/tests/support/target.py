"""Helpers of target-klaviyo's tests: the real Klaviyo emulator, Singer input, runs, the ledger.

The target runs in-process (``TargetKlaviyo(config=...).listen(...)``) or as the installed
``target-klaviyo`` executable, always against :class:`KlaviyoEmulator` over loopback HTTP. The
emulator is the real one; :class:`RecordingKlaviyo` only keeps, besides, what each ``/api``
request looked like (headers and body), so that tests can check what the target sent. The
fixtures built from these (``klaviyo``, ``config``, ``ledger_path``, ``executable``, ``hook``)
are in ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from emulators.http import Request
from emulators.klaviyo import KlaviyoEmulator
from target_klaviyo.client import ENDPOINTS
from target_klaviyo.outcomes import CRASHED, OUTCOME_LINE
from target_klaviyo.target import TargetKlaviyo

KEY = "pk_test_4f1c9e2b7a6d5c3e8f0a1b2c"
REVISION = "2026-07-15"
JSONAPI = "application/vnd.api+json"
EVENTS_PATH = "/api/event-bulk-create-jobs"
IMPORTS_PATH = "/api/profile-bulk-import-jobs"
VARIANT_JOBS_PATH = "/api/catalog-variant-bulk-update-jobs"


def _installed_executable() -> Path:
    """``target-klaviyo`` as installed beside this Python (its virtualenv), else on ``PATH``."""
    beside = Path(sys.executable).parent / "target-klaviyo"
    found = shutil.which("target-klaviyo")
    return beside if beside.exists() or found is None else Path(found)


EXECUTABLE = _installed_executable()

#: A record ``(stream, record)``, or ``(STATE, value)`` for a STATE message.
Item = tuple[str, Any]
STATE = "STATE"

EVENTS = "klaviyo_events"
PROFILES = "klaviyo_profile_updates"
VARIANTS = "klaviyo_catalog_variants"
EXCEPTIONS = "integration_exceptions"


# -- the emulator ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One ``/api`` request the emulator answered (status 0: it dropped the connection)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


class RecordingKlaviyo(KlaviyoEmulator):
    """The real Klaviyo emulator, keeping each ``/api`` request it answered."""

    def __enter__(self) -> RecordingKlaviyo:
        self.start()
        return self

    def __init__(self, *args: Any, keep_bodies: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keep_bodies = keep_bodies
        self.seen: list[Seen] = []
        self._seen_lock = threading.Lock()

    def record(self, request: Request, status: int) -> None:
        super().record(request, status)
        if request.path.startswith("/api/"):
            body = request.body if self.keep_bodies else b""
            with self._seen_lock:
                self.seen.append(
                    Seen(request.method, request.path, dict(request.headers), body, status)
                )

    def requests(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        with self._seen_lock:
            return [
                s
                for s in self.seen
                if (method is None or s.method == method) and (path is None or s.path == path)
            ]

    def event_posts(self, status: int | None = 202) -> list[Seen]:
        return [
            s for s in self.requests("POST", EVENTS_PATH) if status is None or s.status == status
        ]

    def posts(self) -> list[Seen]:
        return [s for s in self.requests() if s.method != "GET"]


# -- an alert webhook ------------------------------------------------------------------------------


class Hook:
    """A webhook receiver (a stand-in for Slack) recording what it was posted."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                hook.posts.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hook"


# -- configuration and runs ------------------------------------------------------------------------


def scaled_limits(time_scale: float) -> dict[str, list[dict[str, float]]]:
    """Klaviyo's published limits, shortened by ``time_scale`` as the emulator shortens them."""
    return {
        name: [{"requests": count, "seconds": seconds / time_scale} for count, seconds in e.limits]
        for name, e in ENDPOINTS.items()
    }


@dataclass
class Run:
    """One in-process run: what it wrote on stdout, and the exception that stopped it, if any."""

    target: TargetKlaviyo
    stdout: str
    error: BaseException | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def states(self) -> list[Any]:
        """The STATE values emitted (the SDK writes nothing else on stdout)."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def run_target(config: dict[str, Any], text: str, *, max_record_age_minutes: float | None = None):
    """Run the target in-process on ``text`` as ``target-klaviyo`` would, and clean it up.

    As :meth:`TargetKlaviyo.invoke` does, a run stopped by any exception is finished with that
    exception's outcome (``target.outcome``), so that it and the summary reach the ledger.
    ``max_record_age_minutes`` sets the SDK's periodic drain (which emits STATE) much shorter
    than its 5 minutes.
    """
    target = TargetKlaviyo(config=config)
    if max_record_age_minutes is not None:
        target._MAX_RECORD_AGE_IN_MINUTES = max_record_age_minutes
    stdout = io.StringIO()
    run = Run(target=target, stdout="")
    try:
        with contextlib.redirect_stdout(stdout):
            target.listen(io.StringIO(text))
    except Exception as exc:  # noqa: BLE001 - the test decides what was expected
        run.error = exc
        target.fail(exc)
        run.summary = target.finish(CRASHED)  # the summary recorded (the outcome stands)
    finally:
        target.ledger.close()
    run.stdout = stdout.getvalue()
    if run.error is None:
        run.summary = target.delivery.summary.as_dict(target.stats)
    return run


def run_cli(
    config: dict[str, Any], text: str, tmp_path: Path, *, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``target-klaviyo`` executable, as Meltano does."""
    config_file = tmp_path / "target-config.json"
    config_file.write_text(json.dumps(config))
    config_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_KLAVIYO_")}
    return subprocess.run(
        [str(EXECUTABLE), "--config", str(config_file)],
        input=text,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def last_outcome(stderr: str) -> str | None:
    """The outcome named by the run's LAST log line, as the receiver reads it."""
    lines = stderr.rstrip().splitlines()
    found = OUTCOME_LINE.search(lines[-1]) if lines else None
    return found.group(1) if found else None


# -- Singer input ----------------------------------------------------------------------------------


def now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def hours_ago(hours: float) -> str:
    return iso(now() - timedelta(hours=hours))


def event(
    unique_id: str,
    email: str | None = "ana@example.com",
    *,
    metric: str = "Return Started",
    time: str | None = None,
    properties: dict[str, Any] | None = None,
    **extra: Any,
) -> Item:
    profile = {"email": email} if email is not None else {}
    profile.update(extra.pop("profile", {}))
    record = {
        "unique_id": unique_id,
        "metric": metric,
        "profile": profile,
        "time": time or hours_ago(48),
        "properties": {"return_id": unique_id} if properties is None else properties,
        "source_id": f"ret-{unique_id}",
        **extra,
    }
    return EVENTS, record


def update(
    update_id: str,
    email: str,
    *,
    as_of: str,
    properties: dict[str, Any] | None = None,
    append: dict[str, list[Any]] | None = None,
    unappend: dict[str, list[Any]] | None = None,
    unset: list[str] | None = None,
) -> Item:
    record: dict[str, Any] = {"update_id": update_id, "email": email, "as_of": as_of}
    for name, value in (
        ("properties", properties),
        ("append", append),
        ("unappend", unappend),
        ("unset", unset),
    ):
        if value is not None:
            record[name] = value
    return PROFILES, record


def restock(key: str, sku: str, delta: int, *, catalog: str = "$custom") -> Item:
    return VARIANTS, {
        "restock_key": key,
        "variant_id": f"{catalog}:::$default:::{sku}",
        "sku": sku,
        "inventory_delta": delta,
        "time": hours_ago(1),
        "source_id": f"ret-{key}",
    }


def exception(exception_id: str, reason: str = "missing_email") -> Item:
    return EXCEPTIONS, {
        "exception_id": exception_id,
        "source_stream": "returns",
        "source_key": f"ret-{exception_id}",
        "rule": "return_started",
        "reason": reason,
        "detail": "The return has no customer email.",
        "occurred_at": hours_ago(1),
    }


def state(value: Any) -> Item:
    return STATE, value


def singer(items: Iterable[Item]) -> str:
    """Singer lines for records ``(stream, record)`` and STATE messages, with SCHEMA messages.

    Each stream's SCHEMA message comes before its first record, with a deliberately loose schema:
    target-klaviyo checks records against its own contract, not the source's schema.
    """
    lines: list[str] = []
    declared: set[str] = set()
    for stream, record in items:
        if stream == STATE:
            lines.append(json.dumps({"type": "STATE", "value": record}))
            continue
        if stream not in declared:
            declared.add(stream)
            schema = {"type": "object", "properties": {}}
            message = {"type": "SCHEMA", "stream": stream, "schema": schema, "key_properties": []}
            lines.append(json.dumps(message))
        lines.append(json.dumps({"type": "RECORD", "stream": stream, "record": record}))
    return "".join(line + "\n" for line in lines)


# -- the ledger ------------------------------------------------------------------------------------


def ledger_rows(path: Path, table: str = "deliveries", **where: Any) -> list[dict[str, Any]]:
    """Rows of a ledger table, read with plain sqlite3 (not through the target's own code)."""
    clauses = " AND ".join(f"{column} = ?" for column in where)
    query = f"SELECT * FROM {table}" + (f" WHERE {clauses}" if clauses else "")
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(query, tuple(where.values()))]


def ledger_execute(path: Path, sql: str, *params: Any) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(sql, params)


def outcomes(path: Path, stream: str | None = None) -> dict[str, str]:
    """The latest outcome of each record key (of one stream), from the ledger."""
    rows = ledger_rows(path) if stream is None else ledger_rows(path, stream=stream)
    return {row["record_key"]: row["outcome"] for row in sorted(rows, key=lambda r: r["id"])}


def properties_of(klaviyo: KlaviyoEmulator, email: str) -> dict[str, Any]:
    """The custom properties of the profile Klaviyo holds for ``email`` (which must exist)."""
    profile = klaviyo.profile(email)
    assert profile is not None, f"no profile {email}"
    properties: dict[str, Any] = profile["properties"]
    return properties


def inventory_of(klaviyo: KlaviyoEmulator, variant_id: str) -> Any:
    variant = klaviyo.variant(variant_id)
    assert variant is not None, f"no variant {variant_id}"
    return variant["inventory_quantity"]
