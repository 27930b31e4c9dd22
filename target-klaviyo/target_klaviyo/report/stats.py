"""The small statistics the report needs: nearest-rank percentiles and time buckets.

Nearest-rank percentiles are used so that every latency shown is one an actual event had, which
is what a person can look up; interpolated values would describe no event at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from target_klaviyo.report.data import AcceptedSeries, LatencyStats

#: Bucket sizes, the longest window each suits (a readable number of bars), and their names.
_BUCKETS = (
    (timedelta(hours=1), timedelta(days=3), "hour"),
    (timedelta(days=1), timedelta(days=120), "day"),
    (timedelta(weeks=1), timedelta.max, "week"),
)


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of values sorted ascending (``fraction`` in 0..1)."""
    if not sorted_values:
        msg = "percentile of no values"
        raise ValueError(msg)
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_stats(sorted_seconds: Sequence[float]) -> LatencyStats | None:
    if not sorted_seconds:
        return None
    return LatencyStats(
        count=len(sorted_seconds),
        median=timedelta(seconds=percentile(sorted_seconds, 0.5)),
        p95=timedelta(seconds=percentile(sorted_seconds, 0.95)),
        worst=timedelta(seconds=sorted_seconds[-1]),
    )


def _floor(moment: datetime, size: timedelta) -> datetime:
    if size >= timedelta(weeks=1):
        day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        return day - timedelta(days=day.weekday())
    if size >= timedelta(days=1):
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def bucket_series(
    points: Iterable[tuple[str, datetime]], *, order: Sequence[str]
) -> AcceptedSeries | None:
    """Count ``(metric, time)`` points per metric in hour, day or week buckets, gaps included.

    The bucket grows with the window so that a chart has tens of bars, not thousands; empty
    buckets stay in, so a quiet day shows as a gap rather than disappearing.
    """
    points = list(points)
    if not points:
        return None
    first = min(t for _, t in points)
    last = max(t for _, t in points)
    size, name = next((s, n) for s, limit, n in _BUCKETS if last - first <= limit)
    start = _floor(first, size)
    count = int((_floor(last, size) - start) / size) + 1
    counts = {metric: [0] * count for metric in order}
    for metric, moment in points:
        counts.setdefault(metric, [0] * count)[int((_floor(moment, size) - start) / size)] += 1
    return AcceptedSeries(
        bucket=name,
        starts=tuple(start + i * size for i in range(count)),
        counts={metric: tuple(values) for metric, values in counts.items()},
    )
