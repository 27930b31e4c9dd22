"""Where tests find the repository, the shared reference files, and the Swap data's clock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from emulators.pytest_plugin import SWAP_NOW

REPO = Path(__file__).resolve().parents[2]
#: Swap's API contract and Klaviyo's OpenAPI specs: SWAP_KLAVIYO_SHARED, else ../shared beside the
#: repository. A missing file fails the test that needs it (never a skip).
SHARED = Path(os.environ.get("SWAP_KLAVIYO_SHARED") or REPO.parent / "shared")

#: ``SWAP_NOW``: the fixed end of the Swap data set's history (the emulators' ``swap`` fixture).
__all__ = ["REPO", "SHARED", "SWAP_NOW", "shared_file"]


def shared_file(name: str) -> Path:
    """A file of the shared reference material; fail clearly if absent."""
    path = SHARED / name
    if not path.exists():
        pytest.fail(
            f"{path} is missing: the tests read the shared reference material (the Swap API "
            "contract and Klaviyo's OpenAPI specs) from SWAP_KLAVIYO_SHARED, else ../shared"
        )
    return path
