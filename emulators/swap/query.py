"""The list endpoint's query parameters, validated as Swap's Nest.js gateway would (else 400)."""

from __future__ import annotations

from dataclasses import dataclass

from emulators.swap.timestamps import parse_iso

MAX_ITEMS_PER_PAGE = 100
DEFAULT_ITEMS_PER_PAGE = 100  # [assumed]: the contract gives only the maximum
DOCUMENTED_PARAMETERS = (
    "swap_store_id",
    "rma_number",
    "shopify_order_name",
    "customer_email",
    "from_return_submission_date",
    "to_return_submission_date",
    "last_RMA_updated_date",
    "api_version",
    "items_per_page",
    "page",
)
_API_VERSIONS = frozenset({"v2", "2"})


class QueryError(ValueError):
    """A parameter the API would refuse with 400; the message names it (never a value)."""


@dataclass(frozen=True)
class ReturnQuery:
    """A validated list request; times are epoch milliseconds."""

    store_id: str
    page: int = 1
    items_per_page: int = DEFAULT_ITEMS_PER_PAGE
    updated_since_ms: int | None = None
    rma_number: str | None = None
    shopify_order_name: str | None = None
    customer_email: str | None = None
    submitted_from_ms: int | None = None
    submitted_to_ms: int | None = None

    @property
    def filters_rows(self) -> bool:
        """Whether rows must be checked one by one (all but the updated-since filter)."""
        return any(
            value is not None
            for value in (
                self.rma_number,
                self.shopify_order_name,
                self.customer_email,
                self.submitted_from_ms,
                self.submitted_to_ms,
            )
        )


def parse_query(query: dict[str, list[str]]) -> tuple[ReturnQuery, dict[str, str]]:
    """The validated query and the echo of it the response carries as ``query_params``.

    Unknown parameters are ignored, as the gateway does with parameters it does not whitelist.

    Raises:
        QueryError: a parameter is missing or invalid.
    """
    given = {name: query[name][0] for name in DOCUMENTED_PARAMETERS if name in query}
    store_id = given.get("swap_store_id", "").strip()
    if not store_id:
        msg = "swap_store_id should not be empty"
        raise QueryError(msg)
    version = given.get("api_version")
    if version is not None and version.strip().lower() not in _API_VERSIONS:
        msg = "api_version must be one of the following values: v2"
        raise QueryError(msg)
    parsed = ReturnQuery(
        store_id=store_id,
        page=_integer(given, "page", 1, minimum=1),
        items_per_page=_integer(
            given, "items_per_page", DEFAULT_ITEMS_PER_PAGE, minimum=1, maximum=MAX_ITEMS_PER_PAGE
        ),
        updated_since_ms=_moment(given, "last_RMA_updated_date"),
        rma_number=_text(given, "rma_number"),
        shopify_order_name=_text(given, "shopify_order_name"),
        customer_email=_text(given, "customer_email"),
        submitted_from_ms=_moment(given, "from_return_submission_date"),
        submitted_to_ms=_moment(given, "to_return_submission_date", end_of_day=True),
    )
    return parsed, given


def _integer(
    given: dict[str, str], name: str, default: int, *, minimum: int, maximum: int | None = None
) -> int:
    raw = given.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        msg = f"{name} must be an integer number"
        raise QueryError(msg) from None
    if value < minimum:
        msg = f"{name} must not be less than {minimum}"
        raise QueryError(msg)
    if maximum is not None and value > maximum:
        msg = f"{name} must not be greater than {maximum}"
        raise QueryError(msg)
    return value


def _moment(given: dict[str, str], name: str, *, end_of_day: bool = False) -> int | None:
    raw = given.get(name)
    if raw is None:
        return None
    try:
        return parse_iso(raw, end_of_day=end_of_day)
    except ValueError:
        msg = f"{name} must be a valid ISO 8601 date string"
        raise QueryError(msg) from None


def _text(given: dict[str, str], name: str) -> str | None:
    raw = given.get(name)
    return raw if raw and raw.strip() else None
