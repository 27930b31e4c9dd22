"""Fixtures of tests/webhooks; the helpers live in ``tests.support.pipeline``."""

from __future__ import annotations

from tests.support.pipeline import (
    KLAVIYO_KEY,
    Pipeline,
    pipeline,
)

#: Fixtures, and the helpers for tests still importing them from here.
__all__ = [
    "KLAVIYO_KEY",
    "Pipeline",
    "pipeline",
]
