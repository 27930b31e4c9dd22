"""Swap's signed webhooks, as the emulator sends them (and broken ones, for the receiver's tests).

The contract (``/work/shared/swap-returns-api.md``, Webhooks): topics ``returnCreated`` and
``returnProcessed``; the POST body is the V2 return plus a top-level ``jwt``, HS256-signed with the
store's ``whsk_`` secret, expiring 300 s after issue, with claims ``exp``, ``iat``, ``nonce``,
``return_id``, ``order_id``, ``store_id`` and ``event``; delivery is at least once (a ``nonce`` can
come again).

The token is made here with the standard library rather than PyJWT, so that tests of the receiver
(which verifies with PyJWT) check two implementations against each other, not one against itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.error import HTTPError
from urllib.request import Request, urlopen

TOPICS = ("returnCreated", "returnProcessed")
TOKEN_TTL_SECONDS = 300


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_token(claims: Mapping[str, Any], secret: str, *, algorithm: str = "HS256") -> str:
    """A compact JWS of ``claims``, signed with HMAC-SHA256 under ``secret``.

    ``algorithm`` other than ``HS256`` only changes the header (the signature stays HMAC-SHA256,
    or is empty for ``none``): enough to forge the tokens a receiver must refuse.
    """
    header = {"alg": algorithm, "typ": "JWT"}
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    if algorithm == "none":
        return signing_input + "."
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


def webhook_payload(
    return_obj: Mapping[str, Any],
    topic: str,
    secret: str,
    store_id: str,
    *,
    expired: bool = False,
    nonce: str | None = None,
    issued_at: float | None = None,
    ttl: float = TOKEN_TTL_SECONDS,
    algorithm: str = "HS256",
    extra_claims: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The body Swap POSTs for ``topic`` about ``return_obj``: the return plus its signed ``jwt``.

    ``expired`` issues the token twice ``ttl`` ago, so it expired ``ttl`` ago (far beyond any
    clock-skew leeway). ``nonce`` reuses a nonce, as Swap's redeliveries do; by default each
    payload gets a fresh one. ``extra_claims`` overrides or adds claims (``None`` values remove
    one), to build malformed tokens.
    """
    now = time.time() if issued_at is None else issued_at
    iat = int(now - 2 * ttl) if expired else int(now)
    claims: dict[str, Any] = {
        "iat": iat,
        "exp": int(iat + ttl),
        "nonce": nonce if nonce is not None else uuid.uuid4().hex,
        "return_id": return_obj["return_id"],
        "order_id": return_obj.get("order_id"),
        "store_id": store_id,
        "event": topic,
    }
    for name, value in (extra_claims or {}).items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return {**return_obj, "jwt": sign_token(claims, secret, algorithm=algorithm)}


@dataclass(frozen=True)
class WebhookResult:
    """The receiver's answer: status, body, and how long it took (seconds, client side)."""

    status: int
    body: bytes
    elapsed: float

    def json(self) -> Any:
        return json.loads(self.body or b"null")


def post_webhook(
    url: str, payload: Mapping[str, Any] | bytes, *, timeout: float = 10.0
) -> WebhookResult:
    """POST a delivery (a payload, or raw bytes for malformed ones) the way Swap does."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = Request(  # noqa: S310 - URLs are the tests' loopback receivers
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    start = time.perf_counter()
    try:
        with urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read()
            status = response.status
    except HTTPError as error:
        with error:
            body = error.read()
            status = error.code
    return WebhookResult(status, body, time.perf_counter() - start)


class _ReturnSource(Protocol):
    store_id: str

    def create_return(self, **overrides: Any) -> dict[str, Any]: ...


@dataclass(frozen=True)
class WebhookSender:
    """A store's webhook subscription, as set in Swap's dashboard: where to POST, with what key."""

    url: str
    secret: str
    store_id: str

    def send(self, return_obj: Mapping[str, Any], topic: str, **options: Any) -> WebhookResult:
        """Sign and POST ``topic`` for ``return_obj``; ``options`` go to :func:`webhook_payload`."""
        timeout = options.pop("timeout", 10.0)
        payload = webhook_payload(return_obj, topic, self.secret, self.store_id, **options)
        return post_webhook(self.url, payload, timeout=timeout)


def create_return_and_notify(
    swap: _ReturnSource, url: str, secret: str, **overrides: Any
) -> tuple[dict[str, Any], WebhookResult]:
    """Create a return in the emulator, then send its ``returnCreated`` webhook to ``url``.

    The return exists in the API before the webhook leaves, as with Swap: a receiver that reads
    the API on the webhook finds it.
    """
    created = swap.create_return(**overrides)
    result = WebhookSender(url, secret, swap.store_id).send(created, "returnCreated")
    return created, result
