"""What both emulators share: a real threaded HTTP server on loopback, fault injection, rate limits.

The emulators stand in for Swap's and Klaviyo's APIs in tests, benchmarks and the demo. They are
real HTTP servers (the clients under test use real sockets, keep-alive and timeouts), built on the
standard library so that a fault such as a dropped connection is fully under our control.

A subclass declares routes with :func:`route` and answers with :class:`Response`. Control
endpoints under ``/_emulator/`` (faults, request log) come with every emulator; they carry no auth
because the servers only ever listen on loopback.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

JSONBody = dict[str, Any] | list[Any]

CONTROL_PREFIX = "/_emulator"


@dataclass
class Request:
    """An incoming request, decoded once for the handlers."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def arg(self, name: str) -> str | None:
        """The first value of a query parameter, as most APIs read them."""
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    """What a handler answers: a JSON body (or raw bytes), a status and extra headers."""

    status: int = 200
    body: JSONBody | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body, separators=(",", ":")).encode()


Handler = Callable[[Any, Request], Response]


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    """Mark a method of an :class:`EmulatorServer` subclass as the handler of ``method pattern``.

    ``pattern`` is a path with ``{name}`` placeholders; their values land in ``request.params``.
    """

    def mark(func: Handler) -> Handler:
        func._route = (method.upper(), pattern)  # type: ignore[attr-defined]
        return func

    return mark


@dataclass
class Fault:
    """One injected failure, matched against requests until its count runs out.

    ``kind`` is ``status`` (answer ``status`` with an error body, and ``Retry-After`` for 429),
    ``slow`` (wait ``delay`` seconds, then answer normally) or ``drop`` (read the request, then
    close the connection without answering). ``probability`` < 1 makes it random (seeded), and
    ``count`` = 0 means unlimited.
    """

    kind: str = "status"
    status: int = 503
    path: str = ".*"
    method: str = "*"
    count: int = 1
    probability: float = 1.0
    retry_after: float = 1
    delay: float = 0.0
    served: int = 0

    def matches(self, request: Request) -> bool:
        if self.method not in ("*", request.method):
            return False
        return re.search(self.path, request.path) is not None


class FaultPlan:
    """Thread-safe list of faults, shared by every connection of one server."""

    KINDS: ClassVar[set[str]] = {"status", "slow", "drop"}

    def __init__(self, seed: int = 0) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)

    def add(self, **spec: Any) -> Fault:
        fault = Fault(**spec)
        if fault.kind not in self.KINDS:
            msg = f"unknown fault kind {fault.kind!r}; expected one of {sorted(self.KINDS)}"
            raise ValueError(msg)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pick(self, request: Request) -> Fault | None:
        if request.path.startswith(CONTROL_PREFIX):
            return None
        with self._lock:
            for fault in self._faults:
                if not fault.matches(request):
                    continue
                if fault.probability < 1 and self._random.random() >= fault.probability:
                    continue
                fault.served += 1
                if fault.count and fault.served >= fault.count:
                    self._faults.remove(fault)
                return fault
        return None

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]


class RateLimiter:
    """Sliding-window limits per key, as APIs publish them ("10/s burst, 150/min steady").

    ``time_scale`` > 1 makes windows shorter by that factor, so that tests and benchmarks can
    exercise a per-minute limit in seconds while keeping its shape.
    """

    def __init__(self, limits: Iterable[tuple[int, float]], time_scale: float = 1.0) -> None:
        self.limits = [(count, seconds / time_scale) for count, seconds in limits]
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float | None:
        """Record a hit for ``key`` and return None, or the seconds to wait when over a limit."""
        now = time.monotonic()
        longest = max((seconds for _, seconds in self.limits), default=0.0)
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - longest:
                hits.popleft()
            wait = 0.0
            for count, seconds in self.limits:
                in_window = [t for t in hits if t > now - seconds]
                if len(in_window) >= count:
                    wait = max(wait, in_window[-count] + seconds - now)
            if wait > 0:
                return wait
            hits.append(now)
            return None


