"""The REST client every Swap stream shares: auth, errors, retries that honour ``Retry-After``."""

from __future__ import annotations

import email.utils
import random
from collections.abc import Generator
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any

import requests
from singer_sdk.authenticators import APIKeyAuthenticator
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.streams import RESTStream

#: Backoff when the API gives no ``Retry-After``: 1, 2, 4, ... seconds, capped.
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
MAX_TRIES = 8


class SwapAuthError(FatalAPIError):
    """Swap refused the credentials: retrying cannot help, so the run stops at once."""


def retry_after_seconds(response: requests.Response | None) -> float | None:
    """Seconds the server asked us to wait, from ``Retry-After`` (delta-seconds or HTTP date)."""
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)


class SwapStream(RESTStream[Any]):
    """Base class of the Swap Returns API streams."""

    #: Records are JSON as Swap sent it, already of JSON types: the SDK's recursive conformance
    #: pass would only cost time (it was half the tap's CPU on 100,000 returns).
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    @property
    def url_base(self) -> str:
        return str(self.config["api_url"]).rstrip("/")

    @property
    def authenticator(self) -> APIKeyAuthenticator:
        return APIKeyAuthenticator(key="X-API-Key", value=self.config["api_key"], location="header")

    @property
    def http_headers(self) -> dict[str, str]:
        return {"Accept": "application/json", "User-Agent": "tap-swapcommerce"}

    def validate_response(self, response: requests.Response) -> None:
        status = response.status_code
        if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
            raise SwapAuthError(self._auth_error_message(status))
        super().validate_response(response)

    def _auth_error_message(self, status: int) -> str:
        if status == HTTPStatus.UNAUTHORIZED:
            hint = (
                "Swap rejected the API key: check the `api_key` setting "
                "(TAP_SWAPCOMMERCE_API_KEY) and that it is a key for this environment "
                "(sandbox keys cannot call production)"
            )
        else:
            hint = (
                "Swap refused access to this store: check the `store_id` setting "
                "(TAP_SWAPCOMMERCE_STORE_ID) and that the `api_key` belongs to that store"
            )
        return f"{status} {HTTPStatus(status).phrase} from {self.url_base}: {hint}."

    def response_error_message(self, response: requests.Response) -> str:
        """Describe a failed request without its query string or body.

        The SDK's default message includes the response body, and a Swap error body or URL may
        carry customer emails (``customer_email`` filter) or order names: keep only Swap's own
        ``message`` field, which describes the problem.
        """
        try:
            detail = response.json().get("message")
        except ValueError:
            detail = None
        status = response.status_code
        reason = response.reason or HTTPStatus(status).phrase
        message = f"{status} {reason} for path {self.path}"
        return f"{message}: {detail}" if isinstance(detail, str) else message

    # -- retries -----------------------------------------------------------------------------

    def backoff_max_tries(self) -> int:
        return MAX_TRIES

    def backoff_wait_generator(self) -> Generator[float, Any, None]:
        """Wait what the server asked (``Retry-After``), else back off exponentially.

        backoff sends each retried exception into this generator, so a 429's ``Retry-After``
        sets the wait; jitter is only ever added on top, never taken off.
        """
        attempt = 0
        exception = yield 0.0
        while True:
            attempt += 1
            fallback = min(BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), BACKOFF_MAX_SECONDS)
            response = getattr(exception, "response", None)
            asked = retry_after_seconds(response)
            exception = yield asked if asked is not None else fallback

    def backoff_jitter(self, value: float) -> float:
        """Up to 10% more than asked: spreads retries without ever undercutting ``Retry-After``."""
        return value * random.uniform(1.0, 1.1)

    def backoff_handler(self, details: Any) -> None:
        exception = details.get("exception")
        response = getattr(exception, "response", None)
        cause = (
            f"HTTP {response.status_code}"
            if isinstance(exception, RetriableAPIError) and response is not None
            else type(exception).__name__
        )
        self.logger.warning(
            "Swap request failed (%s); retrying in %.1f s (attempt %d of %d)",
            cause,
            details.get("wait", 0.0),
            details.get("tries", 0),
            MAX_TRIES,
        )
