from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from target_klaviyo.report.formatting import duration
from target_klaviyo.report.stats import bucket_series, latency_stats, percentile

T = datetime(2025, 3, 3, 9, 30, tzinfo=timezone.utc)


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 21)]
    assert percentile(values, 0.5) == 10
    assert percentile(values, 0.95) == 19
    assert percentile(values, 1.0) == 20
    assert percentile([7.0], 0.95) == 7
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)


def test_latency_stats():
    stats = latency_stats([5.0, 10.0, 60.0, 3600.0])
    assert stats is not None
    assert (stats.count, stats.median, stats.p95, stats.worst) == (
        4,
        timedelta(seconds=10),
        timedelta(seconds=3600),
        timedelta(seconds=3600),
    )
    assert latency_stats([]) is None


def test_hourly_buckets_keep_empty_hours():
    points = [("A", T), ("B", T + timedelta(minutes=20)), ("A", T + timedelta(hours=3))]
    series = bucket_series(points, order=["A", "B"])
    assert series is not None
    assert series.bucket == "hour"
    assert series.starts[0] == T.replace(minute=0)
    assert len(series.starts) == 4
    assert series.counts == {"A": (1, 0, 0, 1), "B": (1, 0, 0, 0)}


def test_longer_windows_use_days_then_weeks():
    days = bucket_series([("A", T), ("A", T + timedelta(days=10))], order=["A"])
    assert days is not None
    assert days.bucket == "day"
    assert len(days.starts) == 11
    weeks = bucket_series([("A", T), ("A", T + timedelta(days=200))], order=["A"])
    assert weeks is not None
    assert weeks.bucket == "week"
    assert weeks.starts[0].weekday() == 0
    assert sum(weeks.counts["A"]) == 2
    assert bucket_series([], order=[]) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.25, "0.2s"),
        (42, "42s"),
        (125, "2m 05s"),
        (5400, "1h 30m"),
        (93784, "1d 02h"),
        (None, "—"),
    ],
)
def test_duration(seconds, text):
    assert duration(seconds) == text
