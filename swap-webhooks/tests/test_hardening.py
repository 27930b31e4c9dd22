"""The receiver under hostile input: slow clients, too many connections, old tokens, odd bodies.

The receiver runs with the uvicorn configuration ``swap-webhooks serve`` uses
(:func:`swap_webhooks.server.server_config`). No assertion here is on a duration: the slow
clients would need minutes to finish their requests, and what is checked is that the receiver
answered a real delivery while they were connected, then cut each of them off and counted it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import resource
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators.swap import post_webhook, webhook_payload
from swap_webhooks.commit import GroupCommit
from swap_webhooks.server import RESERVED_FILES, connection_cap
from swap_webhooks.verify import Delivery, Reason
from tests.support import (
    SECRET,
    STORE,
    ReceiverThread,
    fake_run_command,
    settings,
    wait_until,
)

RETURN = {"return_id": "ret_0001", "order_id": "5597137207520", "return_status": "Open"}
SLOW_HEADERS = (
    b"POST /webhooks/swap HTTP/1.1\r\nHost: receiver\r\nContent-Type: application/json\r\n"
    b"Content-Length: 300\r\n\r\n" + b"x" * 300
)
SLOW_BODY_HEAD = (
    b"POST /webhooks/swap HTTP/1.1\r\nHost: receiver\r\nContent-Type: application/json\r\n"
    b"Content-Length: 300\r\n\r\n"
)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverThread]:
    config = settings(
        tmp_path,
        fake_run_command(tmp_path / "runs.jsonl"),
        header_timeout_seconds=3,
        body_timeout_seconds=3,
        keep_alive_seconds=3,
    )
    with ReceiverThread(config) as server:
        yield server


def refusals(server: ReceiverThread) -> dict[str, int]:
    return dict(server.metrics()["deliveries"]["refused"])


class SlowClient:
    """A connection that sends ``request`` a byte at a time, after sending ``head`` at once."""

    def __init__(self, port: int, head: bytes, request: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setblocking(False)
        if head:
            self.sock.sendall(head)
        self.pending = request
        self.answer = b""
        self.closed = False

    def tick(self) -> None:
        """Send one more byte, unless the server has answered or closed the connection."""
        if self.closed:
            return
        if self.pending:
            try:
                self.sock.send(self.pending[:1])
                self.pending = self.pending[1:]
            except OSError:
                self.closed = True

    def read(self) -> None:
        try:
            data = self.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.answer += data
        else:
            self.closed = True
            self.sock.close()


class SlowClients:
    """Many slow clients, each sending a byte a second, driven by one thread."""

    def __init__(self, clients: list[SlowClient]) -> None:
        self.clients = clients
        self.ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-clients", daemon=True)

    def __enter__(self) -> SlowClients:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for client in self.clients:
            if not client.closed:
                client.sock.close()

    @property
    def open(self) -> int:
        return sum(not client.closed for client in self.clients)

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set() and self.open:
            if time.monotonic() >= next_tick:
                for client in self.clients:
                    client.tick()
                self.ticks += 1
                next_tick += 1.0
            readable = [c.sock for c in self.clients if not c.closed]
            ready, _, _ = select.select(readable, [], [], 0.2)
            for client in self.clients:
                if not client.closed and client.sock in ready:
                    client.read()


@pytest.mark.slow  # waits for the receiver's timeouts to cut connections off
def test_100_slow_connections_do_not_keep_a_delivery_from_being_answered(
    receiver: ReceiverThread,
) -> None:
    headers = [SlowClient(receiver.port, b"", SLOW_HEADERS) for _ in range(50)]
    bodies = [SlowClient(receiver.port, SLOW_BODY_HEAD, b"{" + b" " * 299) for _ in range(50)]
    with SlowClients(headers + bodies) as slow:
        wait_until(lambda: slow.ticks >= 1, what="the slow clients to start sending")
        open_before = slow.open
        result = post_webhook(receiver.url, webhook_payload(RETURN, "returnCreated", SECRET, STORE))
        open_after = slow.open
        wait_until(lambda: slow.open == 0, timeout=60, what="the slow clients to be cut off")

    assert result.status == 200
    assert open_before == open_after == 100, "the delivery was answered while all 100 were open"
    for client in headers + bodies:
        assert client.pending, "a slow client got to send its whole request"
        assert client.answer.startswith(b"HTTP/1.1 408 "), client.answer[:40]
    # Cut connections are counted in the next group commit, just after their answers.
    wait_until(lambda: refusals(receiver)["too_slow"] == 100, what="100 refusals counted")
    assert receiver.metrics()["deliveries"]["accepted"] == 1


def _request(body: bytes) -> bytes:
    return (
        b"POST /webhooks/swap HTTP/1.1\r\nHost: receiver\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


def _read_answer(conn: socket.socket) -> bytes:
    """One complete answer (headers and a Content-Length body) from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += conn.recv(4096)
    return head


