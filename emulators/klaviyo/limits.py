"""Klaviyo's published limits: per-endpoint rate limits and payload ceilings.

Rate limits are those of each operation's ``x-klaviyo-ratelimit`` in Klaviyo's OpenAPI specs
(revision 2026-07-15); ``GET /api/segments`` is not among the shared specs and uses the figures of
the official SDK's documentation for that revision line (75/s, 750/m).
"""

from __future__ import annotations

from dataclasses import dataclass

KB = 1024
MB = 1024 * KB

MAX_PAYLOAD_BYTES = 5 * MB
MAX_STRING_BYTES = 100 * KB
MAX_EVENTS_PER_REQUEST = 1_000
MAX_EVENT_PROPERTIES = 400
MAX_METRIC_NAME_CHARS = 127  # "must be less than 128 characters"
MAX_PROFILES_PER_IMPORT = 10_000
MAX_PROFILE_BYTES = 100 * KB
MAX_VARIANTS_PER_JOB = 100
MAX_FILTER_LIST_VALUES = 100
EARLIEST_EVENT_YEAR = 1990
LATEST_EVENT_DAYS_AHEAD = 365


@dataclass(frozen=True)
class RateLimit:
    """Burst per second, steady per minute and, for a few endpoints, a daily cap."""

    burst: int
    steady: int
    daily: int | None = None

    def windows(self) -> list[tuple[int, float]]:
        windows = [(self.burst, 1.0), (self.steady, 60.0)]
        if self.daily is not None:
            windows.append((self.daily, 86_400.0))
        return windows


XS_SEGMENT_CREATE = RateLimit(1, 15, daily=100)
M = RateLimit(10, 150)
L = RateLimit(75, 750)
XL = RateLimit(350, 3500)

# Keyed by "METHOD /path/pattern", the same key as the per-endpoint request counters.
RATE_LIMITS: dict[str, RateLimit] = {
    "POST /api/event-bulk-create-jobs": M,
    "POST /api/profile-bulk-import-jobs": M,
    "GET /api/profile-bulk-import-jobs/{job_id}": M,
    "GET /api/profile-bulk-import-jobs/{job_id}/import-errors": M,
    "POST /api/catalog-variant-bulk-update-jobs": L,
    "GET /api/catalog-variant-bulk-update-jobs/{job_id}": L,
    "GET /api/catalog-variants": XL,
    "GET /api/catalog-variants/{variant_id}": XL,
    "GET /api/profiles": L,
    "POST /api/segments": XS_SEGMENT_CREATE,
    "GET /api/segments": L,
    "GET /api/segments/{segment_id}": L,
}

# get_profiles.json: asking for predictive analytics moves the request to a smaller bucket.
PROFILES_WITH_PREDICTIVE_ANALYTICS = "GET /api/profiles predictive_analytics"
RATE_LIMITS[PROFILES_WITH_PREDICTIVE_ANALYTICS] = M
