"""A page whose ``pagination`` block cannot be read stops the run loudly, by name, and only once.

An unreadable return is set aside and its page goes on; an unreadable paging block cannot be
paged past: the tap cannot tell the last page from one more. The run must fail with one clear
line naming the request (path and paging parameters, never the key or store) and the field,
deliver nothing of that page, write no STATE past what it delivered, and not ask again.

A stub of Swap's list endpoint (standard library only) serves a good first page, then the bad one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tap_swapcommerce.pages import PageError, has_next_page, read_page

API_KEY = "stub_paging_key"
STORE = "stub_paging_store"
HUGE = "7" * 5000
GOOD_PAGINATION = (
    '{"page":1,"items_per_page":2,"total_pages":2,"total_items":3,"has_next_page":true}'
)
#: After this many requests the stub answers 400, so a tap that would loop ends the test anyway.
MAX_REQUESTS = 6


def a_return(number: int, updated: str) -> dict[str, Any]:
    return {
        "return_id": f"ret_{number}",
        "date_updated": updated,
        "customer_email": f"paging{number}@example.com",
        "return_shipments": [],
    }


FIRST = json.dumps([a_return(1, "2026-01-01T00:00:00Z"), a_return(2, "2026-01-01T00:01:00Z")])
SECOND = json.dumps([a_return(3, "2026-01-01T00:02:00Z")])


class Stub(ThreadingHTTPServer):
    """Serves the good first page, then ``bad_page`` for every later request."""

    def __init__(self, bad_page: str) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.bad_page = bad_page
        self.requests: list[str] = []


class Handler(BaseHTTPRequestHandler):
    server: Stub

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        count = len(self.server.requests)
        if count == 1:
            status, body = 200, f'{{"returns":{FIRST},"pagination":{GOOD_PAGINATION}}}'
        elif count <= MAX_REQUESTS:
            status, body = 200, self.server.bad_page
        else:
            status, body = 400, '{"statusCode":400,"message":"stub: too many requests"}'
        data = body.encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test output is pytest's."""


@contextmanager
def stub(bad_page: str) -> Iterator[Stub]:
    server = Stub(bad_page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def run_tap(server: Stub, tmp_path: Path) -> tuple[int, list[dict[str, Any]], str]:
    config = {
        "api_url": f"http://127.0.0.1:{server.server_address[1]}",
        "api_key": API_KEY,
        "store_id": STORE,
        "start_date": "2025-12-31T00:00:00Z",
        "lookback_minutes": 0,
        "page_size": 2,
    }
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    command = [sys.executable, "-m", "tap_swapcommerce.tap", "--config", str(config_file)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    messages = [json.loads(line) for line in result.stdout.splitlines()]
    return result.returncode, messages, result.stderr


BAD_PAGES = {
    "a 5,000-digit count": (
        '{"returns":' + SECOND + ',"pagination":{"page":1,"total_items":' + HUGE + "}}",
        "pagination.total_items",
        "a number of 5000 digits",
    ),
    "a 5,000-digit cursor": (
        '{"returns":' + SECOND + ',"pagination":{"page":' + HUGE + ',"has_next_page":true}}',
        "pagination.page",
        "a number of 5000 digits",
    ),
    "a number for has_next_page": (
        '{"returns":' + SECOND + ',"pagination":{"page":2,"has_next_page":' + "9" * 40 + "}}",
        "pagination.has_next_page",
        "expected true or false, got a number",
    ),
    "a string for has_next_page": (
        '{"returns":' + SECOND + ',"pagination":{"page":2,"has_next_page":"false"}}',
        "pagination.has_next_page",
        "expected true or false, got a string",
    ),
    "no pagination block": (
        '{"returns":' + SECOND + "}",
        "pagination",
        "expected an object, got missing",
    ),
}


@pytest.mark.parametrize("case", list(BAD_PAGES))
def test_the_page_reader_names_the_paging_field_and_never_its_value(case: str) -> None:
    bad_page, field, problem = BAD_PAGES[case]
    with pytest.raises(PageError) as raised:
        has_next_page(read_page(bad_page.encode()).body)
    assert raised.value.field == field
    assert str(raised.value).startswith(f"field '{field}': {problem}")
    assert HUGE[:40] not in str(raised.value)


def test_a_deep_paging_block_is_named_too() -> None:
    deep = "[" * 1500 + "]" * 1500
    page = '{"returns":' + SECOND + ',"pagination":{"page":1,"cursor":' + deep + "}}"
    with pytest.raises(PageError) as raised:
        read_page(page.encode())
    assert raised.value.field == "pagination.cursor"
    assert "nested about" in raised.value.problem


def test_a_readable_paging_block_pages_on() -> None:
    page = read_page(f'{{"returns":{FIRST},"pagination":{GOOD_PAGINATION}}}'.encode())
    assert has_next_page(page.body) is True
    assert [row["return_id"] for row in page.rows] == ["ret_1", "ret_2"]


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_PAGES))
def test_an_unreadable_paging_block_fails_the_run_by_name(case: str, tmp_path: Path) -> None:
    bad_page, field, problem = BAD_PAGES[case]
    with stub(bad_page) as server:
        code, messages, stderr = run_tap(server, tmp_path)
        requests = list(server.requests)

    assert code != 0, "the run went on past a page it cannot page past"
    assert len(requests) == 2, f"the tap asked again after the bad page: {requests}"
    error = [line for line in stderr.splitlines() if "cannot page past" in line]
    assert error, stderr[-2000:]
    where = "GET /v2/external/returns?last_RMA_updated_date=2026-01-01T00:01:00Z&page=1"
    assert f"({where}): field '{field}': {problem}" in error[0]
    for secret in (API_KEY, STORE, HUGE[:40], "paging3@example.com"):
        assert secret not in stderr

    delivered = [m["record"]["return_id"] for m in messages if m["type"] == "RECORD"]
    assert delivered == ["ret_1", "ret_2"], "nothing of the unreadable page may be delivered"
    for message in messages:
        if message["type"] == "STATE":
            bookmark = message["value"].get("bookmarks", {}).get("returns", {})
            assert "2026-01-01T00:02" not in json.dumps(bookmark)
