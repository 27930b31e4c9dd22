"""Klaviyo-looking ids (26 characters of Crockford base32, like ``01GDDKASAP8TKDDA2GRZDSVP4H``).

Drawn from a seeded generator so that two runs with the same seed hand out the same ids, which
keeps demo output and failing test logs reproducible.
"""

from __future__ import annotations

import random
import threading

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class IdFactory:
    """Thread-safe, seeded source of resource ids."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def new(self) -> str:
        with self._lock:
            bits = self._random.getrandbits(120)
        return "01" + "".join(_ALPHABET[(bits >> shift) & 31] for shift in range(0, 120, 5))
