"""The Klaviyo emulator rejects what Klaviyo rejects and applies what Klaviyo applies.

Everything goes through real HTTP on loopback with httpx. Where the official OpenAPI specs are
available (../shared/klaviyo-openapi beside the repository), request bodies are checked for
parity with the spec's schemas and responses are validated against the spec's response schemas.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS30Validator, oas30_format_checker

from emulators.klaviyo import KlaviyoEmulator, add_klaviyo_arguments, klaviyo_from_args

SPECS = Path(__file__).resolve().parents[2].parent / "shared" / "klaviyo-openapi"
JSONAPI = "application/vnd.api+json"
KEY = "pk_test_secret_123"
HEADERS = {
    "Authorization": f"Klaviyo-API-Key {KEY}",
    "revision": "2026-07-15",
    "Content-Type": JSONAPI,
    "Accept": JSONAPI,
}
EVENTS = "/api/event-bulk-create-jobs"
IMPORTS = "/api/profile-bulk-import-jobs"
VARIANT_JOBS = "/api/catalog-variant-bulk-update-jobs"
ENTRIES = "/data/attributes/events-bulk-create/data"


# -- fixtures and builders -----------------------------------------------------------------------


@pytest.fixture
def klaviyo() -> Iterator[KlaviyoEmulator]:
    with KlaviyoEmulator(api_key=KEY, rate_limits=False, job_delay=0.02) as emulator:
        yield emulator


@pytest.fixture
def client(klaviyo: KlaviyoEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=klaviyo.url, headers=HEADERS, timeout=10) as http:
        yield http


def event(metric: str = "Return Created", unique_id: str | None = "u-1", **attributes: Any):
    body: dict[str, Any] = {"properties": {"return_id": "r-1"}, **attributes}
    body["metric"] = {"data": {"type": "metric", "attributes": {"name": metric}}}
    if unique_id is not None:
        body["unique_id"] = unique_id
    return {"type": "event", "attributes": body}


def entry(email: str | None = "ana@example.com", events=None, meta=None, **profile: Any):
    attributes: dict[str, Any] = dict(profile)
    if email is not None:
        attributes["email"] = email
    data: dict[str, Any] = {"type": "profile", "attributes": attributes}
    if meta is not None:
        data["meta"] = meta
    return {
        "type": "event-bulk-create",
        "attributes": {
            "profile": {"data": data},
            "events": {"data": events if events is not None else [event()]},
        },
    }


def events_body(*entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "data": {
            "type": "event-bulk-create-job",
            "attributes": {"events-bulk-create": {"data": list(entries) or [entry()]}},
        }
    }


def import_body(*profiles: dict[str, Any]) -> dict[str, Any]:
    return {
        "data": {
            "type": "profile-bulk-import-job",
            "attributes": {"profiles": {"data": list(profiles)}},
        }
    }


def import_profile(meta: dict[str, Any] | None = None, **attributes: Any) -> dict[str, Any]:
    profile: dict[str, Any] = {"type": "profile", "attributes": attributes}
    if meta is not None:
        profile["meta"] = meta
    return profile


def variants_body(*updates: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    data = [{"type": "catalog-variant", "id": vid, "attributes": a} for vid, a in updates]
    return {
        "data": {
            "type": "catalog-variant-bulk-update-job",
            "attributes": {"variants": {"data": data}},
        }
    }


def segment_body(name: str, condition_type: str = "profile-property") -> dict[str, Any]:
    condition = {
        "type": condition_type,
        "property": "properties['returns']",
        "filter": {"type": "existence", "operator": "is-set"},
    }
    return {
        "data": {
            "type": "segment",
            "attributes": {
                "name": name,
                "definition": {"condition_groups": [{"conditions": [condition]}]},
            },
        }
    }


def pointers(response: httpx.Response) -> list[str]:
    assert response.headers["content-type"] == JSONAPI
    return [e["source"]["pointer"] for e in response.json()["errors"] if "source" in e]


def wait_for_job(client: httpx.Client, path: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        document: dict[str, Any] = client.get(path).raise_for_status().json()
        if document["data"]["attributes"]["status"] == "complete":
            return document
        assert time.monotonic() < deadline, f"job {path} did not complete"
        time.sleep(0.01)


def spec_validator(operation: str, status: str | None = None) -> OAS30Validator:
    """Validator of ``operation``'s request body (or response ``status``) from the shared spec."""
    path = SPECS / f"{operation}.json"
    if not path.is_file():
        pytest.skip(f"Klaviyo OpenAPI specs missing: {path} (../shared/klaviyo-openapi)")
    document = json.loads(path.read_text())
    op = next(iter(next(iter(document["paths"].values())).values()))
    if status is None:
        schema = op["requestBody"]["content"][JSONAPI]["schema"]
    else:
        schema = op["responses"][status]["content"][JSONAPI]["schema"]
    return OAS30Validator(
        {**schema, "components": document["components"]}, format_checker=oas30_format_checker
    )


