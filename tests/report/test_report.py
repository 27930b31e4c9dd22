from __future__ import annotations

import os
import re
import sqlite3
import stat
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from target_klaviyo.ledger import ACCEPTED, Ledger
from target_klaviyo.report import build_report, load_report_data, terminal_summary
from target_klaviyo.report.__main__ import main
from target_klaviyo.report.data import ReportData, RunRow
from tests.report.conftest import (
    EMAILS,
    METRIC_TOTALS,
    T0,
    event,
    hours,
)
from tests.report.html_tables import tables


@pytest.fixture
def report(ledger_url: str, tmp_path: Path):
    output = tmp_path / "out" / "report.html"
    data = build_report(ledger_url, output)
    return data, output.read_text(encoding="utf-8")


def assert_no_full_email(text: str) -> None:
    lowered = text.lower()
    for email in EMAILS:
        assert email not in lowered
        assert email.split("@")[0] not in lowered  # not even the local part


def test_figures(report):
    data, _ = report
    assert data.accepted_events == 20
    assert data.accepted_by_metric == METRIC_TOTALS
    assert data.accepted_by_stream == {"klaviyo_events": 20, "klaviyo_profile_updates": 4}
    assert data.latency is not None
    # Nearest rank over the 20 latencies: the 10th is 200 s, the 19th 1200 s, the worst 5400 s.
    assert data.latency.count == 20
    assert data.latency.median == timedelta(seconds=200)
    assert data.latency.p95 == timedelta(seconds=1200)
    assert data.latency.worst == timedelta(seconds=5400)
    assert data.series is not None
    assert data.series.bucket == "hour"
    assert {m: sum(c) for m, c in data.series.counts.items()} == METRIC_TOTALS
    # 8 events, restocks and mapper exceptions + 5 profile updates; 2 delivered since.
    assert data.outstanding_total == 13
    assert data.returns_affected == 13
    assert data.resolved_later == 2
    assert data.set_aside_total == 11
    assert len(data.mismatched) == 2
    assert [r.status for r in data.runs] == ["running", "failed", "succeeded"]


def test_set_aside_records_by_reason(report):
    _, html = report
    rows = tables(html)["set-aside-records"]
    assert len(rows) == 11
    by_return = {row[2]: row for row in rows}
    assert sorted(by_return) == [
        "R2001",
        "R2002",
        "R2003",
        "R2004",
        "R2005",
        "R2006",
        "R3002",
        "R3003",
        "R3004",
        "R3005",
        "R3008",
    ]
    reasons = {row[2]: row[0] for row in rows}
    assert reasons["R2001"] == "missing_email"
    assert reasons["R2002"] == "invalid_email"
    assert reasons["R2003"] == "string_too_long"
    assert reasons["R2005"] == "variant_not_found"
    assert reasons["R2006"] == "catalog_not_writable"
    assert reasons["R3005"] == "import_failed"
    # Met in both runs: one row, seen twice, when = the second run's time.
    assert by_return["R2003"][3:] == [
        "Return Started",
        "c***@example.net",
        "2025-03-04 15:00 UTC",
        "2\u00d7",  # seen by two runs (a multiplication sign follows the count)
    ]
    assert by_return["R2005"][3] == "restock"
    assert by_return["R2001"][3] == "mapping rule return_started"
    assert by_return["R2001"][4] == "—"  # a missing email has no customer to show
    # Klaviyo's detail quoted the address: masked, and its markup escaped, never run.
    assert (
        by_return["R2004"][1]
        == "'d***@example.com' is not a valid email. <script>alert(1)</script>"
    )
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html
    reason_rows = re.findall(
        r'<td><span class="reason">([a-z_]+)</span></td><td class="num">(\d+)', html
    )
    assert dict(reason_rows) == {
        "invalid": "5",
        "catalog_not_writable": "1",
        "import_failed": "1",
        "invalid_email": "1",
        "missing_email": "1",
        "string_too_long": "1",
        "variant_not_found": "1",
    }
    assert "Add the email to the order in Swap or Shopify" in html
    assert "2 records set aside earlier were delivered since" in html
    assert "13 records never reached Klaviyo" in html


def test_mismatched_profiles(report):
    _, html = report
    rows = tables(html)["mismatched-records"]
    # Newest first; equally new rows keep the order the ledger recorded them in.
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        ("new_profile", "f***@example.co.uk", "R2007", "Return Started", "held"),
        ("suppressed_profile", "b***@example.org", "R2008", "Return Started", "held"),
    ]
    assert rows[1][5] == "The profile is suppressed from email (unsubscribed)"
    assert "Klaviyo does not know this email" in html


