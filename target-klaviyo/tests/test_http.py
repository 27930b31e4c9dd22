"""How target-klaviyo talks to Klaviyo: headers, revision, and what a wrong key does."""

from __future__ import annotations

from pathlib import Path

import pytest
from singer_sdk.exceptions import ConfigValidationError

from target_klaviyo.client import KlaviyoAuthError
from target_klaviyo.target import TargetKlaviyo
from tests.support.target import (
    JSONAPI,
    KEY,
    REVISION,
    RecordingKlaviyo,
    event,
    ledger_rows,
    restock,
    run_cli,
    run_target,
    singer,
    state,
    update,
)


@pytest.mark.slow
def test_every_request_carries_key_revision_and_jsonapi_media_type(klaviyo, config):
    klaviyo.add_variants(["SKU-1"], inventory=4)
    text = singer(
        [
            event("e-1", "ana@example.com"),
            update("u-1", "bob@example.com", as_of="2026-01-02T00:00:00Z", properties={"a": 1}),
            restock("r-1", "SKU-1", 2),
        ]
    )
    run = run_target(config, text)
    assert run.error is None
    seen = klaviyo.requests()
    # Every kind of request the target makes: events, import + poll, variant read + job + poll.
    kinds = {(s.method, s.path.split("/")[2]) for s in seen}
    assert kinds == {
        ("POST", "event-bulk-create-jobs"),
        ("POST", "profile-bulk-import-jobs"),
        ("GET", "profile-bulk-import-jobs"),
        ("GET", "catalog-variants"),
        ("POST", "catalog-variant-bulk-update-jobs"),
        ("GET", "catalog-variant-bulk-update-jobs"),
    }
    for request in seen:
        assert request.headers["authorization"] == f"Klaviyo-API-Key {KEY}"
        assert request.headers["revision"] == REVISION
        assert request.headers["accept"] == JSONAPI
        if request.method == "POST":
            assert request.headers["content-type"] == JSONAPI
    assert {s.status for s in seen} <= {200, 202}


@pytest.mark.slow
def test_revision_setting_is_the_header_sent(klaviyo, config):
    run = run_target({**config, "revision": "2026-04-15"}, singer([event("e-1")]))
    assert run.error is None
    assert [s.headers["revision"] for s in klaviyo.requests()] == ["2026-04-15"]


@pytest.mark.parametrize("revision", ["2026-04-14", "2025-10-15", "2024-02-15.pre"])
def test_revision_older_than_backfill_is_refused_at_start_up(config, ledger_path, revision):
    with pytest.raises(ConfigValidationError) as caught:
        TargetKlaviyo(config={**config, "revision": revision})
    message = str(caught.value)
    assert revision in message
    assert "2026-04-15" in message
    assert "`revision`" in message
    assert not ledger_path.exists(), "a refused configuration must not open the ledger"


@pytest.mark.slow
def test_old_revision_fails_the_executable_before_reading_input(
    klaviyo, config, tmp_path, executable
):
    result = run_cli({**config, "revision": "2025-07-15"}, singer([event("e-1")]), tmp_path)
    assert result.returncode != 0
    assert "revision 2025-07-15 is older than 2026-04-15" in result.stderr
    assert klaviyo.requests() == []
    assert result.stdout == ""


@pytest.mark.slow
def test_wrong_api_key_stops_with_one_line_naming_the_setting(
    klaviyo, config, tmp_path, ledger_path, executable
):
    wrong = "pk_wrong_9a8b7c6d5e4f3a2b1c0d"
    text = singer([event("e-1"), event("e-2", "bob@example.com"), state({"bookmark": 2})])
    result = run_cli({**config, "api_key": wrong}, text, tmp_path)

    assert result.returncode == 1
    assert result.stdout == "", "no STATE may be emitted when nothing was delivered"
    lines = result.stderr.splitlines()
    naming = [line for line in lines if "api_key" in line]
    assert len(naming) == 1, result.stderr
    assert "HTTP 401" in naming[0]
    assert "Traceback" not in result.stderr
    # The key (or a fragment of it) is printed nowhere, and the ledger does not hold it.
    for secret in (wrong, wrong[3:15], KEY):
        assert secret not in result.stderr
        assert secret not in result.stdout
        assert secret.encode() not in ledger_path.read_bytes()
    # The target stopped at the first refusal instead of trying every batch.
    assert len(klaviyo.requests()) == 1
    assert [r["status"] for r in ledger_rows(ledger_path, "runs")] == ["auth_failed"]
    assert result.stderr.rstrip().splitlines()[-1].endswith("run outcome: auth_failed")


@pytest.mark.slow
def test_wrong_api_key_in_process_raises_a_clear_error(config, ledger_path, caplog):
    wrong = "pk_wrong_1234567890abcdef"
    run = run_target({**config, "api_key": wrong}, singer([event("e-1")]))
    assert isinstance(run.error, KlaviyoAuthError)
    assert "`api_key`" in str(run.error)
    assert wrong not in str(run.error)
    assert wrong not in caplog.text
    assert run.states == []
    assert ledger_rows(ledger_path) == []


@pytest.mark.slow
def test_forbidden_key_names_the_setting_too(tmp_path, ledger_path):
    # A key Klaviyo knows but that lacks a scope answers 403: the same clear stop.
    with RecordingKlaviyo(api_key=KEY, rate_limits=False, job_delay=0.02) as klaviyo:
        klaviyo.faults.add(kind="status", status=403, path="event-bulk-create", count=1)
        config = {
            "api_key": KEY,
            "api_url": klaviyo.url,
            "ledger_url": f"sqlite:///{ledger_path}",
        }
        run = run_target(config, singer([event("e-1")]))
    assert isinstance(run.error, KlaviyoAuthError)
    assert "HTTP 403" in str(run.error)
    assert "`api_key`" in str(run.error)


@pytest.mark.slow
def test_the_executable_delivers_and_emits_the_state(klaviyo, config, tmp_path: Path, executable):
    text = singer([event("e-1"), event("e-2", "bob@example.com"), state({"bookmark": 7})])
    result = run_cli(config, text, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '{"bookmark": 7}'
    assert sorted(e["unique_id"] for e in klaviyo.events()) == ["e-1", "e-2"]
