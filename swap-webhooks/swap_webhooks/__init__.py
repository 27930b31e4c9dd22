"""Swap Commerce webhook receiver: signed return webhooks trigger incremental pipeline runs.

Each accepted ``returnCreated``/``returnProcessed`` delivery leads to a ``meltano run
returns-to-klaviyo`` (coalesced with the others waiting, never two at once).

Swap's API stays the source of truth: the receiver keeps only a delivery's signed claims, and the
run reads the returns themselves. See the README for settings and the Meltano wiring.
"""

from __future__ import annotations

from swap_webhooks.app import WEBHOOK_PATH, create_app
from swap_webhooks.settings import Secret, Settings, SettingsError, load_settings
from swap_webhooks.store import DeliveryStore, webhook_latencies
from swap_webhooks.verify import Delivery, Reason, Refused, verify_delivery

#: The release; pyproject.toml reads it from here (hatch), `--about` shows it.
__version__ = "0.2.0.dev0"

__all__ = [
    "WEBHOOK_PATH",
    "Delivery",
    "DeliveryStore",
    "Reason",
    "Refused",
    "Secret",
    "Settings",
    "SettingsError",
    "__version__",
    "create_app",
    "load_settings",
    "verify_delivery",
    "webhook_latencies",
]
