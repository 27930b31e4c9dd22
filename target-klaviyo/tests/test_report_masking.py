from __future__ import annotations

import pytest

from target_klaviyo.masking import mask_email, mask_identity, mask_phone, scrub
from target_klaviyo.report.queries import display_url


@pytest.mark.parametrize(
    ("email", "masked"),
    [
        ("alice.martin@example.com", "a***@example.com"),
        ("  Bob@Example.org ", "B***@Example.org"),
        ("@example.com", "?***@example.com"),
        ("jane.doe@", "j***@"),
        ("no-at-sign.example.com", "no***"),
    ],
)
def test_mask_email_keeps_first_letter_and_domain(email, masked):
    assert mask_email(email) == masked


def test_mask_phone_keeps_last_two_digits():
    assert mask_phone("+44 7700 900123") == "+**********23"
    assert mask_phone("12") == "***"


def test_mask_identity_prefers_email_then_phone_then_external_id():
    assert mask_identity({"email": "eva@example.de", "phone_number": "+4915112345678"}) == (
        "e***@example.de"
    )
    assert mask_identity({"email": "", "phone_number": "+4915112345678"}) == "+***********78"
    assert mask_identity({"external_id": "shopify-customer-991"}) == "id sh***"
    assert mask_identity({}) is None
    assert mask_identity(None) is None


def test_scrub_masks_addresses_quoted_in_error_details():
    detail = "'dmitri.ivanov@example.com' is not valid; also <farah@example.co.uk>"
    assert scrub(detail) == "'d***@example.com' is not valid; also <f***@example.co.uk>"
    malformed = scrub("customer typed jane.doe@@example.com")
    assert malformed is not None
    assert "jane.doe" not in malformed
    assert scrub("call +44 7700 900123 now") == "call +**********23 now"
    assert scrub(None) is None


def test_scrub_leaves_dates_skus_and_ids_alone():
    text = "No catalog variant $custom:::$default:::SKU-12345678 at 2025-03-03T10:00:00+00:00"
    assert scrub(text) == text


def test_display_url_hides_a_database_password():
    shown = display_url("postgresql+psycopg://ledger:s3cret-pw@db.internal:5432/ledger")
    assert "s3cret-pw" not in shown
    assert "db.internal" in shown
