"""Check one webhook body against Swap's contract and turn it into a :class:`Delivery`, or refuse.

Swap signs each delivery with an HS256 JWT in the body (``jwt``), made with the store's ``whsk_``
secret and valid for 300 s, with claims ``exp``, ``iat``, ``nonce``, ``return_id``, ``order_id``,
``store_id`` and ``event``. Only the signed claims are trusted and kept: the rest of the body is
the return itself, which the pipeline reads again from Swap's API (the source of truth), so the
receiver never stores a customer's data.

The reason for a refusal goes to the receiver's metrics and log; the sender only gets the status.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm

ALGORITHM = "HS256"
#: Clock skew tolerated between Swap and us on ``exp`` and ``iat``.
LEEWAY_SECONDS = 10
#: Swap's tokens live 300 s: one issued longer ago than that (plus the leeway) is a replay or a
#: forgery with a long ``exp``, however far away its ``exp`` says it expires.
MAX_TOKEN_AGE_SECONDS = 300.0
REQUIRED_CLAIMS = ("exp", "iat", "nonce", "return_id", "store_id", "event")
MAX_ID_LENGTH = 255
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


class _HS256(HMACAlgorithm):
    """HS256 that vets the secret once, not on every token.

    PyJWT checks on each decode that an HMAC secret is not an asymmetric key (PEM, SSH, DER:
    the last by trying to load it as a certificate), which cost more than the rest of a
    delivery's verification. The secret does not change while the receiver runs.
    """

    def __init__(self) -> None:
        super().__init__(HMACAlgorithm.SHA256)
        self._vetted: tuple[str | bytes, bytes] | None = None

    def prepare_key(self, key: str | bytes) -> bytes:
        vetted = self._vetted
        if vetted is None or vetted[0] != key:
            vetted = (key, super().prepare_key(key))
            self._vetted = vetted
        return vetted[1]


#: Signature checks only (PyJWS): the claims' times are checked by :func:`_check_times`.
_JWS = jwt.PyJWS(algorithms=[])
_JWS.register_algorithm(ALGORITHM, _HS256())


class Reason(enum.Enum):
    """Why a delivery was refused, with the status the sender gets and the phrase it may see."""

    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    WRONG_STORE = "wrong_store"
    TOO_LARGE = "too_large"
    TOO_OLD = "too_old"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    TOO_DEEP = "too_deep"
    TOO_SLOW = "too_slow"
    TOO_MANY_CONNECTIONS = "too_many_connections"

    @property
    def status(self) -> int:
        return _STATUS[self][0]

    @property
    def phrase(self) -> str:
        return _STATUS[self][1]

    @property
    def key(self) -> str:
        """The name metrics count it under."""
        return self.value


_STATUS = {
    Reason.MALFORMED: (400, "bad request"),
    Reason.BAD_SIGNATURE: (401, "unauthorized"),
    Reason.EXPIRED: (401, "unauthorized"),
    Reason.WRONG_STORE: (403, "forbidden"),
    Reason.TOO_LARGE: (413, "payload too large"),
    Reason.TOO_OLD: (401, "unauthorized"),
    Reason.UNSUPPORTED_MEDIA_TYPE: (415, "unsupported media type"),
    Reason.TOO_DEEP: (400, "bad request"),
    Reason.TOO_SLOW: (408, "request timeout"),
    Reason.TOO_MANY_CONNECTIONS: (503, "service unavailable"),
}


class Refused(Exception):  # noqa: N818 - reads as "raise Refused(reason)"
    """The delivery is not accepted; ``reason`` says why (for metrics, never for the sender)."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason.key)
        self.reason = reason


@dataclass(frozen=True)
class Delivery:
    """The signed facts of one webhook delivery: all the receiver keeps of it."""

    nonce: str
    event: str
    return_id: str
    order_id: str | None
    store_id: str
    issued_at: float
    expires_at: float
    #: ``nbf``, when the token has one (Swap's do not).
    not_before: float | None = None


def verify_delivery(
    body: bytes,
    secret: str,
    store_id: str,
    *,
    max_age_seconds: float = MAX_TOKEN_AGE_SECONDS,
    now: float | None = None,
) -> Delivery:
    """The delivery ``body`` carries, if it is well formed, for ``store_id`` and signed by Swap.

    Checks run from the cheapest to the one needing the secret: shape (400), then store (403: a
    delivery for another store is signed with that store's secret, so checking the signature
    first would hide a misrouted webhook behind a 401), then signature, expiry and age (401).
    A body nested deeper than Python's parser goes is refused as ``too_deep`` (400), never a 500.

    Raises:
        Refused: with the reason the delivery cannot be accepted.
    """
    now = time.time() if now is None else now
    try:
        claims = _verified(body, secret, store_id)
    except RecursionError:
        raise Refused(Reason.TOO_DEEP) from None
    _check_times(claims, now, max_age_seconds)
    return claims


