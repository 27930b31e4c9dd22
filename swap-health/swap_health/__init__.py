"""The project's health report: target-klaviyo's report, with the latency from Swap's webhooks.

target-klaviyo is a generic Klaviyo loader: its report reads only its own ledger. This package
of the project layer joins that ledger with the swap-webhooks receiver's deliveries (neither
plugin imports the other) and hands the result to the target's report.
"""

from __future__ import annotations

from swap_health.webhooks import WebhooksDbError, load_webhook_latency, webhook_latency

__version__ = "0.2.0.dev0"

__all__ = ["WebhooksDbError", "__version__", "load_webhook_latency", "webhook_latency"]