class _DropConnection(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a handler to close the connection without answering."""


class EmulatorServer:
    """A real HTTP server on loopback, run in a background thread, with faults and a request log.

    Use as a context manager, or ``start()``/``stop()``. ``url`` is its base URL once started.
    """

    name = "emulator"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, seed: int = 0) -> None:
        self.host = host
        self.port = port
        self.faults = FaultPlan(seed)
        self.request_counts: Counter[str] = Counter()
        self.status_counts: Counter[int] = Counter()
        self._log_lock = threading.Lock()
        self._routes = self._collect_routes()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._httpd is None:
            msg = f"{self.name} is not started"
            raise RuntimeError(msg)
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> EmulatorServer:
        emulator = self

        class _Handler(_RequestHandler):
            server_emulator = emulator

        self._httpd = _Server((self.host, self.port), _Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"{self.name}-http",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Block until interrupted: the command-line way to run an emulator."""
        self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(timeout=0.5)
        finally:
            self.stop()

    # -- dispatch --------------------------------------------------------------------------------

    def _collect_routes(self) -> list[tuple[str, re.Pattern[str], Handler]]:
        routes = []
        for klass in reversed(type(self).__mro__):
            for attr in vars(klass).values():
                spec = getattr(attr, "_route", None)
                if spec is None:
                    continue
                method, pattern = spec
                regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
                routes.append((method, re.compile(f"^{regex}$"), attr))
        return routes

    def dispatch(self, request: Request) -> Response:
        fault = self.faults.pick(request)
        if fault is not None:
            if fault.kind == "drop":
                raise _DropConnection
            if fault.kind == "slow":
                time.sleep(fault.delay)
            else:
                return self.fault_response(fault)
        for method, regex, handler in self._routes:
            match = regex.match(request.path)
            if match and method == request.method:
                request.params = match.groupdict()
                return handler(self, request)
        if any(regex.match(request.path) for _, regex, _ in self._routes):
            return self.error_response(405, "method_not_allowed", "Method not allowed.")
        return self.error_response(404, "not_found", f"No route for {request.path}.")

    def record(self, request: Request, status: int) -> None:
        with self._log_lock:
            self.request_counts[f"{request.method} {request.path}"] += 1
            self.status_counts[status] += 1

    # -- responses each API shapes its own way ---------------------------------------------------

    def error_response(self, status: int, code: str, detail: str, **extra: Any) -> Response:
        """An error in this API's own error format. Subclasses override."""
        return Response(status, {"error": code, "detail": detail, **extra})

    def fault_response(self, fault: Fault) -> Response:
        headers = {}
        if fault.status == 429:
            headers["Retry-After"] = _retry_after_header(fault.retry_after)
            response = self.error_response(429, "throttled", "Request was throttled.")
        else:
            response = self.error_response(fault.status, "server_error", "Injected server error.")
        response.headers.update(headers)
        return response

    def throttled(self, wait: float) -> Response:
        response = self.error_response(429, "throttled", "Request was throttled.")
        response.headers["Retry-After"] = _retry_after_header(wait)
        return response

    # -- control endpoints shared by every emulator ----------------------------------------------

    @route("POST", CONTROL_PREFIX + "/faults")
    def _control_add_fault(self, request: Request) -> Response:
        try:
            fault = self.faults.add(**request.json())
        except (TypeError, ValueError) as exc:
            return Response(400, {"error": str(exc)})
        return Response(201, asdict(fault))

    @route("GET", CONTROL_PREFIX + "/faults")
    def _control_list_faults(self, request: Request) -> Response:
        return Response(200, {"faults": self.faults.describe()})

    @route("DELETE", CONTROL_PREFIX + "/faults")
    def _control_clear_faults(self, request: Request) -> Response:
        self.faults.clear()
        return Response(204)

    @route("GET", CONTROL_PREFIX + "/requests")
    def _control_requests(self, request: Request) -> Response:
        with self._log_lock:
            return Response(
                200,
                {
                    "requests": dict(self.request_counts),
                    "statuses": {str(k): v for k, v in self.status_counts.items()},
                },
            )


def _retry_after_header(seconds: float) -> str:
    """Retry-After as an integer of seconds (HTTP), never 0 when a wait is really needed."""
    whole = int(seconds)
    return str(whole if whole == seconds else whole + 1)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class _RequestHandler(BaseHTTPRequestHandler):
    server_emulator: ClassVar[EmulatorServer]
    protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs do
    # Headers and body go out in two writes: with Nagle's algorithm on, the body then waits for the
    # client's delayed ACK (about 40 ms per request on Linux), which swamped every benchmark.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests and the demo read the emulators' state, not their access log."""

    def _handle(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        emulator = self.server_emulator
        try:
            response = emulator.dispatch(request)
        except _DropConnection:
            emulator.record(request, 0)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        emulator.record(request, response.status)
        payload = response.encode()
        self.send_response(response.status)
        if payload:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle  # noqa: N815
