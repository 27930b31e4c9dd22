from __future__ import annotations

import sys

from swap_webhooks.cli import main

sys.exit(main())