def test_customers_with_open_returns(report):
    data, html = report
    rows = tables(html)["open-returns-table"]
    assert {r[0]: r[1] for r in rows} == {
        "a***@example.com": "RMA-3008",  # RMA-3002 closed by a later update
        "b***@example.org": "RMA-3001",
        "c***@example.net": "RMA-3003",
        "e***@example.de": "RMA-3005",
    }
    status = {r[0]: r[3] for r in rows}
    assert status["b***@example.org"] == "reached Klaviyo"
    assert status["e***@example.de"] == "not delivered: import_failed"
    assert "may be out of date" in status["c***@example.net"]  # its newer update kept no payload
    assert "may be out of date" not in status["a***@example.com"]
    assert data.profiles_closed == 1  # Dmitri's only return closed
    assert data.profiles_without_payload == 2
    assert "2 other customers had updates whose payloads are not kept" in html


def test_recent_runs(report):
    _, html = report
    rows = tables(html)["runs-table"]
    assert [r[2] for r in rows] == ["running", "failed", "succeeded"]
    running, failed, succeeded = rows
    assert running[1] == "—"
    assert running[3:9] == ["—"] * 6
    # Run 2: 11 events and 2 profile updates accepted, 4 set aside, 1 request, 3 retries, 2 x 429.
    assert failed[:2] == ["2025-03-04 09:00 UTC", "10h 00m"]
    assert failed[3:9] == ["12", "0", "4", "1", "3", "2"]
    assert succeeded[3:9] == ["12", "0", "14", "0", "0", "0"]
    assert failed[9] == "22222222"


def test_charts_are_inline_svg_and_the_page_needs_no_network(report):
    _, html = report
    svgs = re.findall(r"<svg\b.*?</svg>", html, flags=re.DOTALL)
    assert len(svgs) == 2
    accepted, latency = svgs
    assert 'aria-label="Events accepted by Klaviyo per metric, per hour"' in accepted
    for metric, count in METRIC_TOTALS.items():
        assert f"{metric} ({count})" in accepted  # legend entries are real text
    assert accepted.count("<path") > 20  # the bars
    assert "median 3m 20s" in latency
    assert "p95 20m 00s" in latency
    assert "log scale" in latency  # 30 s to 90 min: the axis is logarithmic
    # Nothing is fetched: no scripts, stylesheets, images or fonts from anywhere.
    for marker in ("<script", "<link", "src=", "@import"):
        assert marker not in html
    assert not re.search(r"url\((?!#)", html)  # only references inside the page
    assert set(re.findall(r"https?://[^\s\"'<>)]+", html)) <= {
        "http://www.w3.org/2000/svg",
        "http://www.w3.org/1999/xlink",
    }
    assert "Content-Security-Policy" in html


def test_no_full_email_in_page_or_summary(report, ledger_url):
    data, html = report
    assert_no_full_email(html)
    summary = terminal_summary(data)
    assert_no_full_email(summary)
    for masked in ("a***@example.com", "b***@example.org", "f***@example.co.uk"):
        assert masked in html
    # The ledger itself does hold them (set-aside payloads): the masking is what hides them.
    with sqlite3.connect(ledger_url.removeprefix("sqlite:///")) as conn:
        payloads = " ".join(p for (p,) in conn.execute("select payload from deliveries") if p)
    conn.close()
    assert "farah.khan@example.co.uk" in payloads


def test_terminal_summary(report):
    data, _ = report
    summary = terminal_summary(data)
    lines = summary.splitlines()
    assert lines[0].startswith("Swap -> Klaviyo delivery health (all records; generated ")
    assert lines[1:] == [
        "  Events accepted: 20 (Return Started 8, Return Received 6, Return Processed 4, "
        "Refunded Order 2)",
        "  Latency Swap update -> Klaviyo: median 3m 20s, p95 20m 00s, worst 1h 30m (20 events)",
        "  NOT delivered: 13 records for 13 returns",
        "    set aside by reason: invalid 5, catalog_not_writable 1, import_failed 1, "
        "invalid_email 1, 3 more",
        "  Mismatched profiles: 2 (new_profile 1, suppressed_profile 1)",
        "  Customers flagged with open returns (kept payloads): 4",
        "  Last run: running, started 2025-03-04 20:00 UTC, not finished",
    ]


