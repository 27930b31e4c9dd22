"""``python -m swap_brands``: the same as the ``swap-brands`` command."""

from __future__ import annotations

import sys

from swap_brands.cli import main

sys.exit(main())
