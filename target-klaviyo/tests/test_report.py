from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import stat
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from target_klaviyo.ledger import (
    ACCEPTED,
    FAILED_PROFILE_IMPORT,
    REJECTED,
    ListChange,
    profile_hash,
)
from target_klaviyo.report import build_report, load_report_data, terminal_summary
from target_klaviyo.report.__main__ import main
from target_klaviyo.report.data import ReportData, RunRow
from target_klaviyo.report.render import render_html
from tests.support.html_tables import tables
from tests.support.ledger import migrated_ledger
from tests.support.report_ledger import (
    EMAILS,
    METRIC_TOTALS,
    T0,
    Run,
    event,
    hours,
    profile_update,
)


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


@pytest.mark.slow
def test_figures(report):
    data, _ = report
    assert data.accepted_events == 20
    assert data.accepted_by_metric == METRIC_TOTALS
    assert data.accepted_by_stream == {"klaviyo_events": 20, "klaviyo_profile_updates": 7}
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


@pytest.mark.slow
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


@pytest.mark.slow
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


#: Who Klaviyo flags now: (masked customer, RMA values, last changed, newer update not delivered).
OPEN_RETURNS = [
    ("g***@example.it", ("RMA-3006", "RMA-3011"), "2025-03-04 16:00 UTC", None),
    ("b***@example.org", ("RMA-3001",), "2025-03-04 15:00 UTC", None),
    ("c***@example.net", ("RMA-3009",), "2025-03-04 15:00 UTC", None),
    ("a***@example.com", ("RMA-3010",), "2025-03-03 10:00 UTC", "invalid"),
]


@pytest.mark.slow
def test_customers_with_open_returns(report):
    data, html = report
    rows = tables(html)["open-returns-table"]
    # Newest first: Gina's second return, then Bob's replay and Chloe's newer return (same time,
    # by customer), then Alice. Hugo's return closed; Dmitri's and Eva's updates never reached
    # Klaviyo, nor did Chloe's RMA-3003, so none of those is flagged.
    assert rows == [
        [
            customer,
            " ".join(values),
            changed,
            "reached Klaviyo"
            if stale is None
            else f"reached Klaviyo a newer update was not delivered: {stale}",
        ]
        for customer, values, changed, stale in OPEN_RETURNS
    ]
    assert [(r.customer, r.open_returns, r.not_delivered) for r in data.open_returns] == [
        (customer, values, stale) for customer, values, _, stale in OPEN_RETURNS
    ]
    assert '<span class="badge warn">a newer update was not delivered: invalid</span>' in html
    assert "may be out of date until that update reaches Klaviyo" in html
    assert "exactly the property Klaviyo holds, unless someone edits profiles" in html
    assert "payload" not in html.split('id="open-returns"')[1].split("</section>")[0]


@pytest.mark.slow
def test_open_returns_match_the_ledgers_own_view(report, ledger_url, clock):
    data, _ = report
    ledger = migrated_ledger(ledger_url)
    try:
        members = ledger.list_members("swap_open_returns")
    finally:
        ledger.close()
    assert sorted((m["masked_identity"], tuple(m["values"])) for m in members) == sorted(
        (r.customer, r.open_returns) for r in data.open_returns
    )


@pytest.mark.slow
def test_ledger_keeps_no_email_for_the_flags(ledger_url):
    with contextlib.closing(sqlite3.connect(ledger_url.removeprefix("sqlite:///"))) as conn:
        rows = conn.execute("select * from profile_lists").fetchall()
    # Five values held now, and the one unappended since (kept as such: never unappended twice).
    assert sorted(row[-1] for row in rows) == ["appended"] * 5 + ["unappended"]
    assert_no_full_email(" ".join(str(cell) for row in rows for cell in row))


