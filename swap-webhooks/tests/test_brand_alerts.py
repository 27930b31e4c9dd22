"""Each brand's receiver alerts go to that brand's own destination and name it and its outcome.

An agency's brands are looked after by different people: a brand whose pipeline stopped must
reach its own channel (``alert_webhook_url_env`` in the brands file), saying which brand and why,
and nobody else's. The staleness alert repeats as any outcome does (decisions §2): once, then on a
new outcome or a day later.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from emulators.swap.webhooks import WebhookSender
from swap_webhooks.alerts import stale_alert_due
from swap_webhooks.brands import load_brands
from swap_webhooks.runner import Runner
from swap_webhooks.settings import Secret, SettingsError, load_settings
from swap_webhooks.store import DeliveryStore, RunReport
from swap_webhooks.verify import Delivery
from tests.support import STORE, AlertSink, ReceiverThread, settings, wait_until

SECRETS = {
    "acme": "whsk_acme_0123456789abcdef0123456789abcdef",
    "globex": "whsk_globex_0123456789abcdef0123456789abcd",
}
#: A brand's run: the brands named in its first argument fail with auth_failed, others succeed
#: (the receiver gives the brand's name as the last argument).
FAKE_BRAND_RUN = """\
import sys
outcome = "auth_failed" if sys.argv[-1] in sys.argv[1].split(",") else "succeeded"
print(f"run outcome: {outcome}")
sys.exit(0 if outcome == "succeeded" else 1)
"""


def brands_yml(tmp_path: Path, *, globex_alerts: bool = True) -> Path:
    globex_alert = ", alert_webhook_url_env: GLOBEX_ALERT_WEBHOOK_URL" if globex_alerts else ""
    path = tmp_path / "brands.yml"
    path.write_text(
        "brands:\n"
        "- {name: acme, store_id: store_acme, swap_api_key_env: A, klaviyo_api_key_env: B,"
        " webhook_secret_env: ACME_WEBHOOK_SECRET, alert_webhook_url_env: ACME_ALERT_WEBHOOK_URL}\n"
        "- {name: globex, store_id: store_globex, swap_api_key_env: C, klaviyo_api_key_env: D,"
        f" webhook_secret_env: GLOBEX_WEBHOOK_SECRET{globex_alert}}}\n"
    )
    return path


def secrets_env() -> dict[str, str]:
    return {f"{brand.upper()}_WEBHOOK_SECRET": secret for brand, secret in SECRETS.items()}


@pytest.mark.slow  # runs of a fake run command until the failing brand goes stale (3 s)
def test_a_failing_brand_alerts_its_own_destination_with_its_name_and_outcome(
    tmp_path: Path,
) -> None:
    fake = tmp_path / "fake_brand_run.py"
    fake.write_text(FAKE_BRAND_RUN)
    with AlertSink() as acme, AlertSink() as globex, AlertSink() as receivers:
        config = settings(
            tmp_path,
            [sys.executable, str(fake), "acme"],
            brands_file=str(brands_yml(tmp_path)),
            alert_webhook_url=receivers.url,
            stale_after_minutes=0.05,  # 3 s: a brand whose run succeeds is never that late
            retry_seconds=0.05,
            max_retry_seconds=0.05,
        )
        env = {
            **secrets_env(),
            "ACME_ALERT_WEBHOOK_URL": acme.url,
            "GLOBEX_ALERT_WEBHOOK_URL": globex.url,
            "PATH": "/usr/bin:/bin",
        }
        with ReceiverThread(config, env=env) as receiver:
            for brand in ("acme", "globex"):
                sender = WebhookSender(receiver.url, SECRETS[brand], f"store_{brand}")
                sent = sender.send(
                    {"return_id": f"ret_{brand}_1", "order_id": "1"}, "returnCreated"
                )
                assert sent.status == 200
            wait_until(lambda: acme.texts, what="acme's staleness alert")
            failed = receiver.metrics()["runs"]["auth_failed"]
            wait_until(
                lambda: receiver.metrics()["runs"]["auth_failed"] >= failed + 3,
                what="more failed runs of acme",
            )
            brands = receiver.health()["brands"]
    assert brands["globex"]["last_run"]["outcome"] == "succeeded"
    assert brands["acme"]["last_run"]["outcome"] == "auth_failed"
    [text] = acme.texts  # once: the runs after it failed the same way
    assert text.startswith(
        "*Swap → Klaviyo acme: no pipeline run has succeeded for 0.05 minutes*"
        " (last run `auth_failed`)"
    )
    assert "globex" not in text
    assert "whsk_" not in text
    assert "ret_" not in text  # what waits is in the state db, not in the alert
    assert globex.texts == []
    assert receivers.texts == []  # both brands have a destination of their own


def test_each_brand_gets_its_own_alert_destination_or_the_receivers(tmp_path: Path) -> None:
    config = load_settings(
        env={},
        brands_file=str(brands_yml(tmp_path, globex_alerts=False)),
        project_dir=tmp_path,
        alert_webhook_url="http://127.0.0.1:9/receiver",
    )
    env = {**secrets_env(), "ACME_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/acme-token"}
    brands = load_brands(config, env)
    assert brands["store_acme"].settings.alert_webhook_url == Secret(
        "http://127.0.0.1:9/acme-token"
    )
    assert brands["store_globex"].settings.alert_webhook_url == Secret(
        "http://127.0.0.1:9/receiver"
    )
    assert "acme-token" not in repr(brands["store_acme"].settings)
    with pytest.raises(
        SettingsError, match=r"brand acme: ACME_ALERT_WEBHOOK_URL \(its alert webhook URL\)"
    ):
        load_brands(config, secrets_env())


def test_the_staleness_alert_repeats_on_a_new_outcome_or_a_day_later(tmp_path: Path) -> None:
    """The runner's own check at chosen moments, on a delivery that has waited an hour."""
    an_hour_ago = time.time() - 3600
    with AlertSink() as sink:
        config = settings(tmp_path, ["true"], stale_after_minutes=1, alert_webhook_url=sink.url)

        async def checks(outcomes: list[str]) -> list[int]:
            seen = []
            with DeliveryStore(config.state_db) as store:
                runner = Runner(config, store, env={}, brand="acme")
                store.add(a_delivery(), an_hour_ago)
                for outcome in outcomes:
                    claim = store.claim()
                    assert claim is not None
                    store.finish(claim.run_id, RunReport(outcome=outcome, exit_code=1))
                    await runner._check_stale()
                    seen.append(len(sink.texts))
            return seen

        counts = asyncio.run(checks(["crashed", "crashed", "auth_failed", "auth_failed"]))
        texts = list(sink.texts)
    assert counts == [1, 1, 2, 2]
    assert texts[0].startswith("*Swap → Klaviyo acme: no pipeline run has succeeded")
    assert "(last run `crashed`)" in texts[0]
    assert "(last run `auth_failed`)" in texts[1]
    now = datetime.now(timezone.utc)
    sent = (now - timedelta(hours=23)).isoformat()
    assert not stale_alert_due(sent, "auth_failed", "auth_failed", now)
    assert stale_alert_due(sent, "auth_failed", "auth_failed", now + timedelta(hours=1))
    assert stale_alert_due(sent, "auth_failed", "crashed", now)
    assert stale_alert_due(None, None, None, now)


def a_delivery() -> Delivery:
    now = time.time()
    return Delivery(
        nonce="nonce-waiting",
        event="returnCreated",
        return_id="ret_00001",
        order_id="700001",
        store_id=STORE,
        issued_at=now,
        expires_at=now + 300,
    )
