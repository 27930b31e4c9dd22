"""Running Klaviyo's asynchronous jobs later, in an order clients must not rely on.

Klaviyo queues bulk profile imports and catalog variant updates and applies them some time after
the 202; two jobs touching the same profile or variant may complete in either order. Each job
here runs on a timer after ``job_delay`` (shortened by ``time_scale``) with a seeded +/-50%
jitter, so a client that overlaps jobs sees them land out of order, as it could in production.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable


class JobScheduler:
    """Runs each job once, later, on a daemon timer; cancels pending ones on reset or stop."""

    def __init__(self, delay: float, *, time_scale: float = 1.0, seed: int = 0) -> None:
        self.delay = delay / time_scale
        self._random = random.Random(seed)
        self._timers: set[threading.Timer] = set()
        self._lock = threading.Lock()

    def schedule(self, run: Callable[[], None]) -> None:
        with self._lock:
            delay = self.delay * self._random.uniform(0.5, 1.5)
            timer = threading.Timer(delay, self._fire, args=(run,))
            timer.daemon = True
            self._timers.add(timer)
        timer.args = (run, timer)
        timer.start()

    def _fire(self, run: Callable[[], None], timer: threading.Timer) -> None:
        with self._lock:
            if timer not in self._timers:
                return  # cancelled by a reset or stop that raced with the timer
            self._timers.discard(timer)
        run()

    def cancel_all(self) -> None:
        with self._lock:
            timers = list(self._timers)
            self._timers.clear()
        for timer in timers:
            timer.cancel()
        for timer in timers:
            if timer.is_alive() and timer is not threading.current_thread():
                timer.join(timeout=5)
