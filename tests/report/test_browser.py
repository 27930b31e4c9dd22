"""The report in a real headless Chromium (Debian's), driven by Selenium and chromedriver.

Skipped where Chromium is not installed (``apt-get install -y chromium chromium-driver``); CI
installs it. No browser is downloaded: Selenium is given both binaries, so it never needs its
driver manager, and the browser starts with networking extras off and a throwaway profile.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from swap_health import webhook_latency
from target_klaviyo.report import build_report
from tests.support.ledger import migrated_ledger
from tests.support.report_ledger import EMAILS

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver",
    ),
    pytest.mark.skipif(
        not CHROMEDRIVER.exists(),
        reason=f"{CHROMEDRIVER} is missing: apt-get install -y chromium-driver",
    ),
]

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed: pip install 'selenium>=4.20'"
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        "--window-size=1280,1000",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any) -> list[dict[str, Any]]:
    """The console messages logged as errors since the last call (reading clears the log)."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


@pytest.mark.slow
def test_console_check_sees_errors(browser, tmp_path):
    # The check below must be able to fail: a page that logs an error is caught.
    page = tmp_path / "broken.html"
    page.write_text("<!doctype html><title>x</title><script>console.error('boom')</script>")
    browser.get(page.as_uri())
    assert any("boom" in entry["message"] for entry in console_errors(browser))


@pytest.mark.slow
def test_report_renders_in_chromium(browser, ledger_url, webhooks_db, tmp_path):
    output = tmp_path / "report.html"
    build_report(ledger_url, output, triggers=webhook_latency(ledger_url, webhooks_db, None))
    console_errors(browser)  # start from a clean log
    browser.get(output.as_uri())

    assert browser.title.startswith("Swap → Klaviyo delivery health")
    charts = browser.find_elements(By.CSS_SELECTOR, "figure.chart svg")
    assert len(charts) == 2
    for chart in charts:
        assert chart.is_displayed()
        assert chart.size["width"] > 600
        assert chart.size["height"] > 150
    bars = browser.find_elements(By.CSS_SELECTOR, "figure.chart svg g[id^='patch'] path")
    assert len(bars) > 20
    expected_rows = {
        "set-aside-records": 11,
        "mismatched-records": 2,
        "open-returns-table": 4,
        "runs-table": 3,
    }
    for table, count in expected_rows.items():
        rows = browser.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr")
        assert len(rows) == count, table
        assert all(row.is_displayed() and row.size["height"] > 0 for row in rows)
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "13 records never reached Klaviyo" in text
    webhooks = browser.find_element(By.ID, "trigger-latency")
    assert webhooks.is_displayed()
    assert webhooks.find_element(By.TAG_NAME, "h3").text == "Webhook to Klaviyo"
    stats = webhooks.find_elements(By.CSS_SELECTOR, ".stat .value")
    assert [stat.text for stat in stats] == ["50s", "1m 40s", "3h 00m", "22", "4"]
    assert browser.find_element(By.ID, "trigger-kpi").is_displayed()
    assert "a***@example.com" in text
    for email in EMAILS:
        assert email not in text.lower()
    assert console_errors(browser) == []

    section = browser.find_element(By.ID, "open-returns")
    stale = section.find_elements(By.CSS_SELECTOR, "#open-returns-table .badge.warn")
    assert [badge.text for badge in stale] == ["a newer update was not delivered: invalid"]
    assert all(badge.is_displayed() for badge in stale)
    # Below the sticky table of contents, so the section's heading is in the picture.
    browser.execute_script("window.scrollTo(0, arguments[0].offsetTop - 80)", section)
    (tmp_path / "open-returns.png").write_bytes(section.screenshot_as_png)

    screenshot = tmp_path / "report.png"
    png = base64.b64decode(browser.get_screenshot_as_base64())
    screenshot.write_bytes(png)
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) > 10_000  # a rendered page, not a blank one


def test_empty_report_renders_in_chromium(browser, tmp_path, clock):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    migrated_ledger(url).close()
    output = tmp_path / "empty.html"
    build_report(url, output)
    console_errors(browser)
    browser.get(output.as_uri())
    heading = browser.find_element(By.CSS_SELECTOR, "#empty h2")
    assert heading.text == "Nothing delivered yet"
    assert browser.find_elements(By.TAG_NAME, "svg") == []
    assert console_errors(browser) == []