def assert_matches_spec(operation: str, status: str, document: dict[str, Any]) -> None:
    errors = [e.message for e in spec_validator(operation, status).iter_errors(document)]
    assert errors == []


# -- the gate: auth, revision, media type ---------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "not_authenticated"),
        ("Klaviyo-API-Key pk_wrong_key_987", "authentication_failed"),
        (f"Bearer {KEY}", "authentication_failed"),
    ],
)
def test_auth_is_required_and_keys_are_never_echoed(klaviyo, authorization, code):
    headers = {k: v for k, v in HEADERS.items() if k != "Authorization"}
    if authorization:
        headers["Authorization"] = authorization
    with httpx.Client(base_url=klaviyo.url, headers=headers) as http:
        response = http.post(EVENTS, json=events_body())
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == code
    assert KEY not in response.text
    assert "pk_wrong_key_987" not in response.text
    assert klaviyo.events() == []


@pytest.mark.parametrize("revision", [None, "latest", "2026-13-45", "2026-07-15 beta"])
def test_revision_header_is_required_and_well_formed(client, revision):
    headers = {"revision": revision} if revision else {}
    with httpx.Client(base_url=str(client.base_url)) as http:
        base = {k: v for k, v in HEADERS.items() if k != "revision"}
        response = http.post(EVENTS, json=events_body(), headers={**base, **headers})
    assert response.status_code == 400
    assert response.json()["errors"][0]["source"] == {"parameter": "revision"}


def test_malformed_json_is_a_400_without_pointer(client):
    response = client.post(EVENTS, content=b'{"data": [')
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert "not valid JSON" in error["detail"]
    assert "source" not in error


def test_revision_with_suffix_is_accepted(client):
    response = client.post(EVENTS, json=events_body(), headers={"revision": "2026-07-15.pre"})
    assert response.status_code == 202


