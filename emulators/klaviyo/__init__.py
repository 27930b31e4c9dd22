"""Loopback emulator of Klaviyo's API for the endpoints target-klaviyo uses.

Requests are validated with Klaviyo's official request models (the ``klaviyo-api`` package) plus
the limits Klaviyo documents beside its schemas; accepted data is applied the way Klaviyo applies
it (event deduplication, profile upserts with ``patch_properties``, asynchronous jobs).
"""

from __future__ import annotations

from emulators.klaviyo.cli import add_klaviyo_arguments, klaviyo_from_args
from emulators.klaviyo.server import KlaviyoEmulator

__all__ = ["KlaviyoEmulator", "add_klaviyo_arguments", "klaviyo_from_args"]
