"""The orchestration package's pure parts (``pipeline.py``) are tested from the project's venv.

Dagster itself is only in ``orchestration/.venv``; ``swap_orchestration.pipeline`` imports
nothing of it, so the package folder is put on the path here.
"""

from __future__ import annotations

import sys

from tests.support.shared import REPO

if str(REPO / "orchestration") not in sys.path:
    sys.path.insert(0, str(REPO / "orchestration"))
