"""tap-swapcommerce: Swap Commerce returns, returned lines, refunds and restocks."""

from __future__ import annotations

from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecWriter

from tap_swapcommerce.quarantine import IntegrationExceptionsStream
from tap_swapcommerce.streams import (
    RefundsStream,
    RestocksStream,
    ReturnItemsStream,
    ReturnsStream,
)

SWAP_PRODUCTION_URL = "https://api-gateway.swap-os.com/returns-api"


class TapSwapCommerce(Tap):
    """Reads the Swap Returns API (``GET /v2/external/returns``) incrementally."""

    name = "tap-swapcommerce"
    message_writer_class = MsgSpecWriter

    config_jsonschema = th.PropertiesList(
        th.Property(
            "api_url",
            th.URIType,
            default=SWAP_PRODUCTION_URL,
            title="API URL",
            description="Base URL of the Swap Returns API.",
        ),
        th.Property(
            "api_key",
            th.StringType(min_length=1),
            required=True,
            secret=True,
            title="API key",
            description="Swap Returns API key, sent as X-API-Key.",
        ),
        th.Property(
            "store_id",
            th.StringType(min_length=1),
            required=True,
            title="Store ID",
            description="Swap store id (swap_store_id).",
        ),
        th.Property(
            "start_date",
            th.DateTimeType,
            title="Start date",
            description="Earliest return update to sync when there is no bookmark yet.",
        ),
        th.Property(
            "lookback_minutes",
            th.IntegerType(minimum=0),
            default=15,
            title="Lookback (minutes)",
            description="Re-read this many minutes before the bookmark, to catch late commits.",
        ),
        th.Property(
            "page_size",
            th.IntegerType(minimum=1, maximum=100),
            default=100,
            title="Page size",
            description="Returns per request (Swap allows at most 100).",
        ),
    ).to_dict()

    def discover_streams(self) -> list[Stream]:
        returns = ReturnsStream(self)
        exceptions = IntegrationExceptionsStream(self)
        returns.quarantine = exceptions  # what returns sets aside is written through it
        return [
            returns,
            ReturnItemsStream(self),
            RefundsStream(self),
            RestocksStream(self),
            exceptions,
        ]


if __name__ == "__main__":
    TapSwapCommerce.cli()
