"""The latency from a Swap webhook (swap-webhooks' state db) to Klaviyo's acceptance."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from swap_health import WebhooksDbError, webhook_latency
from swap_health.cli import main as swap_health
from swap_health.webhooks import read_webhook_deliveries
from swap_webhooks.store import DeliveryStore
from target_klaviyo.cli import main as klaviyo_ops
from target_klaviyo.report import ReportData, build_report, load_report_data, terminal_summary
from target_klaviyo.report.stats import latency_stats
from tests.support.report_ledger import T0, WEBHOOKS, hours

#: 20 webhooks 5 s .. 100 s before an acceptance, one at 0 s and one 3 h before (nearest rank).
MEASURED = sorted(latency for _, _, latency in WEBHOOKS if latency is not None)
SUMMARY_LINE = (
    "  Latency webhook -> Klaviyo: median 50s, p95 1m 40s, worst 3h 00m "
    "(22 deliveries; 4 not accepted yet)"
)


def block(html: str) -> str:
    """The page's "Webhook to Klaviyo" block, tags removed, whitespace collapsed."""
    found = re.search(r'<div id="trigger-latency">(.*?)</section>', html, flags=re.DOTALL)
    assert found is not None
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())


def test_the_contract_reads_swap_webhooks_own_table(webhooks_db):
    import swap_webhooks  # noqa: PLC0415

    ours = read_webhook_deliveries(webhooks_db)
    assert sorted(ours) == sorted(swap_webhooks.webhook_latencies(webhooks_db))
    assert ours == [(return_id, received) for return_id, received, _ in WEBHOOKS]
    assert all(received.utcoffset() == timedelta(0) for _, received in ours)


def test_latency_per_delivery_to_the_first_acceptance_at_or_after_it(ledger_url, webhooks_db):
    data = with_webhooks(ledger_url, webhooks_db)
    hooks = data.triggers
    assert hooks is not None
    assert hooks.found
    assert hooks.source == f"swap-webhooks state db at {webhooks_db}"
    assert (hooks.deliveries, hooks.not_accepted) == (26, 4)
    assert len(MEASURED) == 22
    assert hooks.latency == latency_stats(MEASURED)  # the same nearest-rank statistics
    assert hooks.latency is not None
    assert hooks.latency.count == 22
    # Sorted: 0, 5, 10 ... 100, 10800 s. Rank 11 of 22 is 50 s, rank 21 is 100 s.
    assert hooks.latency.median == timedelta(seconds=50)
    assert hooks.latency.p95 == timedelta(seconds=100)
    assert hooks.latency.worst == timedelta(hours=3)
    # The Swap-update latency is the same as without webhooks.
    assert data.latency == load_report_data(ledger_url).latency
    assert SUMMARY_LINE in terminal_summary(data).splitlines()


def test_page_shows_the_webhook_block_and_card(ledger_url, webhooks_db, tmp_path):
    output = tmp_path / "report.html"
    report_with_webhooks(ledger_url, output, webhooks_db)
    html = output.read_text(encoding="utf-8")
    text = block(html)
    assert text.startswith(
        "Webhook to Klaviyo How long after a delivery for a record (swap-webhooks state db at"
    )
    assert (
        "Median 50s 95th percentile 1m 40s Worst 3h 00m Deliveries measured 22 "
        "Not accepted yet 4" in text
    )
    assert "4 deliveries have no acceptance at or after them yet" in text
    card = re.search(r'<div class="kpi" id="trigger-kpi">(.*?)</div>\s*</div>', html, re.DOTALL)
    assert card is not None
    card_text = " ".join(re.sub(r"<[^>]+>", " ", card.group(1)).split())
    assert card_text == (
        "Webhook to Klaviyo (median) 50s p95 1m 40s · worst 3h 00m · 22 deliveries · "
        "4 not accepted yet"
    )
    # The block sits in the latency section, after the Swap-update figures.
    latency = html.split('id="latency"')[1].split("</section>")[0]
    assert 'id="trigger-latency"' in latency
    assert len(re.findall(r"<svg\b", html)) == 2  # no chart of its own


def test_since_counts_deliveries_received_from_then_on(ledger_url, webhooks_db):
    data = with_webhooks(ledger_url, webhooks_db, since=T0 + hours(24))
    hooks = data.triggers
    assert hooks is not None
    assert hooks.latency is not None
    # 9 webhooks before events accepted after T0+24h (the event accepted at T0+24h had its
    # webhook 35 s earlier, outside the window), R1009's at T0+30h; R1007's and R9999's wait.
    assert (hooks.deliveries, hooks.latency.count, hooks.not_accepted) == (12, 10, 2)
    assert hooks.latency.worst == timedelta(hours=3)


def test_missing_state_db_means_no_webhooks(ledger_url, tmp_path):
    missing = tmp_path / "runtime" / "swap-webhooks.sqlite"
    output = tmp_path / "report.html"
    data = report_with_webhooks(ledger_url, output, missing)
    assert data.triggers is not None
    assert not data.triggers.found
    assert data.triggers.latency is None
    assert not missing.exists()
    assert not missing.parent.exists()  # nothing created
    html = output.read_text(encoding="utf-8")
    assert block(html).startswith(f"Webhook to Klaviyo No swap-webhooks state db at {missing}:")
    assert 'id="trigger-kpi"' not in html
    assert (
        f"  Latency webhook -> Klaviyo: none recorded (no swap-webhooks state db at {missing})"
        in terminal_summary(data).splitlines()
    )


