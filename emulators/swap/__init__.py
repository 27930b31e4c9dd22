"""Emulator of Swap Commerce's Returns API (see ``server`` for the HTTP side)."""

from __future__ import annotations

from emulators.swap.catalog import catalog, catalog_skus
from emulators.swap.cli import add_swap_arguments, swap_from_args
from emulators.swap.lifecycle import (
    DELIVERY_STATUSES,
    OPEN_STATUSES,
    QUALITY_CONTROL_STATUSES,
    RETURN_STATUSES,
    RETURN_TYPES,
    Stage,
)
from emulators.swap.raw import RawJSON
from emulators.swap.server import LIST_PATH, SwapEmulator
from emulators.swap.webhooks import (
    TOPICS,
    WebhookResult,
    WebhookSender,
    create_return_and_notify,
    post_webhook,
    sign_token,
    webhook_payload,
)

__all__ = [
    "DELIVERY_STATUSES",
    "LIST_PATH",
    "OPEN_STATUSES",
    "QUALITY_CONTROL_STATUSES",
    "RETURN_STATUSES",
    "RETURN_TYPES",
    "TOPICS",
    "RawJSON",
    "Stage",
    "SwapEmulator",
    "WebhookResult",
    "WebhookSender",
    "add_swap_arguments",
    "catalog",
    "catalog_skus",
    "create_return_and_notify",
    "post_webhook",
    "sign_token",
    "swap_from_args",
    "webhook_payload",
]
