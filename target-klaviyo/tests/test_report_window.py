"""The report reads a window of the ledger (``--since``), a page of rows at a time."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from target_klaviyo.cli import main as klaviyo_ops
from target_klaviyo.report import load_report_data, queries
from target_klaviyo.report.__main__ import main as report_main
from target_klaviyo.window import parse_since
from tests.support.report_ledger import T0, hours

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)


def test_since_takes_an_age_or_an_iso_time() -> None:
    assert parse_since("30d", now=NOW) == NOW - timedelta(days=30)
    assert parse_since("12h", now=NOW) == NOW - timedelta(hours=12)
    assert parse_since("90m", now=NOW) == NOW - timedelta(minutes=90)
    assert parse_since("2026-01-31T00:00:00Z") == datetime(2026, 1, 31, tzinfo=timezone.utc)
    assert parse_since("2026-01-31T00:00:00") == datetime(2026, 1, 31, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="not a time or an age"):
        parse_since("last month")


def ops(ledger_url: str, tmp_path: Path, *args: str) -> Any:
    config_file = tmp_path / "ops.json"
    config_file.write_text(json.dumps({"ledger_url": ledger_url, "api_key": "pk_unused"}))
    return CliRunner().invoke(klaviyo_ops, ["--config", str(config_file), *args])


@pytest.mark.slow
def test_summary_and_report_read_only_the_window(ledger_url: str, tmp_path: Path) -> None:
    everything = ops(ledger_url, tmp_path, "summary")
    assert everything.exit_code == 0, everything.output
    assert "Events accepted: 20" in everything.output

    # The fixture's ledger was written in March 2025: nothing of it is in the last 30 days.
    recent = ops(ledger_url, tmp_path, "summary", "--since", "30d")
    assert recent.exit_code == 0, recent.output
    assert "Events accepted" not in recent.output
    assert "Nothing delivered yet" in recent.output

    since = (T0 + hours(24)).isoformat()
    output = tmp_path / "report.html"
    windowed = ops(ledger_url, tmp_path, "report", "--output", str(output), "--since", since)
    assert windowed.exit_code == 0, windowed.output
    expected = load_report_data(ledger_url, since=T0 + hours(24))
    assert f"Events accepted: {expected.accepted_events} " in windowed.output
    assert expected.accepted_events < 20
    assert output.is_file()

    refused = ops(ledger_url, tmp_path, "summary", "--since", "last month")
    assert refused.exit_code == 2
    assert "not a time or an age" in refused.output


@pytest.mark.slow
def test_python_m_report_takes_an_age_too(ledger_url: str, tmp_path: Path) -> None:
    assert report_main([ledger_url, str(tmp_path / "r.html"), "--since", "30d"]) == 0


@pytest.mark.slow
def test_the_figures_are_the_same_whatever_the_page_size(
    ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = load_report_data(ledger_url)
    monkeypatch.setattr(queries, "PAGE_ROWS", 2)
    paged = load_report_data(ledger_url)
    for field in dataclasses.fields(whole):
        if field.name != "generated_at":
            assert getattr(paged, field.name) == getattr(whole, field.name), field.name
    assert whole.set_aside_total > 2, "several pages of set-aside rows"
