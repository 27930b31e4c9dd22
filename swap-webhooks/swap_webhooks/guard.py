"""What a request must show before its body is trusted: its media type, its size, its pace.

The receiver faces the internet (behind a TLS proxy): a client that announces JSON and sends
something else, sends a body a byte a second, or never ends it must cost a bounded amount of time
and memory, and be counted, not hold a worker or a connection for as long as it likes.
"""

from __future__ import annotations

import asyncio

from starlette.requests import ClientDisconnect, Request

from swap_webhooks.verify import Reason, Refused

JSON_MEDIA_TYPE = "application/json"


def check_media_type(request: Request) -> None:
    """``application/json``, with or without parameters (``; charset=utf-8``); else 415.

    Swap does not document its content type [assumed: JSON]; anything else is not a delivery.
    """
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != JSON_MEDIA_TYPE:
        raise Refused(Reason.UNSUPPORTED_MEDIA_TYPE)


async def read_body(request: Request, *, limit: int, timeout: float) -> bytes:
    """The body, refused as soon as it is over ``limit`` or late by ``timeout`` seconds.

    Raises:
        Refused: ``too_large`` (announced or streamed), ``too_slow`` past the deadline, or
            ``malformed`` for a bad ``Content-Length`` or a client gone mid-body.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Refused(Reason.MALFORMED)
        if int(declared) > limit:
            raise Refused(Reason.TOO_LARGE)
    try:
        async with asyncio.timeout(timeout):
            return await _read(request, limit)
    except TimeoutError:
        raise Refused(Reason.TOO_SLOW) from None


async def _read(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Refused(Reason.TOO_LARGE)
            chunks.append(chunk)
    except ClientDisconnect:
        raise Refused(Reason.MALFORMED) from None
    return b"".join(chunks)


#: Refusals answered before the body was read to its end: the connection cannot serve another
#: request (its unread bytes would be taken for one), so it is closed.
CLOSE_AFTER = frozenset({Reason.TOO_LARGE, Reason.TOO_SLOW, Reason.UNSUPPORTED_MEDIA_TYPE})