@pytest.mark.slow
def test_ledger_from_before_profile_lists(ledger_url, tmp_path):
    path = Path(ledger_url.removeprefix("sqlite:///"))
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("drop table profile_lists")
    output = tmp_path / "old.html"
    data = build_report(ledger_url, output)
    html = output.read_text(encoding="utf-8")
    assert not data.open_returns_mirrored
    assert data.open_returns == []
    assert data.accepted_events == 20  # the rest of the report is unaffected
    assert "open-returns-table" not in html
    assert "before the ledger kept the <code>profile_lists</code> table" in html
    assert "exactly the property Klaviyo holds" not in html
    assert (
        "  Customers flagged with open returns: unknown (the ledger predates profile_lists)"
        in terminal_summary(data).splitlines()
    )
    with contextlib.closing(sqlite3.connect(path)) as conn:
        names = {name for (name,) in conn.execute("select name from sqlite_master")}
    assert "profile_lists" not in names  # read only: the report created nothing


@pytest.mark.slow
def test_reading_the_ledger_changes_nothing(ledger_url, tmp_path):
    path = Path(ledger_url.removeprefix("sqlite:///"))
    before = path.read_bytes()
    build_report(ledger_url, tmp_path / "report.html")
    assert path.read_bytes() == before


@pytest.mark.slow
def test_stale_flag_needs_a_newer_profile_update_still_not_delivered(tmp_path, clock):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    run = Run(migrated_ledger(url), clock)
    ivy, jon, kim, leo = (
        "ivy@example.com",
        "jon@example.com",
        "kim@example.com",
        "leo@example.com",
    )
    # Ivy: her return's update id repeats (open, then close): the close was set aside twice,
    # newest reason last. Her flag is still RMA-1 in Klaviyo, out of date.
    run.accept_updates(T0, profile_update("R1", ivy, ACCEPTED, as_of=T0, append=["RMA-1"]))
    run.record(
        T0 + hours(1),
        profile_update("R1", ivy, REJECTED, as_of=T0 + hours(1), unappend=["RMA-1"], reason="a"),
    )
    run.record(
        T0 + hours(2),
        profile_update("R1", ivy, FAILED_PROFILE_IMPORT, as_of=T0 + hours(1), unappend=["RMA-1"]),
    )
    # Jon: a newer update was set aside, then delivered on replay (it changed no list).
    run.accept_updates(T0, profile_update("R2", jon, ACCEPTED, as_of=T0, append=["RMA-2"]))
    update = profile_update("R3", jon, REJECTED, as_of=T0 + hours(1), reason="b")
    run.record(T0 + hours(1), update)
    run.accept_updates(T0 + hours(2), profile_update("R3", jon, ACCEPTED, as_of=T0 + hours(1)))
    # Kim: the set-aside update is older than her flag; her set-aside *event* is newer.
    run.record(T0, profile_update("R4", kim, REJECTED, as_of=T0, append=["RMA-4"], reason="c"))
    run.accept_updates(
        T0 + hours(1), profile_update("R5", kim, ACCEPTED, as_of=T0, append=["RMA-5"])
    )
    run.record(T0 + hours(2), event("Return Started", "R5", kim, REJECTED, updated=T0, reason="d"))
    # Leo: an older writer left his identity unmasked in the mirror: the report masks it.
    clock.now = T0 + hours(3)
    run.ledger.apply_list_operations(
        [ListChange(profile_hash({"email": leo}), leo, "swap_open_returns", "RMA-6", "append")]
    )
    run.ledger.close()

    output = tmp_path / "report.html"
    data = build_report(url, output)
    html = output.read_text(encoding="utf-8")
    assert [(r.customer, r.open_returns, r.not_delivered) for r in data.open_returns] == [
        ("l***@example.com", ("RMA-6",), None),
        ("k***@example.com", ("RMA-5",), None),
        ("i***@example.com", ("RMA-1",), "failed_profile_import"),
        ("j***@example.com", ("RMA-2",), None),
    ]
    assert "leo@" not in html
    assert "a newer update was not delivered: failed_profile_import" in html


@pytest.mark.slow
def test_recent_runs(report):
    _, html = report
    rows = tables(html)["runs-table"]
    assert [r[2] for r in rows] == ["running", "failed", "succeeded"]
    running, failed, succeeded = rows
    assert running[1] == "—"
    assert running[3:9] == ["—"] * 6
    # Run 2: 10 events and 4 profile updates accepted, 4 set aside, 1 request, 3 retries, 2 x 429.
    assert failed[:2] == ["2025-03-04 09:00 UTC", "10h 00m"]
    assert failed[3:9] == ["14", "0", "4", "1", "3", "2"]
    assert succeeded[3:9] == ["13", "0", "14", "0", "0", "0"]
    assert failed[9] == "22222222"


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
        "  Customers flagged with open returns: 4 (1 with a newer update not delivered)",
        "  Last runs (newest first):",
        "    running                  started 2025-03-04 20:00 UTC, not finished",
        "    failed                   finished 2025-03-04 19:00 UTC, retries 3, 429s 2",
        "    succeeded                finished 2025-03-04 08:00 UTC, retries 0, 429s 0",
    ]