@pytest.mark.slow  # waits for the receiver's timeouts to cut connections off
def test_kept_alive_connections_close_quietly_when_idle_and_408_when_slow(
    tmp_path: Path,
) -> None:
    config = settings(
        tmp_path,
        fake_run_command(tmp_path / "runs.jsonl"),
        header_timeout_seconds=1,
        keep_alive_seconds=1,
    )
    with ReceiverThread(config) as receiver:
        _idle_then_slow(receiver)


def _idle_then_slow(receiver: ReceiverThread) -> None:
    body = _json(webhook_payload(RETURN, "returnCreated", SECRET, STORE))
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=30) as idle:
        idle.sendall(_request(body))
        assert _read_answer(idle).startswith(b"HTTP/1.1 200 ")
        assert idle.recv(4096) == b"", "an idle kept-alive connection is closed without a word"
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=30) as slow:
        slow.sendall(_request(_json(webhook_payload(RETURN, "returnCreated", SECRET, STORE))))
        assert _read_answer(slow).startswith(b"HTTP/1.1 200 ")
        slow.sendall(b"POST /webhooks/swap HTTP/1.1\r\n")  # a next request that never ends
        assert slow.recv(4096).startswith(b"HTTP/1.1 408 ")
    wait_until(lambda: refusals(receiver)["too_slow"] == 1, what="the slow request counted")


def test_connections_beyond_the_cap_are_answered_503_and_closed(tmp_path: Path) -> None:
    config = settings(tmp_path, fake_run_command(tmp_path / "runs.jsonl"), max_connections=5)
    with ReceiverThread(config) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(5)]
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as extra:
                answer = extra.recv(4096)
                assert answer.startswith(b"HTTP/1.1 503 ")
                assert extra.recv(4096) == b"", "the connection over the cap stays open"
        finally:
            for conn in idle:
                conn.close()
        wait_until(lambda: refusals(server)["too_many_connections"] == 1, what="the count")
        payload = webhook_payload(RETURN, "returnCreated", SECRET, STORE)
        assert post_webhook(server.url, payload).status == 200


def test_a_token_issued_longer_ago_than_the_maximum_age_is_refused(
    receiver: ReceiverThread,
) -> None:
    """Valid signature, ``exp`` ten years away: still refused, by its ``iat``."""
    ten_years = 10 * 365 * 24 * 3600.0
    old = webhook_payload(
        RETURN, "returnCreated", SECRET, STORE, issued_at=time.time() - 400, ttl=ten_years
    )
    result = post_webhook(receiver.url, old)
    assert result.status == 401
    assert refusals(receiver)["too_old"] == 1

    fresh = webhook_payload(RETURN, "returnCreated", SECRET, STORE, ttl=ten_years)
    assert post_webhook(receiver.url, fresh).status == 200
    recent = webhook_payload(
        RETURN, "returnCreated", SECRET, STORE, issued_at=time.time() - 200
    )  # within Swap's 300 s
    assert post_webhook(receiver.url, recent).status == 200


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        pytest.param({"iat": 120}, "bad_signature", id="issued-in-the-future"),
        pytest.param({"nbf": 120}, "bad_signature", id="not-before-in-the-future"),
        pytest.param({"nbf": "soon"}, "malformed", id="not-before-not-a-time"),
    ],
)
def test_times_beyond_the_leeway_are_refused(
    receiver: ReceiverThread, claims: dict[str, Any], reason: str
) -> None:
    """The receiver checks the claims' times itself (PyJWT checks only the signature)."""
    now = int(time.time())
    times = {name: now + v if isinstance(v, int) else v for name, v in claims.items()}
    if "iat" in times:
        times["exp"] = times["iat"] + 300
    payload = webhook_payload(RETURN, "returnCreated", SECRET, STORE, extra_claims=times)
    result = post_webhook(receiver.url, payload)
    assert result.status in (400, 401)
    assert refusals(receiver)[reason] == 1


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("Application/JSON ;charset=UTF-8", 200),
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),
        ("application/jsonp", 415),
        (None, 415),
    ],
)
def test_only_json_is_accepted_and_refusals_are_counted(
    receiver: ReceiverThread, content_type: str | None, status: int
) -> None:
    body = _json(webhook_payload(RETURN, "returnCreated", SECRET, STORE))
    answer = _post(receiver.port, body, content_type)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:40]
    assert refusals(receiver)["unsupported_media_type"] == (1 if status == 415 else 0)


