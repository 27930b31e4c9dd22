"""Fixtures of tests/webhooks: ``pipeline`` (both emulators and a Meltano of its own), defined in
``tests.support.pipeline``, where the tests also import its ``Pipeline`` type from."""

from __future__ import annotations

from tests.support.pipeline import pipeline

__all__ = ["pipeline"]
