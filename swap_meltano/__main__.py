from __future__ import annotations

import sys

from swap_meltano.launcher import main

sys.exit(main())
