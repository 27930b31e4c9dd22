"""One receiver for every brand of a brands file: the token's store picks the secret and the run."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import pytest

from emulators.swap.webhooks import WebhookSender
from swap_webhooks.settings import SettingsError, load_settings
from tests.support import ReceiverThread, settings, wait_until

SECRETS = {
    "acme": "whsk_acme_0123456789abcdef0123456789abcdef",
    "globex": "whsk_globex_0123456789abcdef0123456789abcd",
}
FAKE_BRAND_RUN = """\
import json, sys
with open(sys.argv[1], "a") as log:
    log.write(json.dumps(sys.argv[2:]) + "\\n")
print("run outcome: succeeded")
"""


def brands_yml(tmp_path: Path) -> Path:
    path = tmp_path / "brands.yml"
    path.write_text(
        "brands:\n"
        "- {name: acme, store_id: store_acme, swap_api_key_env: A, klaviyo_api_key_env: B,"
        " webhook_secret_env: ACME_WEBHOOK_SECRET}\n"
        "- {name: globex, store_id: store_globex, swap_api_key_env: C, klaviyo_api_key_env: D,"
        " webhook_secret_env: GLOBEX_WEBHOOK_SECRET}\n"
        "- {name: initech, store_id: store_initech, swap_api_key_env: E, klaviyo_api_key_env: F}\n"
    )
    return path


def ran(log: Path, brand: str) -> bool:
    return [brand] in runs(log)


def runs(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.slow  # two runs of a fake run command
def test_each_store_is_verified_with_its_brands_secret_and_runs_that_brand(
    tmp_path: Path,
) -> None:
    fake = tmp_path / "fake_brand_run.py"
    fake.write_text(FAKE_BRAND_RUN)
    log = tmp_path / "runs.jsonl"
    config = settings(
        tmp_path, [sys.executable, str(fake), str(log)], brands_file=str(brands_yml(tmp_path))
    )
    env = {
        "ACME_WEBHOOK_SECRET": SECRETS["acme"],
        "GLOBEX_WEBHOOK_SECRET": SECRETS["globex"],
        "PATH": "/usr/bin:/bin",
    }
    with ReceiverThread(config, env=env) as receiver:
        for brand in ("acme", "globex"):
            sent = WebhookSender(receiver.url, SECRETS[brand], f"store_{brand}").send(
                {"return_id": f"ret_{brand}_1", "order_id": "1001"}, "returnCreated"
            )
            assert sent.status == 200
            wait_until(functools.partial(ran, log, brand), timeout=30, what=f"{brand}'s run")
        # Another brand's secret for this store, a store not in the file, a brand without
        # webhooks: refused, and no run.
        forged = WebhookSender(receiver.url, SECRETS["globex"], "store_acme")
        assert forged.send({"return_id": "ret_x", "order_id": "1"}, "returnCreated").status == 401
        for store in ("store_unknown", "store_initech"):
            unknown = WebhookSender(receiver.url, SECRETS["acme"], store)
            assert unknown.send({"return_id": "r", "order_id": "1"}, "returnCreated").status == 403
        health = receiver.health()
        metrics = receiver.metrics()
    assert sorted(runs(log)) == [["acme"], ["globex"]]
    assert health["status"] == "ok"
    assert {name: b["last_run"]["outcome"] for name, b in health["brands"].items()} == {
        "acme": "succeeded",
        "globex": "succeeded",
    }
    assert metrics["deliveries"]["accepted"] == 2
    assert metrics["deliveries"]["refused"]["bad_signature"] == 1
    assert metrics["deliveries"]["refused"]["wrong_store"] == 2
    # Each brand's queue is its own state db beside the receiver's.
    assert (tmp_path / "webhooks.acme.sqlite").exists()
    assert (tmp_path / "webhooks.globex.sqlite").exists()


def test_a_brands_file_needs_no_single_store_but_each_secret(tmp_path: Path) -> None:
    config = load_settings(env={}, brands_file=str(brands_yml(tmp_path)), project_dir=tmp_path)
    assert config.store_id == ""
    with pytest.raises(SettingsError, match="store_id is required"):
        load_settings(env={}, webhook_secret="whsk_x", project_dir=tmp_path)
    from swap_webhooks.brands import load_brands  # noqa: PLC0415

    with pytest.raises(SettingsError, match="brand globex: GLOBEX_WEBHOOK_SECRET"):
        load_brands(config, {"ACME_WEBHOOK_SECRET": SECRETS["acme"]})
    brands = load_brands(config, {f"{b.upper()}_WEBHOOK_SECRET": s for b, s in SECRETS.items()})
    assert sorted(brands) == ["store_acme", "store_globex"]
    assert brands["store_acme"].settings.run_command == (
        "swap-brands",
        "--brands-file",
        str(tmp_path / "brands.yml"),
        "run",
        "acme",
    )
    assert "whsk" not in repr(brands["store_acme"].settings)
