"""singer-sdk's standard tap tests, run against a Swap emulator on loopback."""

from __future__ import annotations

import atexit

from singer_sdk.testing import SuiteConfig, get_tap_test_class

from emulators.swap import RawJSON, SwapEmulator
from tap_swapcommerce.tap import TapSwapCommerce
from tests.conftest import SWAP_NOW

# The SDK builds its test class from a config at import time, so the emulator starts here.
_swap = SwapEmulator(
    returns=120, seed=4, now=SWAP_NOW, api_key="k", store_id="s", rate_limit_per_minute=None
).start()
atexit.register(_swap.stop)
# A return the tap cannot read (a 5,000-digit total): the integration_exceptions stream gets a
# record, so the SDK's tests check that stream's records against its schema too.
_swap.create_return(total=RawJSON("9" * 5000))

TestTapSwapCommerce = get_tap_test_class(
    TapSwapCommerce,
    config={
        "api_url": _swap.url,
        "api_key": "k",
        "store_id": "s",
        "start_date": "2020-01-01T00:00:00Z",
        "page_size": 40,
    },
    suite_config=SuiteConfig(max_records_limit=None),
)
