"""The integration health report: every return event that did not reach Klaviyo, and why.

Dashboards of success rates hide the individual records behind a 99.8%; this report lists them,
from target-klaviyo's delivery ledger, as one offline HTML page and a short terminal summary.
Needs the ``report`` extra (``pip install 'target-klaviyo[report]'``). ``load_report_data`` gives
the figures without drawing or writing anything (enough for ``terminal_summary``).
"""

from __future__ import annotations

from target_klaviyo.report.data import LatencyStats, ReportData, TriggerLatency
from target_klaviyo.report.queries import load_report_data
from target_klaviyo.report.render import build_report
from target_klaviyo.report.summary import terminal_summary

__all__ = [
    "LatencyStats",
    "ReportData",
    "TriggerLatency",
    "build_report",
    "load_report_data",
    "terminal_summary",
]