def test_without_a_webhooks_db_the_report_is_unchanged(ledger_url, tmp_path):
    output = tmp_path / "report.html"
    data = build_report(ledger_url, output)
    assert data.triggers is None
    html = output.read_text(encoding="utf-8")
    assert "trigger-latency" not in html
    assert "trigger-kpi" not in html
    assert "Webhook to Klaviyo" not in html
    assert "webhook" not in terminal_summary(data).lower()


def test_no_deliveries_yet(ledger_url, tmp_path):
    path = tmp_path / "swap-webhooks.sqlite"
    DeliveryStore(path).close()  # a receiver that started and received nothing
    output = tmp_path / "report.html"
    data = report_with_webhooks(ledger_url, output, path)
    assert data.triggers is not None
    assert (data.triggers.found, data.triggers.deliveries, data.triggers.latency) == (True, 0, None)
    assert "No delivery was recorded." in block(output.read_text(encoding="utf-8"))
    assert (
        "  Latency webhook -> Klaviyo: none measured (0 deliveries)"
        in terminal_summary(data).splitlines()
    )


def test_a_ledger_without_tables_has_no_acceptance_yet(tmp_path, webhooks_db):
    path = tmp_path / "ledger.db"
    sqlite3.connect(path).close()
    data = with_webhooks(f"sqlite:///{path}", webhooks_db)
    assert data.triggers is not None
    assert (data.triggers.deliveries, data.triggers.not_accepted) == (26, 26)
    assert data.triggers.latency is None


def test_state_db_is_read_only_and_safe_while_a_receiver_runs(ledger_url, webhooks_db, tmp_path):
    before = webhooks_db.read_bytes()
    with DeliveryStore(webhooks_db) as store:  # the receiver holds its lock and connection
        data = report_with_webhooks(ledger_url, tmp_path / "report.html", webhooks_db)
        assert data.triggers is not None
        assert data.triggers.deliveries == len(store.deliveries())
    assert webhooks_db.read_bytes() == before
    with DeliveryStore(webhooks_db) as store:
        assert len(store.deliveries()) == len(WEBHOOKS)


def test_a_file_that_is_not_a_state_db_is_an_error(ledger_url, tmp_path):
    ledger_file = Path(ledger_url.removeprefix("sqlite:///"))
    # The ledger has a deliveries table too, but not the receiver's columns.
    with pytest.raises(WebhooksDbError, match="is not a swap-webhooks state db"):
        with_webhooks(ledger_url, ledger_file)
    text = tmp_path / "notes.txt"
    text.write_text("not a database, but long enough for SQLite to read its header" * 10)
    with pytest.raises(WebhooksDbError, match="is not a swap-webhooks state db"):
        with_webhooks(ledger_url, text)


def test_the_targets_own_report_knows_nothing_of_webhooks(ledger_url, tmp_path):
    output = tmp_path / "ops.html"
    config_file = tmp_path / "ops.json"
    config_file.write_text(json.dumps({"api_key": "pk_test", "ledger_url": ledger_url}))
    args = ["--config", str(config_file), "report", "--output", str(output)]
    result = CliRunner().invoke(klaviyo_ops, args)
    assert result.exit_code == 0, result.output
    assert "webhook" not in result.output.lower()
    assert "webhook" not in output.read_text(encoding="utf-8").lower()
    refused = CliRunner().invoke(klaviyo_ops, [*args, "--webhooks-db", "x.sqlite"])
    assert refused.exit_code == 2


@pytest.mark.slow
def test_swap_health_summary_and_report(ledger_url, webhooks_db, tmp_path):
    config_file = tmp_path / "ops.json"
    config_file.write_text(json.dumps({"api_key": "pk_test", "ledger_url": ledger_url}))
    base = ["--config", str(config_file)]
    result = CliRunner().invoke(swap_health, [*base, "summary", "--webhooks-db", str(webhooks_db)])
    assert result.exit_code == 0, result.output
    assert SUMMARY_LINE in result.output.splitlines()

    output = tmp_path / "ops.html"
    missing = tmp_path / "none.sqlite"
    args = [*base, "report", "--output", str(output), "--webhooks-db", str(missing)]
    result = CliRunner().invoke(swap_health, args)
    assert result.exit_code == 0, result.output
    assert "none recorded (no swap-webhooks state db at" in result.output
    assert "No swap-webhooks state db at" in output.read_text(encoding="utf-8")

    ledger_file = ledger_url.removeprefix("sqlite:///")
    result = CliRunner().invoke(swap_health, [*base, "summary", "--webhooks-db", ledger_file])
    assert result.exit_code == 1
    assert "is not a swap-webhooks state db" in result.output


def with_webhooks(ledger_url: str, state_db: Path, since=None) -> ReportData:
    """The target's report data with the webhook latency, as ``swap-health summary`` builds it."""
    data = load_report_data(ledger_url, since=since)
    data.triggers = webhook_latency(ledger_url, state_db, since)
    return data


def report_with_webhooks(ledger_url: str, output: Path, state_db: Path) -> ReportData:
    """The page with the webhook latency, as ``swap-health report`` writes it."""
    return build_report(ledger_url, output, triggers=webhook_latency(ledger_url, state_db, None))
