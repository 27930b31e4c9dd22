"""Filters, tests and functions that every mapping expression can use.

They are written once here so that analysts never re-implement e-mail cleaning, money rounding or
id hashing in Jinja. Each one is strict about its input type and raises with a message that names
the expected type only: the message becomes an exception record's `detail`, so it must never
quote the value (which may be an e-mail address or a name).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import DOT_ATOM_TEXT
from jinja2 import pass_environment

from swap_transforms._compat import make_attrgetter

if TYPE_CHECKING:
    from jinja2 import Environment

#: Item fields of the Swap contract; `return_items` gives every flattened item all of them, so
#: that mappings can test optional ones (`refunded_at`, `restocked_at`, ...) without `default`.
ITEM_FIELDS: tuple[str, ...] = (
    "shopify_line_item_id",
    "shopify_variant_id",
    "sku",
    "barcode",
    "product_name",
    "variant_name",
    "main_reason_id",
    "main_reason_text",
    "sub_reason_id",
    "sub_reason_text",
    "comments",
    "item_count",
    "cost",
    "currency",
    "return_type",
    "is_faulty",
    "intake_reason",
    "refunded_taxes",
    "refunded_duties",
    "refund_amount",
    "refunded_at",
    "qc_status",
    "restock_quantity",
    "restocked_at",
)

_NO_ITEM_FIELDS: dict[str, Any] = dict.fromkeys(ITEM_FIELDS)  # copied per item, never changed
_CENT = Decimal("0.01")


def normalize_email(value: Any) -> str | None:
    """Trim and lower-case an address; Klaviyo matches profiles on the exact string."""
    if value is None:
        return None
    if not isinstance(value, str):
        msg = f"normalize_email expects a string, got {type(value).__name__}"
        raise TypeError(msg)
    return value.strip().lower()


def is_valid_email(value: Any) -> bool:
    """Syntax check only (no DNS): the mapper must stay offline and deterministic."""
    return isinstance(value, str) and bool(value) and _valid_address(value)


@lru_cache(maxsize=16_384)
def _valid_address(address: str) -> bool:
    # Cached: a customer's address comes back with each of their returns.
    if address.isascii() and address.count("@") == 1 and '"' not in address and "<" not in address:
        # A plain ASCII address: `validate_email` splits it at the @-sign, checks the part
        # before it with DOT_ATOM_TEXT alone, the domain on its own, and then the lengths of
        # the address in its forms. The domain's verdict (the costly part) is kept per domain.
        local, domain = address.split("@")
        lengths = _domain_lengths(domain)
        return (
            lengths is not None
            and DOT_ATOM_TEXT.match(local) is not None
            and len(address) <= _EMAIL_MAX_LENGTH
            and len(local) + 1 + lengths <= _EMAIL_MAX_LENGTH
        )
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


_EMAIL_MAX_LENGTH = 254  # octets, as email_validator counts them


@lru_cache(maxsize=4_096)
def _domain_lengths(domain: str) -> int | None:
    """None if `domain` fails email_validator's checks, else its longest form in octets.

    The verdict comes from validating the shortest address with that domain (`a@domain`):
    any address with the domain that passes is at least as long, so its only extra conditions
    are its local part and its length in each form (as given, normalised and IDNA ASCII).
    """
    try:
        checked = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return None
    return max(len(checked.domain.encode("utf-8")), len(checked.ascii_domain))


def money(value: Any) -> Decimal | None:
    """Round an amount to cents, half-up, as Decimal; None stays None (an unknown amount)."""
    if value is None:
        return None
    if type(value) is Decimal:  # as Singer numbers arrive; Decimal(value) would be a copy
        if not value.is_finite():
            msg = "money expects a finite number"
            raise ValueError(msg)
        return value.quantize(_CENT, rounding=ROUND_HALF_UP)
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        msg = f"money expects a number, got {type(value).__name__}"
        raise TypeError(msg)
    try:
        # repr() of a float is its shortest round-tripping form: 0.1 -> Decimal("0.1").
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        msg = "money expects a number, got a non-numeric string"
        raise ValueError(msg) from None
    if not amount.is_finite():
        msg = "money expects a finite number"
        raise ValueError(msg)
    return amount.quantize(_CENT, rounding=ROUND_HALF_UP)


@pass_environment
def field_values(environment: Environment, items: Any, field: str | int) -> list[Any]:
    """The value of `field` in each of `items`, in order, nulls left out.

    What `items | map(attribute=field) | reject('none') | list` gives (dotted paths and the
    sandbox's lookups included), in one call instead of a chain of generators.
    """
    if not items:
        return []
    values: list[Any] = []
    if isinstance(field, str) and "." not in field and not field.isdigit():
        lookup = environment.getitem
        for item in items:
            # A JSON object with the key: what the sandbox's lookup would return, faster.
            value = item[field] if type(item) is dict and field in item else lookup(item, field)
            if value is not None:
                values.append(value)
        return values
    getter = make_attrgetter(environment, field)
    for item in items:
        value = getter(item)
        if value is not None:
            values.append(value)
    return values


def return_items(swap_return: Any) -> list[dict[str, Any]]:
    """All items of a return, across its shipments, in order.

    Each item is a copy with every field of `ITEM_FIELDS` present (None when Swap left it out)
    plus its `shipment_id`: the copy keeps the input record untouched.
    """
    if not isinstance(swap_return, Mapping):
        msg = f"return_items expects a return object, got {type(swap_return).__name__}"
        raise TypeError(msg)
    items: list[dict[str, Any]] = []
    for shipment in swap_return.get("return_shipments") or ():
        for item in shipment.get("items") or ():
            flat = _NO_ITEM_FIELDS.copy()
            flat.update(item)
            flat["shipment_id"] = shipment.get("shipment_id")
            items.append(flat)
    return items


def iso_timestamp(value: Any) -> str | None:
    """Normalise a timestamp to ISO 8601 in UTC with a `Z` suffix; None stays None.

    Ids built from timestamps go through this so that `...:00Z` and `...:00.000+00:00` (the
    same instant) give the same id. A timestamp without an offset is taken as UTC, as Swap's are.
    """
    if value is None:
        return None
    if type(value) is str:
        return _iso_text(value)
    return _iso(value)


@lru_cache(maxsize=4_096)
def _iso_text(value: str) -> str:
    # Cached: one record's timestamps are normalised for each of its events.
    match = _UTC_TEXT.fullmatch(value)
    if match is not None:
        # Already UTC with `Z` (Swap's own form): once the date is known to be valid, what
        # `_iso` would write is the text itself, without a zero millisecond part.
        try:
            datetime.fromisoformat(value)
        except ValueError:
            pass  # `_iso` raises its own error
        else:
            return value if match.group(1) not in (None, "000") else value[:19] + "Z"
    return _iso(value)


_UTC_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.([0-9]{3}))?Z")


def _iso(value: Any) -> str:
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            msg = "iso expects an ISO 8601 timestamp"
            raise ValueError(msg) from None
    elif isinstance(value, datetime):
        moment = value
    else:
        msg = f"iso expects a timestamp string, got {type(value).__name__}"
        raise TypeError(msg)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    # Keep Swap's millisecond precision as it is, rather than padding it to microseconds.
    micro = moment.microsecond
    spec = "seconds" if not micro else "milliseconds" if not micro % 1000 else "microseconds"
    return moment.astimezone(timezone.utc).isoformat(timespec=spec).replace("+00:00", "Z")


def stable_hash(*parts: Any, length: int = 32) -> str:
    """A short hex digest of the parts, the same on every run and machine (unlike `hash()`)."""
    if not 8 <= length <= 64:
        msg = "stable_hash length must be between 8 and 64"
        raise ValueError(msg)
    text = "\x1f".join("" if part is None else str(part) for part in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def coalesce(*values: Any) -> Any:
    """The first argument that is not None: unlike `or`, it keeps 0, False and empty strings."""
    return next((value for value in values if value is not None), None)


FILTERS: Mapping[str, Callable[..., Any]] = {
    "normalize_email": normalize_email,
    "is_email": is_valid_email,
    "money": money,
    "return_items": return_items,
    "field_values": field_values,
    "iso": iso_timestamp,
    "stable_hash": stable_hash,
}

TESTS: Mapping[str, Callable[..., bool]] = {
    "valid_email": is_valid_email,
}

FUNCTIONS: Mapping[str, Callable[..., Any]] = {
    "normalize_email": normalize_email,
    "is_email": is_valid_email,
    "money": money,
    "return_items": return_items,
    "field_values": field_values,
    "iso": iso_timestamp,
    "stable_hash": stable_hash,
    "coalesce": coalesce,
}