@pytest.mark.parametrize("where", ["body", "claims"])
def test_a_body_nested_too_deep_is_a_counted_400_not_a_500(
    receiver: ReceiverThread, where: str
) -> None:
    if where == "body":
        token = webhook_payload(RETURN, "returnCreated", SECRET, STORE)["jwt"]
        body = b'{"jwt": "' + token.encode() + b'", "extra": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    else:
        claims = {"iat": int(time.time()), "exp": int(time.time()) + 300, "nonce": "n"}
        token = _deep_token(claims)
        body = _json({"jwt": token})
    answer = _post(receiver.port, body, "application/json")
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:40]
    assert refusals(receiver)["too_deep"] == 1


def test_headers_growing_past_the_limit_are_a_counted_400(receiver: ReceiverThread) -> None:
    head = b"POST /webhooks/swap HTTP/1.1\r\nHost: receiver\r\nX-Padding: " + b"x" * 20000
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=30) as conn:
        conn.sendall(head)  # headers that keep coming, never ending
        answer = conn.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:40]
    wait_until(lambda: refusals(receiver)["malformed"] == 1, what="the refusal counted")


def test_connection_cap_fits_under_the_open_file_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """With 256 files and a hard limit that cannot be raised, fewer connections are let in."""
    config = settings(Path("/tmp"), ["true"], max_connections=256)
    monkeypatch.setattr(resource, "getrlimit", lambda _: (256, 256))
    monkeypatch.setattr(resource, "setrlimit", lambda *_: None)
    assert connection_cap(config) == 256 - RESERVED_FILES
    monkeypatch.setattr(resource, "getrlimit", lambda _: (256, 65536))
    assert connection_cap(config) == 256


def _deep_token(claims: dict[str, Any]) -> str:
    """A token whose payload JSON nests 5,000 deep (signed by hand: encoders refuse it)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = json.dumps(claims)[:-1] + ', "deep": ' + "[" * 5000 + "]" * 5000 + "}"
    signing_input = f"{head}.{b64(payload.encode())}"
    signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _post(port: int, body: bytes, content_type: str | None) -> bytes:
    head = b"POST /webhooks/swap HTTP/1.1\r\nHost: receiver\r\nConnection: close\r\n"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n".encode()
    head += b"Content-Length: %d\r\n\r\n" % len(body)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(head + body)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


class _RecordingStore:
    """A store that records its transactions (``add_many`` calls)."""

    def __init__(self, *, batches: bool) -> None:
        self.transactions: list[tuple[int, dict[str, int]]] = []
        self.nonces: set[str] = set()
        self.refused: dict[str, int] = {}
        if batches:
            self.add_many = self._add_many

    def _add_many(self, items: Any, refusals: Any) -> list[bool]:
        self.transactions.append((len(items), {r.key: n for r, n in refusals.items()}))
        time.sleep(0.005)  # an fsync: what arrives meanwhile waits for the next transaction
        for reason, count in refusals.items():
            self.refused[reason.key] = self.refused.get(reason.key, 0) + count
        return [self._insert(delivery.nonce) for delivery, _ in items]

    def add(self, delivery: Any, received_at: float) -> bool:
        self.transactions.append((1, {}))
        return self._insert(delivery.nonce)

    def count_refusal(self, reason: Any) -> None:
        self.transactions.append((0, {reason.key: 1}))
        self.refused[reason.key] = self.refused.get(reason.key, 0) + 1

    def _insert(self, nonce: str) -> bool:
        new = nonce not in self.nonces
        self.nonces.add(nonce)
        return new


@pytest.mark.parametrize("batches", [True, False])
def test_deliveries_arriving_together_share_commits(batches: bool) -> None:
    """200 deliveries and 50 refusals at once: each recorded once, in few transactions."""
    store = _RecordingStore(batches=batches)

    async def burst() -> list[bool]:
        commits = GroupCommit(store)
        deliveries = [_delivery(f"n{i % 190}") for i in range(200)]  # 10 redeliveries
        refusals = [commits.count_refusal(Reason.TOO_OLD) for _ in range(50)]
        results = await asyncio.gather(*(commits.add(d, 0.0) for d in deliveries), *refusals)
        return [r for r in results if r is not None]

    results = asyncio.run(burst())
    assert results.count(True) == 190
    assert results.count(False) == 10
    assert store.refused == {"too_old": 50}
    if batches:
        assert len(store.transactions) < 10
    else:  # an older store without add_many: one transaction each, still correct
        assert len(store.transactions) == 250


def _delivery(nonce: str) -> Delivery:
    return Delivery(
        nonce=nonce,
        event="returnCreated",
        return_id="ret_0001",
        order_id=None,
        store_id=STORE,
        issued_at=0.0,
        expires_at=0.0,
    )