def test_since_limits_deliveries_and_runs(ledger_url, tmp_path):
    data = build_report(ledger_url, tmp_path / "report.html", since=T0 + hours(24))
    assert data.accepted_events == 10
    assert [r.run_id[:8] for r in data.runs] == ["33333333", "22222222"]
    assert sorted(r.source_id or "" for r in data.set_aside) == ["R2003", "R3002", "R3004", "R3008"]
    assert data.mismatched == []
    # Open returns need every update ever made, so the window does not cut them.
    assert len(data.open_returns) == 4
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "records since 2025-03-04 09:00 UTC" in html


def test_empty_ledger_says_nothing_was_delivered(tmp_path, clock):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Ledger(url).close()  # the target has started once: tables, no rows
    output = tmp_path / "report.html"
    data = build_report(url, output)
    html = output.read_text(encoding="utf-8")
    assert data.empty
    assert "Nothing delivered yet" in html
    assert "<svg" not in html
    assert "Nothing delivered yet" in terminal_summary(data)


def test_ledger_file_without_tables_reads_as_empty(tmp_path):
    path = tmp_path / "ledger.db"
    sqlite3.connect(path).close()
    data = build_report(f"sqlite:///{path}", tmp_path / "report.html")
    assert data.empty


def test_missing_ledger_file_fails_and_creates_nothing(tmp_path):
    missing = tmp_path / "typo" / "ledger.db"
    with pytest.raises(FileNotFoundError, match="No delivery ledger"):
        build_report(f"sqlite:///{missing}", tmp_path / "report.html")
    assert not missing.exists()
    assert not (tmp_path / "report.html").exists()


def test_metric_names_are_data_not_markup_or_math(tmp_path, clock):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger(url)
    metric = "Return <Started> $5 off$"
    for index, seconds in enumerate((60, 120, 180)):
        clock.now = T0 + hours(index)
        ledger.record(
            [
                event(
                    metric,
                    f"R{index}",
                    "zoe@example.com",
                    ACCEPTED,
                    updated=clock.now - timedelta(seconds=seconds),
                )
            ]
        )
    ledger.close()
    data = build_report(url, tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert data.latency is not None
    assert data.latency.median == timedelta(seconds=120)
    assert "Return &lt;Started&gt; $5 off$ (3)" in html  # escaped in the SVG, no math mode
    assert "(minutes)" in html  # a narrow spread keeps a linear axis
    assert "zoe@example.com" not in html


def test_command_line(ledger_url, tmp_path, capsys):
    output = tmp_path / "cli.html"
    assert main([ledger_url, str(output), "--since", "2025-03-04T09:00:00"]) == 0
    out = capsys.readouterr().out
    assert "since 2025-03-04 09:00 UTC" in out
    assert "Events accepted: 10" in out
    assert f"Report: {output}" in out
    assert_no_full_email(out)
    assert output.is_file()
    assert main([f"sqlite:///{tmp_path / 'nope.db'}", str(output)]) == 2
    assert "No delivery ledger" in capsys.readouterr().err


def test_terminal_summary_of_a_finished_run():
    started = T0 + hours(1)
    data = ReportData(generated_at=T0 + hours(3), ledger="sqlite:///x.db", since=None)
    data.runs = [
        RunRow(
            run_id="44444444-dddd-4ddd-8ddd-444444444444",
            started_at=started,
            finished_at=started + timedelta(minutes=4),
            status="succeeded",
            accepted=0,
            deduplicated=0,
            set_aside=0,
            requests=2,
            retries=1,
            throttled=1,
        )
    ]
    summary = terminal_summary(data).splitlines()
    assert summary[-1] == (
        "  Last run: succeeded, finished 2025-03-03 10:04 UTC, retries 1, 429s 1"
    )
    assert "  Nothing set aside: every record reached Klaviyo" in summary


def test_output_that_is_not_a_regular_file_is_written_in_place(ledger_url, tmp_path):
    # A pipe stands in for /dev/null: renaming a temporary file over it would replace it.
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received: list[bytes] = []

    def drain() -> None:
        with pipe.open("rb") as reader:
            received.append(reader.read())

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        build_report(ledger_url, pipe)
    finally:
        reader.join(timeout=30)
    assert stat.S_ISFIFO(pipe.stat().st_mode)
    assert received
    assert received[0].startswith(b"<!doctype html>")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".pipe")] == []


def test_load_report_data_draws_and_writes_nothing(ledger_url, tmp_path):
    before = set(tmp_path.iterdir())
    data = load_report_data(ledger_url)
    assert data.accepted_events == 20
    assert set(tmp_path.iterdir()) == before