def claimed_store(body: bytes) -> str:
    """The store a delivery's token names, read before any secret is known (to pick the secret).

    Nothing is trusted yet: the delivery is then verified with that store's secret, which
    checks this same claim again under the signature.

    Raises:
        Refused: the body or its token is malformed (or nested too deep).
    """
    try:
        token, _payload = _token(body)
        _header, unverified = _unverified(token)
        return _claims(unverified).store_id
    except RecursionError:
        raise Refused(Reason.TOO_DEEP) from None


def _check_times(claims: Delivery, now: float, max_age_seconds: float) -> None:
    """Expired (``exp``), issued in the future or too long ago (``iat``), each with the leeway."""
    if now > claims.expires_at + LEEWAY_SECONDS:
        raise Refused(Reason.EXPIRED)
    if claims.issued_at > now + LEEWAY_SECONDS:
        raise Refused(Reason.BAD_SIGNATURE)  # a clock that far off, or a forged time
    if claims.not_before is not None and claims.not_before > now + LEEWAY_SECONDS:
        raise Refused(Reason.BAD_SIGNATURE)
    if now - claims.issued_at > max_age_seconds + LEEWAY_SECONDS:
        raise Refused(Reason.TOO_OLD)


def _verified(body: bytes, secret: str, store_id: str) -> Delivery:
    """The checks up to the signature: may raise RecursionError on a body nested too deep."""
    token, payload = _token(body)
    header, unverified = _unverified(token)
    if header.get("alg") != ALGORITHM:
        # ``none`` or an algorithm we did not agree on: a forgery, not a malformed body.
        raise Refused(Reason.BAD_SIGNATURE)
    claims = _claims(unverified)
    body_return_id = payload.get("return_id")
    if body_return_id is not None and str(body_return_id) != claims.return_id:
        raise Refused(Reason.MALFORMED)
    if claims.store_id != store_id:
        raise Refused(Reason.WRONG_STORE)
    try:
        _JWS.decode_complete(token, secret, algorithms=[ALGORITHM])
    except jwt.InvalidTokenError:
        raise Refused(Reason.BAD_SIGNATURE) from None
    return claims


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The token's header and claims, read without checking anything, to classify a refusal.

    PyJWT's own unverified reads cost as much as its verified one (it checks each character of
    each segment in Python), and the receiver needs both before the signature; the single
    verified decode that follows re-reads the token strictly. May raise RecursionError.
    """
    parts = token.split(".")
    if len(parts) != 3 or not all(_BASE64URL.fullmatch(part) for part in parts[:2]):
        raise Refused(Reason.MALFORMED)
    try:
        header, claims = (
            json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
            for part in parts[:2]
        )
    except (ValueError, binascii.Error):
        raise Refused(Reason.MALFORMED) from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise Refused(Reason.MALFORMED)
    return header, claims


def _token(body: bytes) -> tuple[str, dict[str, Any]]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Refused(Reason.MALFORMED) from None
    if not isinstance(payload, dict):
        raise Refused(Reason.MALFORMED)
    token = payload.get("jwt")
    if not isinstance(token, str) or not token:
        raise Refused(Reason.MALFORMED)
    return token, payload


def _claims(claims: dict[str, Any]) -> Delivery:
    """The claims as a :class:`Delivery`, when each has the contract's type."""
    if any(name not in claims for name in REQUIRED_CLAIMS):
        raise Refused(Reason.MALFORMED)
    texts = {name: claims[name] for name in ("nonce", "return_id", "store_id", "event")}
    if not all(isinstance(v, str) and 0 < len(v) <= MAX_ID_LENGTH for v in texts.values()):
        raise Refused(Reason.MALFORMED)
    times = (claims["iat"], claims["exp"], claims.get("nbf", 0))
    if not all(isinstance(t, int | float) and not isinstance(t, bool) for t in times):
        raise Refused(Reason.MALFORMED)
    order_id = claims.get("order_id")
    if order_id is not None and (not isinstance(order_id, str | int) or isinstance(order_id, bool)):
        raise Refused(Reason.MALFORMED)
    return Delivery(
        nonce=texts["nonce"],
        event=texts["event"],
        return_id=texts["return_id"],
        order_id=None if order_id is None else str(order_id)[:MAX_ID_LENGTH],
        store_id=texts["store_id"],
        issued_at=float(claims["iat"]),
        expires_at=float(claims["exp"]),
        not_before=None if claims.get("nbf") is None else float(claims["nbf"]),
    )
