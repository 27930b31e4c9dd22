"""Klaviyo's standard profile attributes and the phone identifier (issue 12), against the emulator.

Names, location and the other standard attributes are ordered by ``as_of`` like properties and
never cleared by an empty value; a phone is normalised to E.164, left out (and counted) when it
is not a valid number, never rides on events, and is dropped from an update whose phone Klaviyo
holds on another profile. The contract is closed: an unknown field is set aside by name.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.target import (
    EVENTS,
    IMPORTS_PATH,
    PROFILES,
    event,
    ledger_rows,
    outcomes,
    run_target,
    singer,
)

pytestmark = pytest.mark.slow  # each test takes over half a second (not in the fast tier)

T1 = "2026-02-01T10:00:00+00:00"
T2 = "2026-02-02T10:00:00+00:00"
PHONE = "+44 7400 123456"  # phonenumbers.example_number_for_type("GB", MOBILE), as typed
PHONE_E164 = "+447400123456"
OTHER_PHONE = "+12015550123"
PHONE_BOB = "+44 7400 654321"  # example_number("US")
LOCATION = {"address1": "1 High Street", "address2": "", "city": "London", "region": "ENG",
            "zip": "SW1A 1AA", "country": "GB"}  # fmt: skip


def profile_update(update_id: str, email: str, as_of: str, **fields: Any) -> tuple[str, dict]:
    return PROFILES, {"update_id": update_id, "email": email, "as_of": as_of, **fields}


def imported(klaviyo: Any) -> list[dict[str, Any]]:
    """Every profile entry of every import job, in order."""
    return [
        p["attributes"]
        for job in klaviyo.requests("POST", IMPORTS_PATH)
        for p in job.json()["data"]["attributes"]["profiles"]["data"]
    ]


def test_attributes_and_location_reach_a_new_profile_and_an_older_update_never_overwrites(
    klaviyo, config
):
    first = profile_update(
        "u-new", "ana@example.com", T2, first_name=" Ana ", last_name="Silva",
        locale="en-GB", location=LOCATION, phone_number=PHONE,
    )  # fmt: skip
    assert run_target(config, singer([first])).error is None
    ana = klaviyo.profile("ana@example.com")
    assert ana is not None
    assert (ana["first_name"], ana["last_name"], ana["locale"]) == ("Ana", "Silva", "en-GB")
    assert ana["phone_number"] == PHONE_E164
    assert ana["location"] == {k: v for k, v in LOCATION.items() if v}  # empty: not sent
    assert "address2" not in imported(klaviyo)[0]["location"]

    older = profile_update(
        "u-old", "ana@example.com", T1, first_name="Anna", location={"city": "Leeds"}
    )
    assert run_target(config, singer([older])).error is None
    ana = klaviyo.profile("ana@example.com")
    assert ana is not None
    assert (ana["first_name"], ana["location"]["city"]) == ("Ana", "London")


def test_the_phone_of_an_older_update_never_replaces_a_newer_one(klaviyo, config):
    newer = profile_update("u-new", "ana@example.com", T2, phone_number=PHONE)
    assert run_target(config, singer([newer])).error is None
    batch = [
        profile_update("u-old", "ana@example.com", T1, phone_number=OTHER_PHONE),
        (EVENTS, {**event("e-1")[1]}),
    ]
    assert run_target(config, singer(batch)).error is None
    in_one_batch = [
        profile_update("b-new", "bob@example.com", T2, phone_number=PHONE_BOB),
        profile_update("b-old", "bob@example.com", T1, phone_number=OTHER_PHONE),
    ]
    assert run_target(config, singer(in_one_batch)).error is None
    ana, bob = klaviyo.profile("ana@example.com"), klaviyo.profile("bob@example.com")
    assert ana is not None
    assert bob is not None
    assert (ana["phone_number"], bob["phone_number"]) == (PHONE_E164, "+447400654321")


def test_an_empty_or_null_attribute_never_clears_what_klaviyo_holds(klaviyo, config):
    named = profile_update("u-1", "ana@example.com", T1, first_name="Ana", last_name="Silva")
    assert run_target(config, singer([named])).error is None
    blank = profile_update(
        "u-2", "ana@example.com", T2, first_name="", last_name=None, location={"city": " "},
        organization="Acme",
    )  # fmt: skip
    assert run_target(config, singer([blank])).error is None
    ana = klaviyo.profile("ana@example.com")
    assert ana is not None
    assert (ana["first_name"], ana["last_name"], ana["organization"]) == ("Ana", "Silva", "Acme")
    sent = imported(klaviyo)[-1]
    assert "first_name" not in sent
    assert "last_name" not in sent
    assert "location" not in sent


def test_attributes_ride_on_events_but_the_phone_goes_by_import(klaviyo, config, ledger_path):
    records = [
        profile_update("u-ana", "ana@example.com", T1, first_name="Ana", phone_number=PHONE),
        event("e-ana", "ana@example.com"),
    ]
    assert run_target(config, singer(records)).error is None
    [post] = klaviyo.event_posts()
    [entry] = post.json()["data"]["attributes"]["events-bulk-create"]["data"]
    riding = entry["attributes"]["profile"]["data"]["attributes"]
    assert riding["first_name"] == "Ana"
    assert "phone_number" not in riding
    assert imported(klaviyo) == [{"email": "ana@example.com", "phone_number": PHONE_E164}]
    ana = klaviyo.profile("ana@example.com")
    assert ana is not None
    assert (ana["first_name"], ana["phone_number"]) == ("Ana", PHONE_E164)
    assert outcomes(ledger_path) == {"e-ana": "accepted", "u-ana": "accepted"}


def test_an_invalid_phone_is_left_out_of_that_update_alone_and_counted(
    klaviyo, config, ledger_path
):
    records = [
        profile_update("u-ana", "ana@example.com", T1, first_name="Ana", phone_number="+44 123"),
        profile_update("u-bob", "bob@example.com", T1, first_name="Bob", phone_number=PHONE),
        profile_update("u-cy", "cy@example.com", T1, phone_number="07400 123456"),  # no country
        (PROFILES, {"update_id": "u-phone-only", "phone_number": "12", "as_of": T1}),
        (EVENTS, {**event("e-dan", None)[1], "profile": {"email": "dan@example.com",
                                                        "phone_number": "+1 555 0100"}}),
    ]  # fmt: skip
    run = run_target(config, singer(records))
    assert run.error is None
    assert run.summary["left_out"] == {"phone_invalid": 4}
    ana, bob = klaviyo.profile("ana@example.com"), klaviyo.profile("bob@example.com")
    assert ana is not None
    assert bob is not None
    assert (ana["first_name"], ana["phone_number"]) == ("Ana", None)
    assert (bob["first_name"], bob["phone_number"]) == ("Bob", PHONE_E164)
    assert klaviyo.profile("cy@example.com") is not None
    assert [e["unique_id"] for e in klaviyo.events(email="dan@example.com")] == ["e-dan"]
    assert outcomes(ledger_path) == {
        "u-ana": "accepted", "u-bob": "accepted", "u-cy": "accepted", "e-dan": "accepted",
        "u-phone-only": "invalid_record",
    }  # fmt: skip
    [row] = ledger_rows(ledger_path, record_key="u-phone-only")
    assert row["reason"] == "invalid_phone"
    assert "phone_number" in row["detail"]
    assert "12" not in row["detail"]


def test_a_phone_another_profile_holds_is_dropped_and_the_update_resent(
    klaviyo, config, ledger_path
):
    klaviyo.add_profile("owner@example.com", phone_number=OTHER_PHONE)
    klaviyo.add_profile("ana@example.com")
    records = [
        profile_update(
            "u-ana", "ana@example.com", T1, first_name="Ana", phone_number=OTHER_PHONE,
            properties={"swap_last_return_status": "requested"},
        ),
    ]  # fmt: skip
    run = run_target(config, singer(records))
    assert run.error is None
    assert run.summary["left_out"] == {"phone_in_use": 1}
    ana = klaviyo.profile("ana@example.com")
    assert ana is not None
    assert ana["first_name"] == "Ana"
    assert ana["phone_number"] is None
    assert ana["properties"] == {"swap_last_return_status": "requested"}
    owner = klaviyo.profile("owner@example.com")
    assert owner is not None
    assert owner["phone_number"] == OTHER_PHONE
    assert outcomes(ledger_path) == {"u-ana": "accepted"}


def test_an_unknown_field_is_set_aside_naming_it(klaviyo, config, ledger_path):
    records = [
        profile_update("u-typo", "ana@example.com", T1, frist_name="Ana"),
        profile_update("u-loc", "bob@example.com", T1, location={"postcode": "SW1A 1AA"}),
        (EVENTS, {**event("e-1")[1], "profile": {"email": "cy@example.com", "name": "Cy"}}),
        profile_update("u-ok", "dan@example.com", T1, first_name="Dan"),
    ]
    assert run_target(config, singer(records)).error is None
    rows = {r["record_key"]: r for r in ledger_rows(ledger_path)}
    assert rows["u-typo"]["detail"] == "record: unknown field 'frist_name' (not in the contract)"
    assert rows["u-loc"]["detail"] == "location: unknown field 'postcode' (not in the contract)"
    assert rows["e-1"]["detail"] == "profile: unknown field 'name' (not in the contract)"
    assert {rows[k]["outcome"] for k in ("u-typo", "u-loc", "e-1")} == {"invalid_record"}
    assert rows["u-ok"]["outcome"] == "accepted"
    assert klaviyo.profile("ana@example.com") is None