@pytest.mark.parametrize(
    ("content_type", "status"),
    [("text/plain", 415), ("application/x-www-form-urlencoded", 415), ("application/json", 202)],
)
def test_media_type(client, klaviyo, content_type, status):
    content = json.dumps(events_body()).encode()
    response = client.post(EVENTS, content=content, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert len(klaviyo.events()) == (1 if status == 202 else 0)


# -- event bulk create: rejections ----------------------------------------------------------------


def test_schema_error_points_at_the_bad_value(client, klaviyo):
    entries = [entry(f"p{i}@example.com") for i in range(5)]
    entries[3]["attributes"]["profile"]["data"]["attributes"]["email"] = 12345
    del entries[1]["attributes"]["events"]["data"][0]["attributes"]["metric"]
    response = client.post(EVENTS, json=events_body(*entries))
    assert response.status_code == 400
    assert sorted(pointers(response)) == [
        f"{ENTRIES}/1/attributes/events/data/0/attributes/metric",
        f"{ENTRIES}/3/attributes/profile/data/attributes/email",
    ]
    assert response.json()["errors"][0]["title"] == "Invalid input."
    assert klaviyo.events() == []
    assert klaviyo.stats()["payloads_rejected"] == 1


def test_wrong_type_values_point_past_union_members(client):
    body = events_body(entry(events=[event(value="12.5")]))
    response = client.post(EVENTS, json=body)
    assert response.status_code == 400
    assert pointers(response) == [f"{ENTRIES}/0/attributes/events/data/0/attributes/value"]


def test_more_than_1000_events_in_a_request_is_rejected(client, klaviyo):
    def body(count: int) -> dict[str, Any]:
        return events_body(
            *(entry(f"p{i}@example.com", [event(unique_id=f"u{i}")]) for i in range(count))
        )

    response = client.post(EVENTS, json=body(1001))
    assert response.status_code == 400
    assert pointers(response) == [ENTRIES]
    assert "1001" in response.json()["errors"][0]["detail"]
    assert client.post(EVENTS, json=body(1000)).status_code == 202
    assert klaviyo.stats()["events"] == 1000


def test_payload_over_5_mb_is_413(client, klaviyo):
    blob = "x" * (90 * 1024)
    events = [event(unique_id=f"u{i}", properties={"blob": blob}) for i in range(60)]
    response = client.post(EVENTS, json=events_body(entry(events=events)))
    assert response.status_code == 413
    assert response.json()["errors"][0]["code"] == "payload_too_large"
    assert klaviyo.events() == []


def test_string_over_100_kb_is_rejected_with_its_pointer(client, klaviyo):
    limit = 100 * 1024
    fits = event(unique_id="fits", properties={"note": "é" * (limit // 2)})
    too_long = event(unique_id="long", properties={"items": [{"note": 'q"' * (limit // 2 + 1)}]})
    response = client.post(EVENTS, json=events_body(entry(events=[fits, too_long])))
    assert response.status_code == 400
    assert pointers(response) == [
        f"{ENTRIES}/0/attributes/events/data/1/attributes/properties/items/0/note"
    ]
    assert client.post(EVENTS, json=events_body(entry(events=[fits]))).status_code == 202
    assert [e["unique_id"] for e in klaviyo.events()] == ["fits"]


def test_more_than_400_event_properties_is_rejected(client):
    many = event(unique_id="many", properties={f"p{i}": i for i in range(401)})
    response = client.post(EVENTS, json=events_body(entry(events=[many])))
    assert response.status_code == 400
    assert pointers(response) == [f"{ENTRIES}/0/attributes/events/data/0/attributes/properties"]
    ok = event(unique_id="ok", properties={f"p{i}": i for i in range(400)})
    assert client.post(EVENTS, json=events_body(entry(events=[ok]))).status_code == 202


@pytest.mark.parametrize(
    ("profile", "where"),
    [
        ({"email": "ana@"}, "/attributes/email"),
        ({"email": "ana example.com"}, "/attributes/email"),
        ({"email": "ana@shop.invalid"}, "/attributes/email"),
        ({"phone_number": "555-0100"}, "/attributes/phone_number"),
        ({"first_name": "Ana"}, "/attributes"),
    ],
)
def test_bad_email_phone_or_missing_identifier_fails_the_request(client, klaviyo, profile, where):
    others = {k: v for k, v in profile.items() if k != "email"}
    response = client.post(EVENTS, json=events_body(entry(), entry(profile.get("email"), **others)))
    assert response.status_code == 400
    assert pointers(response) == [f"{ENTRIES}/1/attributes/profile/data{where}"]
    assert klaviyo.events() == []
    assert klaviyo.profiles() == []


def test_repeated_unique_id_for_one_profile_and_metric_fails_the_whole_request(client, klaviyo):
    body = events_body(
        entry("ana@example.com", [event(unique_id="a"), event("Return Approved", "a")]),
        entry("bea@example.com", [event(unique_id="a")]),
        entry("ANA@example.com", [event(unique_id="b"), event(unique_id="a")]),
    )
    response = client.post(EVENTS, json=body)
    assert response.status_code == 400
    assert pointers(response) == [f"{ENTRIES}/2/attributes/events/data/1/attributes/unique_id"]
    assert klaviyo.events() == []
    del body["data"]["attributes"]["events-bulk-create"]["data"][2]
    assert client.post(EVENTS, json=body).status_code == 202
    assert len(klaviyo.events()) == 3


def test_event_time_outside_klaviyo_range_is_rejected(client):
    old = event(unique_id="old", time="1989-12-31T23:59:59+00:00")
    response = client.post(EVENTS, json=events_body(entry(events=[old])))
    assert response.status_code == 400
    assert pointers(response) == [f"{ENTRIES}/0/attributes/events/data/0/attributes/time"]


# -- parity with the official OpenAPI request schemas --------------------------------------------


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        node = body
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _delete(path: list[Any]) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        node = body
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


E0 = ["data", "attributes", "events-bulk-create", "data", 0, "attributes"]
EV = [*E0, "events", "data", 0, "attributes"]
P0 = ["data", "attributes", "profiles", "data", 0]
V0 = ["data", "attributes", "variants", "data", 0]

EVENT_CASES: list[tuple[str, Callable[[dict[str, Any]], None] | None]] = [
    ("minimal", None),
    ("value and currency", _set([*EV, "value"], 49)),
    ("nullable unique_id", _set([*EV, "unique_id"], None)),
    ("time with offset", _set([*EV, "time"], "2024-05-01T10:00:00+02:00")),
    ("entry backfill", _set([*E0, "backfill"], True)),
    ("location number", _set([*E0, "profile", "data", "attributes", "location"], {"zip": "1"})),
    ("wrong job type", _set(["data", "type"], "event-bulk-create-jobs")),
    ("wrong event type", _set([*E0, "events", "data", 0, "type"], "events")),
    ("wrong profile type", _set([*E0, "profile", "data", "type"], "person")),
    ("missing metric", _delete([*EV, "metric"])),
    ("missing properties", _delete([*EV, "properties"])),
    ("missing profile", _delete([*E0, "profile"])),
    ("email not a string", _set([*E0, "profile", "data", "attributes", "email"], 5)),
    ("value as string", _set([*EV, "value"], "49.0")),
    ("backfill as string", _set([*EV, "backfill"], "yes")),
    ("time as epoch", _set([*EV, "time"], 1714550400)),
    ("time not a date", _set([*EV, "time"], "yesterday")),
    ("events not a list", _set([*E0, "events", "data"], {"type": "event"})),
    # Klaviyo's standard profile attributes (target-klaviyo's contract, issue 12).
    (
        "standard attributes",
        _set(
            [*E0, "profile", "data", "attributes"],
            {
                "email": "ana@example.com",
                "first_name": "Ana",
                "last_name": "Silva",
                "locale": "en-GB",
                "title": "Buyer",
                "organization": "Acme",
                "phone_number": "+447400123456",
                "location": {
                    "address1": "1 High St",
                    "address2": None,
                    "city": "London",
                    "region": "ENG",
                    "zip": "SW1A 1AA",
                    "country": "United Kingdom",
                },
            },
        ),
    ),
    ("first_name not a string", _set([*E0, "profile", "data", "attributes", "first_name"], 5)),
    ("null attributes", _set([*E0, "profile", "data", "attributes", "title"], None)),
    ("city not a string", _set([*E0, "profile", "data", "attributes", "location"], {"city": []})),
]
IMPORT_CASES: list[tuple[str, Callable[[dict[str, Any]], None] | None]] = [
    ("minimal", None),
    ("unset list", _set([*P0, "meta"], {"patch_properties": {"unset": ["a", "b"]}})),
    ("unset number", _set([*P0, "meta"], {"patch_properties": {"unset": 5}})),
    ("properties not an object", _set([*P0, "attributes", "properties"], ["a"])),
    ("wrong list type", _set(["data", "relationships"], {"lists": {"data": [{"type": "l"}]}})),
    ("missing attributes", _delete([*P0, "attributes"])),
    (
        "standard attributes",
        _set(
            [*P0, "attributes"],
            {
                "email": "ana@example.com",
                "first_name": "Ana",
                "last_name": "Silva",
                "locale": "en-GB",
                "organization": "Acme",
                "phone_number": "+447400123456",
                "location": {
                    "address1": "1 High St",
                    "city": "London",
                    "region": "ENG",
                    "zip": "SW1A 1AA",
                    "country": "GB",
                },
            },
        ),
    ),
    ("last_name not a string", _set([*P0, "attributes", "last_name"], ["Silva"])),
    ("location not an object", _set([*P0, "attributes", "location"], "London")),
    ("zip not a string", _set([*P0, "attributes", "location"], {"zip": 75001})),
]
VARIANT_CASES: list[tuple[str, Callable[[dict[str, Any]], None] | None]] = [
    ("minimal", None),
    ("float quantity and policy", _set([*V0, "attributes"], {"inventory_policy": 2})),
    ("policy outside enum", _set([*V0, "attributes", "inventory_policy"], 3)),
    ("quantity as string", _set([*V0, "attributes", "inventory_quantity"], "5")),
    ("missing id", _delete([*V0, "id"])),
    ("wrong variant type", _set([*V0, "type"], "catalog-variants")),
]


def _expected_pointer(error: Any) -> str:
    path = [str(p) for p in error.absolute_path]
    if error.validator == "required":
        missing = re.match(r"'(.+)' is a required property", error.message)
        assert missing is not None
        path.append(missing.group(1))
    return "/" + "/".join(path)


@pytest.mark.parametrize(
    ("operation", "path", "base", "cases"),
    [
        ("bulk_create_events", EVENTS, events_body, EVENT_CASES),
        (
            "bulk_import_profiles",
            IMPORTS,
            lambda: import_body(import_profile(email="ana@example.com")),
            IMPORT_CASES,
        ),
        (
            "bulk_update_catalog_variants",
            VARIANT_JOBS,
            lambda: variants_body(("$custom:::$default:::S1", {"inventory_quantity": 2.5})),
            VARIANT_CASES,
        ),
    ],
    ids=["events", "profile-import", "catalog-variants"],
)
def test_accepts_exactly_what_the_openapi_schema_accepts(client, operation, path, base, cases):
    validator = spec_validator(operation)
    verdicts = set()
    for name, mutate in cases:
        body = copy.deepcopy(base())
        if mutate is not None:
            mutate(body)
        expected = list(validator.iter_errors(body))
        response = client.post(path, json=body)
        assert response.status_code in (201, 202, 400), name
        assert (response.status_code != 400) == (not expected), (name, response.text)
        if expected:
            found = pointers(response)
            for error in expected:
                assert _expected_pointer(error) in found, (name, found)
        verdicts.add(bool(expected))
    assert verdicts == {True, False}


# -- event bulk create: what is applied -----------------------------------------------------------


def test_events_are_deduplicated_per_profile_metric_and_unique_id(client, klaviyo):
    first = events_body(
        entry("ana@example.com", [event(unique_id="r1", value=10, value_currency="EUR")]),
        entry("bea@example.com", [event(unique_id="r1", backfill=True)]),
    )
    assert client.post(EVENTS, json=first).status_code == 202
    again = events_body(
        entry("Ana@Example.com", [event(unique_id="r1"), event("Return Approved", "r1")]),
    )
    assert client.post(EVENTS, json=again).status_code == 202
    events = klaviyo.events()
    assert [(e["email"], e["metric"], e["unique_id"]) for e in events] == [
        ("ana@example.com", "Return Created", "r1"),
        ("bea@example.com", "Return Created", "r1"),
        ("ana@example.com", "Return Approved", "r1"),
    ]
    assert events[0]["value"] == 10
    assert events[0]["value_currency"] == "EUR"
    assert [e["backfill"] for e in events] == [False, True, False]
    stats = klaviyo.stats()
    assert stats["events_deduplicated"] == 1
    assert stats["flow_triggering_events"] == 2
    assert stats["backfill_events"] == 1
    assert len(klaviyo.events(metric="Return Approved")) == 1
    assert len(klaviyo.events(email="BEA@example.com")) == 1
    control = client.get("/_emulator/events", params={"email": "ana@example.com"}).json()
    assert len(control["events"]) == 2
    everything = client.get("/_emulator/events", params={"metric": "", "email": ""}).json()
    assert len(everything["events"]) == 3


def test_event_properties_can_be_left_out_of_memory(klaviyo):
    with (
        KlaviyoEmulator(api_key=KEY, keep_event_properties=False) as lean,
        httpx.Client(base_url=lean.url, headers=HEADERS) as http,
    ):
        assert http.post(EVENTS, json=events_body()).status_code == 202
        (stored,) = lean.events()
    assert stored["properties"] is None
    assert stored["unique_id"] == "u-1"


def test_events_update_profiles_with_patch_properties(client, klaviyo):
    klaviyo.add_profile(email="ana@example.com", properties={"tags": ["vip"], "old": 1, "x": 2})
    meta = {
        "patch_properties": {
            "append": {"tags": ["returner", "vip"], "skus": "S1"},
            "unappend": {"tags": "vip"},
            "unset": "old",
        }
    }
    body = events_body(
        entry(
            "ANA@example.com",
            meta=meta,
            first_name="Ana",
            location={"city": "Porto"},
            properties={"returns": 2, "x": None},
        )
    )
    assert client.post(EVENTS, json=body).status_code == 202
    profile = klaviyo.profile("ana@example.com")
    assert profile is not None
    assert profile["properties"] == {"tags": ["returner"], "skus": ["S1"], "returns": 2, "x": 2}
    assert profile["first_name"] == "Ana"
    assert profile["location"] == {"city": "Porto"}
    assert len(klaviyo.profiles()) == 1
    meta2 = {"patch_properties": {"append": {"skus": "S1"}, "unset": ["returns", "skus"]}}
    body = events_body(entry("ana@example.com", [event(unique_id="u-2")], meta=meta2))
    assert client.post(EVENTS, json=body).status_code == 202
    assert klaviyo.profile("ana@example.com")["properties"] == {"tags": ["returner"], "x": 2}


# -- profile import jobs --------------------------------------------------------------------------


def test_profile_import_job_lifecycle_and_import_errors(client, klaviyo):
    klaviyo.add_profile(email="known@example.com", properties={"tier": "gold", "keep": 1})
    klaviyo.add_profile(phone_number="+15005550006", external_id="ext-1")
    good = [
        import_profile(
            email="KNOWN@example.com",
            properties={"tier": "silver", "keep": None},
            meta={"patch_properties": {"append": {"tags": "x"}}},
        ),
        import_profile(phone_number="+15005550006", first_name="Phil"),
        import_profile(external_id="ext-1", last_name="Ext"),
        import_profile(email="new@example.com"),
    ]
    bad = [import_profile(email=f"broken{i}@") for i in range(23)]
    bad.append(import_profile(phone_number="12345"))
    response = client.post(IMPORTS, json=import_body(*good, *bad))
    assert response.status_code == 202
    created = response.json()
    assert created["data"]["attributes"]["status"] == "queued"
    assert created["data"]["attributes"]["total_count"] == 28
    job_path = f"{IMPORTS}/{created['data']['id']}"
    done = wait_for_job(client, job_path)
    attributes = done["data"]["attributes"]
    assert (attributes["completed_count"], attributes["failed_count"]) == (4, 24)
    assert attributes["completed_at"] is not None
    known = klaviyo.profile("known@example.com")
    assert known["properties"] == {"tier": "silver", "keep": 1, "tags": ["x"]}
    by_phone = [p for p in klaviyo.profiles() if p["phone_number"] == "+15005550006"]
    assert len(by_phone) == 1
    assert (by_phone[0]["first_name"], by_phone[0]["last_name"]) == ("Phil", "Ext")
    assert klaviyo.profile("new@example.com") is not None
    assert klaviyo.stats()["import_errors"] == 24

    errors, url, pages = [], f"{job_path}/import-errors?page[size]=10", 0
    while url:
        page = client.get(url).raise_for_status().json()
        errors += page["data"]
        url, pages = page["links"].get("next"), pages + 1
    assert pages == 3
    assert len(errors) == 24
    assert (
        errors[0]["attributes"]["source"]["pointer"]
        == "/data/attributes/profiles/data/4/attributes/email"
    )
    assert errors[0]["attributes"]["original_payload"] == bad[0]
    assert errors[-1]["attributes"]["source"]["pointer"].endswith("/27/attributes/phone_number")
    default_page = client.get(f"{job_path}/import-errors").json()
    assert len(default_page["data"]) == 20
    if SPECS.is_dir():
        assert_matches_spec("bulk_import_profiles", "202", created)
        assert_matches_spec("get_bulk_import_profiles_job", "200", done)
        assert_matches_spec("get_errors_for_bulk_import_profiles_job", "200", default_page)


def test_profile_import_limits_are_400(client):
    many = import_body(*(import_profile(email=f"p{i}@example.com") for i in range(10_001)))
    response = client.post(IMPORTS, json=many)
    assert response.status_code == 400
    assert pointers(response) == ["/data/attributes/profiles/data"]
    huge = import_profile(
        email="a@example.com", properties={"bio": "b" * 60_000, "c": "c" * 60_000}
    )
    response = client.post(IMPORTS, json=import_body(import_profile(email="x@example.com"), huge))
    assert response.status_code == 400
    assert pointers(response) == ["/data/attributes/profiles/data/1"]
    assert client.get(f"{IMPORTS}/nope").status_code == 404


def test_a_phone_another_profile_holds_is_a_duplicate_profile_conflict(client, klaviyo):
    """As Klaviyo: an email names one profile and the phone another; neither is merged."""
    klaviyo.add_profile(email="owner@example.com", phone_number="+447400123456")
    klaviyo.add_profile(email="ana@example.com")
    conflicting: dict[str, Any] = {"phone_number": "+447400123456", "first_name": "Ana"}
    response = client.post(EVENTS, json=events_body(entry("ana@example.com", **conflicting)))
    assert response.status_code == 409
    [error] = response.json()["errors"]
    assert error["code"] == "duplicate_profile"
    assert error["source"]["pointer"].endswith("/profile/data/attributes/phone_number")

    created = client.post(
        IMPORTS, json=import_body(import_profile(email="ana@example.com", **conflicting))
    )
    job_path = f"{IMPORTS}/{created.json()['data']['id']}"
    done = wait_for_job(client, job_path)
    assert (
        done["data"]["attributes"]["completed_count"],
        done["data"]["attributes"]["failed_count"],
    ) == (0, 1)
    [import_error] = client.get(f"{job_path}/import-errors").json()["data"]
    assert import_error["attributes"]["code"] == "duplicate_profile"
    assert (
        import_error["attributes"]["original_payload"]["attributes"]["email"] == "ana@example.com"
    )
    ana = klaviyo.profile("ana@example.com")
    assert ana is not None
    assert (ana["phone_number"], ana.get("first_name")) == (None, None)
    # Without the phone, the same update goes through.
    body = events_body(entry("ana@example.com", first_name="Ana"))
    assert client.post(EVENTS, json=body).status_code == 202


@pytest.mark.slow
def test_overlapping_profile_jobs_are_counted():
    with (
        KlaviyoEmulator(api_key=KEY, rate_limits=False, job_delay=0.3) as klaviyo,
        httpx.Client(base_url=klaviyo.url, headers=HEADERS) as http,
    ):
        one = import_body(import_profile(email="ana@example.com", first_name="A"))
        two = import_body(import_profile(email="ANA@example.com", first_name="B"))
        other = import_body(import_profile(email="bea@example.com"))
        ids = [http.post(IMPORTS, json=b).json()["data"]["id"] for b in (one, two, other)]
        stats = klaviyo.stats()
        assert stats["profile_jobs_overlapping"] == 1
        assert stats["profile_job_overlapping_profiles"] == 1
        for job_id in ids:
            wait_for_job(http, f"{IMPORTS}/{job_id}")
        ana = klaviyo.profile("ana@example.com")
        assert ana is not None
        assert ana["first_name"] in ("A", "B")
        assert klaviyo.stats()["profile_jobs_in_flight"] == 0


# -- catalog --------------------------------------------------------------------------------------


def test_catalog_variant_jobs_apply_and_report_errors(client, klaviyo):
    klaviyo.add_variants(["S1", "S2"], inventory=3)
    klaviyo.add_variants(["SH1"], inventory=9, integration="$shopify")
    body = variants_body(
        ("$custom:::$default:::S1", {"inventory_quantity": 7, "price": 19.5}),
        ("$custom:::$default:::MISSING", {"inventory_quantity": 1}),
        ("$shopify:::$default:::SH1", {"inventory_quantity": 1}),
    )
    response = client.post(VARIANT_JOBS, json=body)
    assert response.status_code == 202
    assert response.json()["data"]["attributes"]["status"] == "queued"
    assert klaviyo.variant("$custom:::$default:::S1")["inventory_quantity"] == 3
    job = wait_for_job(client, f"{VARIANT_JOBS}/{response.json()['data']['id']}?include=variants")
    attributes = job["data"]["attributes"]
    assert (attributes["completed_count"], attributes["failed_count"]) == (1, 2)
    errors = {e["source"]["pointer"]: e["code"] for e in attributes["errors"]}
    assert errors == {
        "/data/attributes/variants/data/1/id": "not_found",
        "/data/attributes/variants/data/2/id": "invalid",
    }
    assert "read-only" in attributes["errors"][1]["detail"]
    assert [v["id"] for v in job["included"]] == ["$custom:::$default:::S1"]
    assert klaviyo.variant("$custom:::$default:::S1")["inventory_quantity"] == 7
    assert klaviyo.variant("$custom:::$default:::S1")["price"] == 19.5
    assert klaviyo.variant("$shopify:::$default:::SH1")["inventory_quantity"] == 9
    assert klaviyo.stats()["variant_job_errors"] == 2
    if SPECS.is_dir():
        assert_matches_spec("get_bulk_update_variants_job", "200", job)
    too_many = variants_body(*((f"$custom:::$default:::S{i}", {}) for i in range(101)))
    response = client.post(VARIANT_JOBS, json=too_many)
    assert response.status_code == 400
    assert pointers(response) == ["/data/attributes/variants/data"]


def test_catalog_variant_reads_filters_and_pages(client, klaviyo):
    klaviyo.add_variants([f"SKU-{i}" for i in range(5)], inventory=2)
    one = client.get("/api/catalog-variants/%24custom%3A%3A%3A%24default%3A%3A%3ASKU-3")
    assert one.status_code == 200
    assert one.json()["data"]["attributes"]["inventory_quantity"] == 2
    assert (
        client.get("/api/catalog-variants/%24custom%3A%3A%3A%24default%3A%3A%3ANO").status_code
        == 404
    )
    ids = ["$custom:::$default:::SKU-1", "$custom:::$default:::SKU-4", "$custom:::$default:::X"]
    wanted = f"any(ids,{json.dumps(ids)})"
    found = client.get("/api/catalog-variants", params={"filter": wanted}).json()
    assert [v["id"] for v in found["data"]] == [
        "$custom:::$default:::SKU-1",
        "$custom:::$default:::SKU-4",
    ]
    by_sku = client.get("/api/catalog-variants", params={"filter": "equals(sku,'SKU-2')"}).json()
    assert [v["attributes"]["sku"] for v in by_sku["data"]] == ["SKU-2"]
    seen, url = [], "/api/catalog-variants?page[size]=2&sort=-created"
    while url:
        page = client.get(url).raise_for_status().json()
        seen += [v["id"] for v in page["data"]]
        url = page["links"].get("next")
    assert sorted(seen) == sorted(v["id"] for v in klaviyo.variants())
    bad = client.get("/api/catalog-variants", params={"filter": "equals(price,1)"})
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["source"] == {"parameter": "filter"}
    if SPECS.is_dir():
        assert_matches_spec("get_catalog_variant", "200", one.json())
        assert_matches_spec("get_catalog_variants", "200", found)


# -- profiles lookup ------------------------------------------------------------------------------


def test_profiles_lookup_by_email_with_subscriptions(client, klaviyo):
    klaviyo.add_profile(email="Sup@Example.com", suppressed=True)
    klaviyo.add_profile(email="ok@example.com")
    for i in range(30):
        klaviyo.add_profile(email=f"other{i}@example.com")
    params = {
        "filter": 'any(email,["sup@example.com","OK@example.com","nobody@example.com"])',
        "additional-fields[profile]": "subscriptions",
    }
    response = client.get("/api/profiles", params=params)
    assert response.status_code == 200
    data = response.json()["data"]
    marketing = {
        p["attributes"]["email"]: p["attributes"]["subscriptions"]["email"]["marketing"]
        for p in data
    }
    assert set(marketing) == {"Sup@Example.com", "ok@example.com"}
    assert marketing["Sup@Example.com"]["can_receive_email_marketing"] is False
    assert marketing["Sup@Example.com"]["suppression"][0]["reason"] == "USER_SUPPRESSED"
    assert marketing["ok@example.com"]["can_receive_email_marketing"] is True
    assert marketing["ok@example.com"]["suppression"] == []
    if SPECS.is_dir():
        assert_matches_spec("get_profiles", "200", response.json())
    no_subscriptions = client.get("/api/profiles", params={"filter": params["filter"]}).json()
    assert "subscriptions" not in no_subscriptions["data"][0]["attributes"]
    too_many = json.dumps([f"p{i}@example.com" for i in range(101)])
    response = client.get("/api/profiles", params={"filter": f"any(email,{too_many})"})
    assert response.status_code == 400
    emails, url = [], "/api/profiles?page[size]=15"
    while url:
        page = client.get(url).raise_for_status().json()
        emails += [p["attributes"]["email"] for p in page["data"]]
        url = page["links"].get("next")
    assert len(emails) == 32 == len(set(emails))


# -- segments -------------------------------------------------------------------------------------


def test_segments_are_created_and_found_by_name(client, klaviyo):
    response = client.post("/api/segments", json=segment_body("Returners"))
    assert response.status_code == 201
    created = response.json()["data"]
    assert created["attributes"]["name"] == "Returners"
    client.post("/api/segments", json=segment_body("Other")).raise_for_status()
    found = client.get("/api/segments", params={"filter": 'equals(name,"Returners")'}).json()
    assert [s["id"] for s in found["data"]] == [created["id"]]
    assert (
        client.get(f"/api/segments/{created['id']}").json()["data"]["attributes"]["name"]
        == "Returners"
    )
    bad = client.post("/api/segments", json=segment_body("Typo", condition_type="profile-propery"))
    assert bad.status_code == 400
    assert pointers(bad) == ["/data/attributes/definition/condition_groups/0/conditions/0/type"]
    missing_name = segment_body("x")
    del missing_name["data"]["attributes"]["name"]
    assert pointers(client.post("/api/segments", json=missing_name)) == ["/data/attributes/name"]
    assert [s["name"] for s in klaviyo.segments()] == ["Returners", "Other"]
    if SPECS.is_dir():
        assert_matches_spec("create_segment", "201", response.json())


# -- rate limits and faults -----------------------------------------------------------------------


@pytest.mark.slow
def test_rate_limits_answer_429_with_retry_after_and_scale_with_time():
    # Segment creation allows 1/s and 15/min; at time_scale 60 that is 15 per second.
    with (
        KlaviyoEmulator(api_key=KEY, rate_limits=True, time_scale=60) as klaviyo,
        httpx.Client(base_url=klaviyo.url, headers=HEADERS) as http,
    ):
        statuses = []
        for i in range(40):
            response = http.post("/api/segments", json=segment_body(f"S{i}"))
            statuses.append(response.status_code)
            if response.status_code == 429:
                break
        assert statuses[-1] == 429, statuses
        assert int(response.headers["Retry-After"]) >= 1
        assert response.json()["errors"][0]["code"] == "throttled"
        created = statuses.count(201)
        assert 1 <= created <= 15
        time.sleep(1.1)  # one scaled steady window (60 s / 60)
        assert http.post("/api/segments", json=segment_body("after")).status_code == 201
        stats = klaviyo.stats()
        assert stats["rate_limited"] == stats["throttled"] == 1
        assert stats["requests"]["POST /api/segments"] == created + 2


def test_event_endpoint_burst_limit():
    # time_scale below 1 stretches windows: 10 per 10 s leaves no room for a slow machine to slip.
    with (
        KlaviyoEmulator(api_key=KEY, rate_limits=True, time_scale=0.1) as klaviyo,
        httpx.Client(base_url=klaviyo.url, headers=HEADERS) as http,
    ):
        statuses = [
            http.post(
                EVENTS, json=events_body(entry(events=[event(unique_id=f"u{i}")]))
            ).status_code
            for i in range(11)
        ]
        assert statuses.count(202) == 10
        assert statuses[-1] == 429
        assert len(klaviyo.events()) == 10


def test_injected_faults(client, klaviyo):
    klaviyo.faults.add(kind="status", status=503, path="event-bulk", count=2)
    first, second, third = (client.post(EVENTS, json=events_body()) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (503, 503, 202)
    assert first.json()["errors"][0]["code"] == "server_error"
    control = httpx.post(
        f"{klaviyo.url}/_emulator/faults",
        json={"kind": "status", "status": 429, "path": "profiles", "retry_after": 2},
    )
    assert control.status_code == 201
    throttled = client.get("/api/profiles")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "2"
    klaviyo.faults.add(kind="drop", path="catalog-variants")
    with pytest.raises(httpx.TransportError):
        client.get("/api/catalog-variants")
    assert client.get("/api/catalog-variants").status_code == 200
    assert klaviyo.stats()["throttled"] == 1


# -- control endpoints, reset and command line ----------------------------------------------------


def test_control_endpoints_and_reset(client, klaviyo):
    base = klaviyo.url + "/_emulator"
    with httpx.Client(base_url=base) as control:
        added = control.post("/variants", json={"skus": ["A", "B"], "inventory": 4})
        assert added.status_code == 201
        assert [v["id"] for v in control.get("/variants").json()["variants"]] == [
            "$custom:::$default:::A",
            "$custom:::$default:::B",
        ]
        assert control.post("/variants", json={"inventory": 4}).status_code == 400
        profile = control.post("/profiles", json={"email": "s@example.com", "suppressed": True})
        assert profile.status_code == 201
        assert profile.json()["profile"]["suppressed"] is True
        client.post(EVENTS, json=events_body()).raise_for_status()
        stats = control.get("/stats").json()
        assert stats["events"] == 1
        assert stats["requests"] == {"POST /api/event-bulk-create-jobs": 1}
        assert len(control.get("/profiles").json()["profiles"]) == 2
        assert control.post("/reset").status_code == 204
        assert control.get("/stats").json()["events"] == 0
    assert klaviyo.profiles() == []
    assert klaviyo.variants() == []


def test_command_line_options(monkeypatch):
    monkeypatch.delenv("KLAVIYO_API_KEY", raising=False)
    parser = argparse.ArgumentParser()
    parser.add_argument("--time-scale", type=float, default=1.0)
    add_klaviyo_arguments(parser)
    args = parser.parse_args(
        ["--time-scale", "30", "--no-klaviyo-rate-limits", "--klaviyo-job-delay", "0.5"]
    )
    emulator = klaviyo_from_args(args)
    assert (emulator.rate_limits, emulator.time_scale, emulator.job_delay) == (False, 30.0, 0.5)
    assert args.klaviyo_api_key == "pk_test"  # resolved, for callers that pass it on
    assert "pk_test" not in parser.format_help()
    with emulator as running, httpx.Client(base_url=running.url) as http:
        assert http.get("/api/profiles").status_code == 401
