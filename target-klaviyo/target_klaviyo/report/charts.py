"""Charts as inline SVG, drawn by matplotlib without a display, so the page needs no network.

The report is one file a person can open offline or attach to a ticket: charts are vector SVG
embedded in the HTML, their text kept as text (readable, searchable, sharp when zoomed), and each
chart's element ids salted with its name so two charts on one page never share a clip path.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit: the report runs on servers and in CI

import matplotlib.dates as mdates  # (after choosing the backend)
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

from target_klaviyo.report.data import AcceptedSeries, LatencyStats
from target_klaviyo.report.formatting import duration

#: Colour-blind-safe palette (Okabe-Ito), in the order metrics are ranked.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
)
INK = "#1f2933"
GRID = "#d9e2ec"
_STYLE: dict[str, Any] = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial", "Helvetica"],
    "font.size": 10,
    "text.color": INK,
    "axes.labelcolor": INK,
    "axes.edgecolor": GRID,
    "xtick.color": INK,
    "ytick.color": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    # Metric names are data: "$" in one must not start matplotlib's math mode.
    "text.parse_math": False,
    "timezone": "UTC",
}
_PROLOGUE = re.compile(r"\A.*?(?=<svg\b)", re.DOTALL)
_SIZE_ATTRS = re.compile(r'\s(width|height)="[^"]*pt"')
#: The RDF block naming matplotlib as creator: no use to a reader, and it carries outside URLs.
_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.DOTALL)


@contextmanager
def _style(salt: str) -> Iterator[None]:
    style: Any = {**_STYLE, "svg.hashsalt": salt}  # (matplotlib types rc keys as literals)
    with matplotlib.rc_context(style):
        yield


def _to_svg(figure: Figure, title: str) -> str:
    """The figure as an ``<svg>`` element that scales to its container.

    Its fixed size in points goes (the page's CSS sizes it), and so does matplotlib's metadata
    block; a label for screen readers comes.
    """
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    svg = _PROLOGUE.sub("", buffer.getvalue(), count=1)
    svg = _SIZE_ATTRS.sub("", svg, count=2)
    svg = _METADATA.sub("", svg, count=1)
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{_attr(title)}" ', 1)
    return svg.strip()


def _attr(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )


def accepted_chart(series: AcceptedSeries) -> str:
    """Stacked bars of events accepted per metric per bucket."""
    with _style("accepted"):
        figure = Figure(figsize=(10, 3.6), layout="constrained")
        axes = figure.subplots()
        width = {"hour": 1 / 24, "day": 1.0, "week": 7.0}[series.bucket] * 0.85
        x = mdates.date2num(list(series.starts))  # type: ignore[no-untyped-call]
        bottom = np.zeros(len(series.starts))
        handles, labels = [], []
        for index, (metric, counts) in enumerate(series.counts.items()):
            values = np.array(counts, dtype=float)
            bars = axes.bar(
                x,
                values,
                width=width,
                bottom=bottom,
                align="edge",
                color=PALETTE[index % len(PALETTE)],
                edgecolor="white",
                linewidth=0.4,
            )
            bottom += values
            handles.append(bars)
            labels.append(f"{metric} ({int(values.sum())})")
        axes.xaxis_date()
        locator = mdates.AutoDateLocator(minticks=3, maxticks=10)  # type: ignore[no-untyped-call]
        axes.xaxis.set_major_locator(locator)
        formatter = mdates.ConciseDateFormatter(locator)  # type: ignore[no-untyped-call]
        axes.xaxis.set_major_formatter(formatter)
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(f"events per {series.bucket}")
        axes.grid(axis="y", color=GRID, linewidth=0.8)
        axes.set_axisbelow(True)
        axes.legend(
            handles,
            labels,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            frameon=False,
            title="Metric",
            alignment="left",
        )
        return _to_svg(figure, f"Events accepted by Klaviyo per metric, per {series.bucket}")


#: Round durations for a logarithmic latency axis: 10 s, 30 s, 1 min, ... 1 week.
_LOG_TICKS = (10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400, 172800, 604800)
#: Units for the latency axis, chosen by the worst latency so tick labels stay short.
_UNITS = ((120.0, 1.0, "seconds"), (7200.0, 60.0, "minutes"), (172800.0, 3600.0, "hours"))


def latency_chart(sorted_seconds: Sequence[float], stats: LatencyStats) -> str:
    """A histogram of latencies with the median and p95 marked.

    When the slowest events are far slower than the typical one (a replay days later), a linear
    axis would squash everything else into one bar, so the axis turns logarithmic.
    """
    values = np.array(sorted_seconds, dtype=float)
    worst = float(values.max())
    with _style("latency"):
        figure = Figure(figsize=(10, 3.2), layout="constrained")
        axes = figure.subplots()
        positive = values[values > 0]
        wide = positive.size > 0 and worst / max(float(positive.min()), 1.0) > 100
        if wide:
            low = max(float(positive.min()), 1.0)
            bins = np.geomspace(low, worst * 1.01, 30).tolist()
            axes.set_xscale("log")
            axes.hist(np.clip(values, low, None), bins=bins, color=PALETTE[0], edgecolor="white")
            axes.xaxis.set_major_locator(
                FixedLocator([t for t in _LOG_TICKS if low <= t <= worst * 1.01])
            )
            axes.xaxis.set_minor_locator(NullLocator())
            axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _tick(v)))
            axes.set_xlabel("time from the Swap update to Klaviyo's acceptance (log scale)")
            marks = {
                "median": stats.median.total_seconds(),
                "p95": stats.p95.total_seconds(),
            }
        else:
            scale, unit = next(((sc, u) for lim, sc, u in _UNITS if worst < lim), (86400.0, "days"))
            scaled = values / scale
            edges = np.histogram_bin_edges(scaled, bins="auto")
            if len(edges) > 41:
                edges = np.linspace(float(scaled.min()), float(scaled.max()), 41)
            axes.hist(scaled, bins=edges.tolist(), color=PALETTE[0], edgecolor="white")
            axes.set_xlabel(f"time from the Swap update to Klaviyo's acceptance ({unit})")
            marks = {
                "median": stats.median.total_seconds() / scale,
                "p95": stats.p95.total_seconds() / scale,
            }
        median_label, p95_label = _mark("median", stats.median), _mark("p95", stats.p95)
        axes.axvline(marks["median"], color=PALETTE[2], linewidth=2, label=median_label)
        axes.axvline(marks["p95"], color=PALETTE[5], linewidth=2, linestyle="--", label=p95_label)
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel("events")
        axes.grid(axis="y", color=GRID, linewidth=0.8)
        axes.set_axisbelow(True)
        axes.legend(loc="upper right", frameon=False)
        return _to_svg(figure, "Histogram of latency from Swap update to Klaviyo acceptance")


def _tick(seconds: float) -> str:
    """``60`` -> ``1 min``: round ticks read as words, not as ``1m 00s``."""
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def _mark(name: str, value: timedelta) -> str:
    return f"{name} {duration(value.total_seconds())}"
