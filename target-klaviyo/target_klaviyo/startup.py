"""singer_sdk imported once, without numpy: every run starts about 0.2 CPU seconds sooner.

singer_sdk imports joblib (for its threaded sink drains), and joblib imports numpy whenever it is
installed, to hand arrays to worker processes through memory maps. target-klaviyo never gives
joblib an array, yet numpy is in its virtualenv (the report extra's matplotlib needs it), so each
run and each ``klaviyo-ops`` command paid for importing it. joblib supports running without numpy
(its ``np = None`` paths); numpy is hidden only while singer_sdk is first imported, and the
report imports it normally afterwards. The package's ``__init__`` imports this module first.
"""

from __future__ import annotations

import sys


def import_singer_sdk_without_numpy() -> None:
    """Import singer_sdk with numpy hidden, unless either is imported already."""
    if "singer_sdk" in sys.modules or "numpy" in sys.modules:
        return
    sys.modules["numpy"] = None  # type: ignore[assignment]  # import numpy: ImportError
    try:
        import singer_sdk  # noqa: F401, PLC0415 - the point of this module
    finally:
        hidden = sys.modules.pop("numpy", None)
        if hidden is not None:  # a real numpy imported meanwhile: keep it
            sys.modules["numpy"] = hidden


import_singer_sdk_without_numpy()
