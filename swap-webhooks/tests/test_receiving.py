"""The receiver over real HTTP: what it accepts, what it refuses and with which status, redelivery.

Deliveries are signed by the Swap emulator's own HS256 implementation (standard library), and
verified by the receiver with PyJWT: two implementations checked against each other.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from emulators.swap import post_webhook, sign_token, webhook_payload
from swap_webhooks import webhook_latencies
from swap_webhooks.store import DeliveryStore
from tests.support import (
    SECRET,
    STORE,
    ReceiverThread,
    fake_run_command,
    fake_runs,
    settings,
    wait_until,
)

RETURN = {
    "return_id": "ret_0001",
    "rma_number": "SW-1001",
    "order_id": "5597137207520",
    "customer_email": "ana.silva@example.com",
    "return_status": "Open",
}


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverThread]:
    log = tmp_path / "runs.jsonl"
    config = settings(tmp_path, fake_run_command(log), max_body_bytes=64 * 1024)
    with ReceiverThread(config) as server:
        yield server


def signed(**options: Any) -> dict[str, Any]:
    return webhook_payload(RETURN, "returnCreated", SECRET, STORE, **options)


def refusals(server: ReceiverThread) -> dict[str, int]:
    return dict(server.metrics()["deliveries"]["refused"])


def test_a_signed_delivery_is_accepted_persisted_and_runs_the_pipeline(
    receiver: ReceiverThread, tmp_path: Path
) -> None:
    result = post_webhook(receiver.url, signed())

    assert result.status == 200
    assert result.json() == {"status": "accepted"}
    wait_until(receiver.idle, what="the run to finish")
    assert len(fake_runs(tmp_path / "runs.jsonl")) == 1
    metrics = receiver.metrics()
    assert metrics["deliveries"]["accepted"] == 1
    assert metrics["runs"]["started"] == metrics["runs"]["succeeded"] == 1
    assert sum(metrics["runs"].values()) == 2
    assert metrics["answer_ms"]["count"] == 1
    [(return_id, received_at)] = webhook_latencies(receiver.settings.state_db)
    assert return_id == "ret_0001"
    assert received_at.tzinfo is not None


def test_return_processed_is_accepted_too(receiver: ReceiverThread) -> None:
    payload = webhook_payload(RETURN, "returnProcessed", SECRET, STORE)
    assert post_webhook(receiver.url, payload).status == 200


@pytest.mark.parametrize(
    ("payload", "status", "reason"),
    [
        pytest.param(
            lambda: webhook_payload(
                RETURN, "returnCreated", "whsk_someone_else_s_secret_0123456789", STORE
            ),
            401,
            "bad_signature",
            id="wrong-secret",
        ),
        pytest.param(
            lambda: {**signed(), "jwt": signed()["jwt"][:-4] + "AAAA"},
            401,
            "bad_signature",
            id="tampered-signature",
        ),
        pytest.param(lambda: signed(algorithm="none"), 401, "bad_signature", id="alg-none"),
        pytest.param(lambda: signed(expired=True), 401, "expired", id="expired"),
        pytest.param(
            lambda: webhook_payload(RETURN, "returnCreated", SECRET, "store_other"),
            403,
            "wrong_store",
            id="another-store-our-secret",
        ),
        pytest.param(
            lambda: webhook_payload(
                RETURN, "returnCreated", "whsk_other_store_secret_0123456789abcd", "store_other"
            ),
            403,
            "wrong_store",
            id="another-store-its-secret",
        ),
        pytest.param(lambda: b"{not json", 400, "malformed", id="not-json"),
        pytest.param(lambda: b"[1, 2]", 400, "malformed", id="not-an-object"),
        pytest.param(lambda: RETURN, 400, "malformed", id="no-jwt"),
        pytest.param(lambda: {**RETURN, "jwt": "not.a.token"}, 400, "malformed", id="jwt-garbage"),
        pytest.param(lambda: signed(extra_claims={"nonce": None}), 400, "malformed", id="no-nonce"),
        pytest.param(
            lambda: signed(extra_claims={"return_id": 42}), 400, "malformed", id="bad-claim-type"
        ),
        pytest.param(
            lambda: {**signed(), "return_id": "ret_other"},
            400,
            "malformed",
            id="body-and-claims-disagree",
        ),
    ],
)
def test_refusals_carry_the_status_and_nothing_more(
    receiver: ReceiverThread, payload: Any, status: int, reason: str, tmp_path: Path
) -> None:
    result = post_webhook(receiver.url, payload())

    assert result.status == status
    # The sender learns the status's bare phrase: never which check failed.
    assert set(result.json()) == {"error"}
    assert reason.replace("_", " ") not in result.body.decode()
    assert refusals(receiver)[reason] == 1
    assert sum(refusals(receiver).values()) == 1
    assert receiver.metrics()["deliveries"]["accepted"] == 0
    assert receiver.health()["queue"]["pending"] == 0
    assert fake_runs(tmp_path / "runs.jsonl") == []


def test_an_oversized_body_is_refused_before_it_is_read(receiver: ReceiverThread) -> None:
    big = signed()
    big["padding"] = "x" * (128 * 1024)

    result = post_webhook(receiver.url, big)

    assert result.status == 413
    assert refusals(receiver)["too_large"] == 1


def test_an_oversized_chunked_body_is_refused_while_streaming(receiver: ReceiverThread) -> None:
    """No Content-Length to go by: the receiver counts the bytes as they come."""
    chunk = b"x" * 16384
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=10) as conn:
        conn.sendall(
            b"POST /webhooks/swap HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(5):  # 80 KiB, over the 64 KiB limit
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.sendall(b"0\r\n\r\n")
        answer = conn.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert refusals(receiver)["too_large"] == 1


def test_a_repeated_nonce_is_a_redelivery_answered_200_without_a_new_run(
    receiver: ReceiverThread, tmp_path: Path
) -> None:
    first = signed(nonce="nonce-0001")
    assert post_webhook(receiver.url, first).status == 200
    wait_until(receiver.idle, what="the first run to finish")
    assert len(fake_runs(tmp_path / "runs.jsonl")) == 1

    # Swap lost our answer and sends it again (same nonce; a fresh token, as a retry may carry).
    again = post_webhook(receiver.url, signed(nonce="nonce-0001"))
    same = post_webhook(receiver.url, first)

    assert again.status == 200
    assert same.status == 200
    assert again.json() == {"status": "accepted"}
    metrics = receiver.metrics()
    assert metrics["deliveries"]["accepted"] == 1
    assert metrics["deliveries"]["redelivered"] == 2
    assert receiver.health()["queue"]["pending"] == 0
    assert metrics["runs"]["started"] == 1
    assert len(fake_runs(tmp_path / "runs.jsonl")) == 1
    assert len(webhook_latencies(receiver.settings.state_db)) == 1


def test_an_expired_redelivery_is_still_refused(receiver: ReceiverThread) -> None:
    assert post_webhook(receiver.url, signed(nonce="nonce-0002")).status == 200
    assert post_webhook(receiver.url, signed(nonce="nonce-0002", expired=True)).status == 401


def test_the_secret_is_never_in_responses_logs_or_the_state_db_and_the_db_is_owner_only(
    receiver: ReceiverThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    responses = [
        post_webhook(receiver.url, signed()),
        post_webhook(receiver.url, signed(expired=True)),
        post_webhook(receiver.url, webhook_payload(RETURN, "returnCreated", "whsk_x" * 8, STORE)),
        post_webhook(receiver.url, b"{}"),
    ]
    wait_until(receiver.idle, what="the run to finish")
    health = json.dumps(receiver.health())
    metrics = json.dumps(receiver.metrics())

    for text in [*(r.body.decode() for r in responses), health, metrics, caplog.text]:
        assert SECRET not in text
    assert SECRET not in repr(receiver.settings)
    db = receiver.settings.state_db
    assert SECRET.encode() not in db.read_bytes()
    assert db.stat().st_mode & 0o077 == 0


def test_health_and_metrics_describe_the_queue_and_the_runs(receiver: ReceiverThread) -> None:
    health = receiver.health()
    assert health["status"] == "ok"
    assert health["queue"] == {"pending": 0, "in_run": 0, "oldest_received_at": None}
    assert health["last_run"] is None

    post_webhook(receiver.url, signed())
    wait_until(receiver.idle, what="the run to finish")

    health = receiver.health()
    assert health["last_run"]["outcome"] == "succeeded"
    assert health["last_run"]["deliveries"] == 1
    assert set(receiver.metrics()) == {"deliveries", "runs", "queue", "answer_ms"}


def test_a_second_receiver_cannot_share_the_state_db(receiver: ReceiverThread) -> None:
    with pytest.raises(RuntimeError, match="another swap-webhooks receiver"):
        DeliveryStore(receiver.settings.state_db)


def test_the_emulator_tokens_verify_with_pyjwt() -> None:
    """The emulator's stdlib signer and PyJWT agree (else every test above would be moot)."""
    token = sign_token({"a": 1, "exp": 4102444800}, "k" * 32)
    assert jwt.decode(token, "k" * 32, algorithms=["HS256"]) == {"a": 1, "exp": 4102444800}
