"""What a person does about each set-aside reason, shown next to the records it holds back.

A reason code alone does not tell a CX lead whether to fix data in Swap, ask an engineer, or
leave it; the report says so in one sentence. Unknown reasons fall back to their outcome's advice,
so a new reason code is never shown without guidance.
"""

from __future__ import annotations

from target_klaviyo.ledger import (
    FAILED_PROFILE_IMPORT,
    HELD,
    INVALID_RECORD,
    MAPPER_EXCEPTION,
    REJECTED,
)

REASONS: dict[str, str] = {
    "missing_email": (
        "The Swap return has no customer email, so it cannot be tied to a Klaviyo profile. "
        "Add the email to the order in Swap or Shopify; the next sync sends the return."
    ),
    "invalid_email": (
        "The customer's email in Swap is not a valid address (usually a typo). Correct it in "
        "Swap or Shopify; the next sync sends the return."
    ),
    "variant_not_found": (
        "The returned item's SKU has no variant in Klaviyo's catalog, so its restock was not "
        "applied. Check that the product is in the catalog, then replay the restock."
    ),
    "catalog_not_writable": (
        "The variant belongs to a catalog Klaviyo syncs from Shopify, which takes inventory from "
        "Shopify itself. Nothing to do unless restocks should go to a custom catalog."
    ),
    "restock_uncertain": (
        "An earlier run may already have applied this restock. Check the variant's inventory in "
        "Klaviyo before replaying, so it is not counted twice."
    ),
    "string_too_long": (
        "A property is over Klaviyo's 100 KB limit (often a long customer comment). Shorten it in "
        "the mapping or in Swap, then replay."
    ),
    "new_profile": (
        "The event would create a new Klaviyo profile: Klaviyo does not know this email, often a "
        "typo or a different address from the one the customer shops with. Check the address; "
        "replay once it is right, or release it if a new profile is correct."
    ),
    "suppressed_profile": (
        "The customer is suppressed from email in Klaviyo (unsubscribed, bounced or marked as "
        "spam), so flows will not email them about this return. Reach them another way if the "
        "return needs it."
    ),
    "request_refused": (
        "Klaviyo refused the request without saying why. Replay it; if it is refused again, "
        "pass the return id to an engineer."
    ),
    INVALID_RECORD: (
        "The record broke target-klaviyo's input contract (the detail names the field). This is "
        "a mapping bug: pass the return id to an engineer."
    ),
}

OUTCOMES: dict[str, str] = {
    REJECTED: (
        "Klaviyo rejected the record; the detail quotes its reason. Fix the cause, then replay."
    ),
    FAILED_PROFILE_IMPORT: (
        "Klaviyo's profile import failed for this profile, so its open-returns flag is not "
        "current. Fix the cause in the detail, then replay."
    ),
    HELD: "Held back for a person to review before it is sent. Review it, then replay or drop it.",
    MAPPER_EXCEPTION: (
        "The mapping could not turn the return into Klaviyo records (the detail says why). Fix "
        "the return's data in Swap; the next sync maps it again."
    ),
    INVALID_RECORD: REASONS[INVALID_RECORD],
}

DEFAULT = "See the detail. Once the cause is fixed, replay the record from the delivery ledger."


def guidance(reason: str, outcome: str | None = None) -> str:
    """The advice for a reason code, else for its outcome, else the general advice."""
    return REASONS.get(reason) or OUTCOMES.get(outcome or reason) or DEFAULT