@pytest.mark.slow
def test_since_limits_deliveries_and_runs(ledger_url, tmp_path):
    data = build_report(ledger_url, tmp_path / "report.html", since=T0 + hours(24))
    assert data.accepted_events == 10
    assert [r.run_id[:8] for r in data.runs] == ["33333333", "22222222"]
    assert sorted(r.source_id or "" for r in data.set_aside) == ["R2003", "R3002", "R3004", "R3008"]
    assert data.mismatched == []
    # Who is flagged now does not depend on the window.
    assert [(r.customer, r.open_returns, r.not_delivered) for r in data.open_returns] == [
        (customer, values, stale) for customer, values, _, stale in OPEN_RETURNS
    ]
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "records since 2025-03-04 09:00 UTC" in html


def test_empty_ledger_says_nothing_was_delivered(tmp_path, clock):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    migrated_ledger(url).close()  # the target has started once: tables, no rows
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


@pytest.mark.slow
def test_metric_names_are_data_not_markup_or_math(tmp_path, clock):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = migrated_ledger(url)
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


@pytest.mark.slow
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
    assert summary[-2:] == [
        "  Last runs (newest first):",
        "    succeeded                finished 2025-03-03 10:04 UTC, retries 1, 429s 1",
    ]
    assert "  Nothing set aside: every record reached Klaviyo" in summary


def test_terminal_summary_after_a_crash_never_says_every_record_reached_klaviyo():
    started = T0 + hours(1)
    data = ReportData(generated_at=T0 + hours(3), ledger="sqlite:///x.db", since=None)
    data.runs = [
        RunRow(
            run_id=f"{n}4444444-dddd-4ddd-8ddd-444444444444",
            started_at=started - timedelta(hours=n),
            finished_at=started - timedelta(hours=n) + timedelta(minutes=1),
            status=status,
            accepted=None,
            deduplicated=None,
            set_aside=None,
            requests=None,
            retries=None,
            throttled=None,
            error=error,
        )
        for n, (status, error) in enumerate(
            [
                ("already_running", None),
                ("crashed", "KeyError: 'data' \x1b[2J"),
                ("succeeded", None),
            ]
        )
    ]
    summary = terminal_summary(data)
    assert "every record reached Klaviyo" not in summary
    assert "Nothing set aside, but the last run ended crashed" in summary
    [crashed] = [line for line in summary.splitlines() if line.startswith("    crashed ")]
    assert crashed.endswith(" - KeyError: 'data' \\x1b[2J")
    assert "KeyError: 'data' \\x1b[2J" in summary, "the escape is shown, not obeyed"
    assert "\x1b" not in summary


def test_the_page_after_a_crash_says_so_and_shows_the_error():
    started = T0 + hours(1)
    data = ReportData(generated_at=T0 + hours(3), ledger="sqlite:///x.db", since=None)
    data.runs = [
        RunRow(
            run_id="55555555-eeee-4eee-8eee-555555555555",
            started_at=started,
            finished_at=started + timedelta(minutes=1),
            status="crashed",
            accepted=None,
            deduplicated=None,
            set_aside=None,
            requests=None,
            retries=None,
            throttled=None,
            error="KeyError: 'data'",
        )
    ]
    page = render_html(data)
    assert "Every record reached Klaviyo" not in page
    assert "the last run ended crashed" in page
    assert '<span class="badge bad">crashed</span>' in page
    assert "KeyError: &#39;data&#39;" in page


@pytest.mark.slow
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


@pytest.mark.slow
def test_load_report_data_draws_and_writes_nothing(ledger_url, tmp_path):
    before = set(tmp_path.iterdir())
    data = load_report_data(ledger_url)
    assert data.accepted_events == 20
    assert set(tmp_path.iterdir()) == before
