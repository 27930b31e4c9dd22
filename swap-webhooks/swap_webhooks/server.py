"""How uvicorn serves the receiver: bounded connections, bounded waits for headers and idling.

uvicorn's defaults wait for a request's headers for ever and accept connections until the process
runs out of file descriptors: 100 clients sending a byte a second held their connections for as
long as they liked, and with an open-file limit of 256 a real delivery timed out. Here:

- a connection must deliver a request's headers within ``header_timeout_seconds`` of opening (or
  of the first byte of its next request), else it is answered 408 and closed;
- an idle keep-alive connection is closed after ``keep_alive_seconds``;
- connections beyond ``max_connections`` (lowered to what the open-file limit allows) are
  answered 503 and closed as they arrive, so slow clients cannot take every descriptor;
- request line and headers still incomplete past ``MAX_HEADER_BYTES`` get a 400 (h11);
- the body's own deadline is the app's (``body_timeout_seconds``, see :mod:`swap_webhooks.guard`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from swap_webhooks.settings import Settings
from swap_webhooks.verify import Reason

logger = logging.getLogger(__name__)

#: Request line and headers together; Swap's are a few hundred bytes.
MAX_HEADER_BYTES = 16 * 1024
#: Descriptors kept for everything but client connections: the state db, logs, run pipes.
RESERVED_FILES = 64


def _answer(reason: Reason) -> bytes:
    """A complete HTTP answer for a connection cut before the app saw a request."""
    body = json.dumps({"error": reason.phrase}).encode()
    head = (
        f"HTTP/1.1 {reason.status} {HTTPStatus(reason.status).phrase}\r\n"
        f"content-type: application/json\r\nconnection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for headers and a cap on open connections.

    Subclassed per server by :func:`protocol_class`, which sets the limits and the callback that
    counts what was cut off (``too_slow`` headers, ``too_many_connections``).
    """

    header_timeout: float = 5.0
    max_connections: int = 256
    on_cut: Callable[[Reason], None] = staticmethod(lambda reason: None)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        if len(self.connections) > self.max_connections:
            self._cut(Reason.TOO_MANY_CONNECTIONS)
            return
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # a request's headers are in: the app takes over
            self._disarm_header_timer()
        elif self._header_timer is None and (cycle is None or cycle.response_complete):
            self._arm_header_timer()  # a next request has begun on a kept-alive connection

    def on_response_complete(self) -> None:
        """Idle between requests: uvicorn's keep-alive timeout closes the connection quietly."""
        self._disarm_header_timer()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """h11 refused the request (headers past ``MAX_HEADER_BYTES``, bad syntax): counted too."""
        super().send_400_response(msg)
        self.on_cut(Reason.MALFORMED)

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered; its body has the app's deadline
        if self.transport.is_closing():
            return
        self._cut(Reason.TOO_SLOW)

    def _cut(self, reason: Reason) -> None:
        self.transport.write(_answer(reason))
        self.transport.close()
        self.on_cut(reason)


def protocol_class(
    settings: Settings, max_connections: int, on_cut: Callable[[Reason], None] | None = None
) -> type[GuardedH11Protocol]:
    """The protocol with this server's limits (uvicorn takes a class, not an instance)."""
    attributes: dict[str, Any] = {
        "header_timeout": settings.header_timeout_seconds,
        "max_connections": max_connections,
    }
    if on_cut is not None:
        attributes["on_cut"] = staticmethod(on_cut)
    return type("ReceiverH11Protocol", (GuardedH11Protocol,), attributes)


def connection_cap(settings: Settings) -> int:
    """``max_connections``, raising the soft open-file limit for it, or lowered to fit under it."""
    wanted = settings.max_connections + RESERVED_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return settings.max_connections
    cap = max(1, soft - RESERVED_FILES)
    logger.warning(
        "the open-file limit (%d) leaves room for %d connections, not max_connections=%d",
        soft,
        cap,
        settings.max_connections,
    )
    return cap


def server_config(
    app: Any,
    settings: Settings,
    *,
    log_level: str = "info",
    **overrides: Any,
) -> uvicorn.Config:
    """The uvicorn configuration of the receiver (used by ``serve``, the tests and the bench).

    ``app`` is :func:`swap_webhooks.app.create_app`'s: connections cut before a request reaches
    it are counted in its refusal counters all the same.
    """
    cap = connection_cap(settings)
    on_cut = refusal_counter(app)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": log_level,
        "log_config": None,
        "server_header": False,
        "lifespan": "on",
        "http": protocol_class(settings, cap, on_cut),
        "timeout_keep_alive": settings.keep_alive_seconds,
        # uvicorn answers 503 past this many connections or tasks; the protocol's own cap
        # closes excess connections first, so this only bounds tasks (pipelined requests).
        "limit_concurrency": cap + 1,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "backlog": 1024,
        # The app logs each delivery accepted or refused, with its reason; uvicorn's access line
        # per request said less and cost a tenth of the receiver's CPU in a burst.
        "access_log": False,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def refusal_counter(app: Any) -> Callable[[Reason], None]:
    """Count a cut connection as a refusal, in the app's next group commit (never on the loop)."""

    def count(reason: Reason) -> None:
        logger.info("refused a connection: %s", reason.key)
        receiver = getattr(getattr(app, "state", None), "receiver", None)
        if receiver is not None and receiver.store is not None:
            receiver.group_commit().note_refusal(reason)

    return count
