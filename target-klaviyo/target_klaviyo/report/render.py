"""The HTML page: one self-contained file (inline CSS and SVG, no script, no network).

A brand's CX lead opens it from an email attachment or a shared drive, possibly offline, so
nothing may be fetched: no CDN stylesheet, no web font, no chart library. Jinja2 autoescapes every
value; only the SVG that :mod:`charts` drew from already-masked data is inserted as markup.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from target_klaviyo.report import formatting as fmt
from target_klaviyo.report.charts import accepted_chart, latency_chart
from target_klaviyo.report.data import MISMATCH_REASONS, ReportData, TriggerLatency
from target_klaviyo.report.guidance import guidance
from target_klaviyo.report.queries import load_report_data


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("target_klaviyo.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["duration"] = fmt.duration
    env.filters["timestamp"] = fmt.timestamp
    env.filters["number"] = fmt.number
    return env


def render_html(data: ReportData) -> str:
    """The page for ``data`` (charts drawn here, so ReportData stays plain figures)."""
    charts: dict[str, Markup] = {}
    if data.series is not None:
        charts["accepted"] = Markup(accepted_chart(data.series))  # noqa: S704 (our SVG)
    if data.latency is not None:
        charts["latency"] = Markup(  # noqa: S704 (our SVG, drawn from masked data)
            latency_chart(data.latency_seconds, data.latency)
        )
    template = _environment().get_template("report.html.j2")
    return template.render(
        data=data,
        charts=charts,
        mismatch_guidance={reason: guidance(reason) for reason in MISMATCH_REASONS},
    )


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` in one step, so a browser or a mail job never reads half a page.

    A path that is not a regular file (``/dev/null``, a pipe) is written in place: renaming a
    temporary file over it would replace the device or pipe itself.
    """
    if path.exists() and not path.is_file():
        with path.open("w", encoding="utf-8") as handle:
            handle.write(text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o600)  # masked, but still about named customers' returns
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def build_report(
    ledger_url: str,
    output: Path,
    *,
    since: datetime | None = None,
    triggers: TriggerLatency | None = None,
) -> ReportData:
    """Read the ledger at ``ledger_url``, write the HTML report to ``output``, return its figures.

    ``since`` limits the deliveries and runs shown to those recorded from then on; the customers
    flagged with open returns are always those flagged now, whenever they were flagged.
    ``triggers``, measured by a deployment that records what triggers its runs (webhooks), adds
    the latency from a trigger to Klaviyo.
    """
    data = load_report_data(ledger_url, since=since)
    data.triggers = triggers
    write_atomically(Path(output), render_html(data))
    return data
