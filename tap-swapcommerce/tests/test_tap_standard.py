"""singer-sdk's standard tap tests, against a stub of Swap's Returns API serving a fixed page.

The stub needs nothing beyond the standard library, so these tests run from this folder with only
the tap installed (``pip install 'tap-swapcommerce[test]'``). ``fixtures/returns.json`` holds 40
generated returns (fake people, fake stores) with refunds and restocks; the stub adds one return
the tap cannot read (a lone surrogate in its e-mail), so ``integration_exceptions`` has a record
too and the standard tests check it as they check every stream (with no record they would pass
without checking anything). Paging, retries, incremental reads and setting aside are tested
against the Swap emulator (``test_tap.py``, ``test_quarantine.py``).
"""

from __future__ import annotations

import atexit
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from singer_sdk.testing import SuiteConfig, get_tap_test_class

from tap_swapcommerce.tap import TapSwapCommerce

PAGE = (Path(__file__).with_name("fixtures") / "returns.json").read_bytes()
#: Set aside as ``unreadable_record``: a lone surrogate in an e-mail cannot be encoded.
UNREADABLE = (
    b'{"return_id": "ret_unreadable", "date_updated": "2026-05-31T07:00:00.000Z",'
    b' "customer_email": "lone\\ud83d@example.com", "return_shipments": []}'
)
#: Every return of the fixture, then the unreadable one, on the only page.
BODY = (
    PAGE.rstrip().removesuffix(b"}").rstrip().removesuffix(b"]")
    + b", "
    + UNREADABLE
    + b'], "pagination": {"has_next_page": false}}\n'
)
API_KEY = "stub_key"


class StubSwap(BaseHTTPRequestHandler):
    """One page holding every return, for the right key; 401 otherwise."""

    def do_GET(self) -> None:
        if self.headers.get("x-api-key") != API_KEY:
            self.send_error(401)
            return
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test output is pytest's."""


# The SDK builds its test class from a config at import time, so the stub starts here.
_server = ThreadingHTTPServer(("127.0.0.1", 0), StubSwap)
threading.Thread(target=_server.serve_forever, daemon=True).start()
atexit.register(_server.server_close)
atexit.register(_server.shutdown)

TestTapSwapCommerce = get_tap_test_class(
    TapSwapCommerce,
    config={
        "api_url": f"http://127.0.0.1:{_server.server_address[1]}",
        "api_key": API_KEY,
        "store_id": "s",
        "start_date": "2020-01-01T00:00:00Z",
    },
    suite_config=SuiteConfig(max_records_limit=None),
)
