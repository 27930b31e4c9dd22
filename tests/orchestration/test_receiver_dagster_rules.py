"""The receiver's rules for runs launched on Dagster, against a scripted GraphQL endpoint.

The real thing (``dagster dev``) is ``test_dagster_webhooks.py``; here Dagster's answers are
chosen, to check what the receiver makes of each: the outcome the asset recorded decides, no
second launch while the launched run is queued or running, a refused launch keeps the deliveries.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from emulators.swap.webhooks import WebhookSender
from swap_webhooks import runner
from swap_webhooks.settings import DEFAULT_RUN_COMMAND, SettingsError, load_settings
from tests.webhooks.support import ReceiverThread, settings, wait_until

SECRET = "whsk_acme_0123456789abcdef0123456789abcdef"


class ScriptedDagster:
    """Answers the receiver's GraphQL calls from ``status``/``outcome``; records each launch."""

    def __init__(self) -> None:
        self.launches: list[dict[str, Any]] = []
        self.status = "QUEUED"
        self.outcome: str | None = None
        self.refuse: str | None = None
        #: Runs answered on their own: ``run id -> (status, tags)``.
        self.per_run: dict[str, tuple[str, dict[str, str]]] = {}
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answer = json.dumps({"data": scripted.answer(body)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        query, variables = body["query"], body.get("variables") or {}
        if "repositoriesOrError" in query:
            node = {"name": "__repository__", "location": {"name": "swap-klaviyo-brands"}}
            jobs = [{"name": "returns_to_klaviyo"}, {"name": "__ASSET_JOB"}]
            nodes = [{**node, "pipelines": jobs}]
            return {"repositoriesOrError": {"__typename": "RepositoryConnection", "nodes": nodes}}
        if "launchPipelineExecution" in query:
            return {"launchPipelineExecution": self.launch(variables["executionParams"])}
        if "runOrError" in query:
            status, tags = self.per_run.get(variables["runId"], (self.status, {}))
            pairs = [{"key": key, "value": value} for key, value in tags.items()]
            return {"runOrError": {"__typename": "Run", "status": status, "tags": pairs}}
        if "logsForRun" in query:
            entries: list[dict[str, Any]] = (
                [{"label": "outcome", "text": self.outcome}] if self.outcome else []
            )
            # A try that asked to be retried (no metadata), then the last try's failure.
            events: list[dict[str, Any]] = [
                {"__typename": "ExecutionStepFailureEvent", "failureMetadata": None}
            ]
            events.append(
                {
                    "__typename": "ExecutionStepFailureEvent",
                    "failureMetadata": {"metadataEntries": entries},
                }
            )
            connection = {"__typename": "EventConnection", "cursor": "2", "hasMore": False}
            return {"logsForRun": {**connection, "events": events}}
        raise AssertionError(f"unexpected query: {query}")

    def launch(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.refuse is not None:
            return {"__typename": "PythonError", "message": self.refuse}
        self.launches.append(params)
        return {"__typename": "LaunchRunSuccess", "run": {"runId": f"run-{len(self.launches)}"}}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def dagster() -> Iterator[ScriptedDagster]:
    scripted = ScriptedDagster()
    try:
        yield scripted
    finally:
        scripted.close()


@pytest.fixture
def receiver(
    tmp_path: Path, dagster: ScriptedDagster, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ReceiverThread]:
    monkeypatch.setattr(runner, "DAGSTER_POLL_SECONDS", 0.02)
    file = tmp_path / "brands.yml"
    file.write_text(
        "brands:\n- {name: acme, store_id: store_acme, swap_api_key_env: A,"
        " klaviyo_api_key_env: B, webhook_secret_env: ACME_WEBHOOK_SECRET}\n"
    )
    config = settings(
        tmp_path,
        list(DEFAULT_RUN_COMMAND),
        brands_file=str(file),
        dagster_url=dagster.url + "/",
        coalesce_seconds=0.01,
        retry_seconds=0.02,
        max_retry_seconds=0.05,
    )
    with ReceiverThread(config, env={"ACME_WEBHOOK_SECRET": SECRET}) as started:
        yield started


def send(receiver: ReceiverThread, number: int) -> None:
    sender = WebhookSender(receiver.url, SECRET, "store_acme")
    sent = sender.send({"return_id": f"ret_{number}", "order_id": "1001"}, "returnCreated")
    assert sent.status == 200


def acme(receiver: ReceiverThread) -> dict[str, Any]:
    return dict(receiver.health()["brands"]["acme"])


@pytest.mark.slow  # about a second: the receiver's runs, one after another
def test_no_second_launch_while_the_launched_run_goes_on(
    receiver: ReceiverThread, dagster: ScriptedDagster
) -> None:
    send(receiver, 1)
    wait_until(lambda: dagster.launches, what="the launch")
    [params] = dagster.launches
    assert params["selector"] == {
        "repositoryLocationName": "swap-klaviyo-brands",
        "repositoryName": "__repository__",
        "pipelineName": "returns_to_klaviyo",
    }
    tags = {tag["key"]: tag["value"] for tag in params["executionMetadata"]["tags"]}
    assert tags == {"dagster/partition": "acme", "swap/brand": "acme", "swap/webhook_run": "1"}
    current = wait_until(lambda: acme(receiver)["current_run"], what="the current run")
    assert current["dagster_run_id"] == "run-1"
    dagster.status = "STARTED"
    for number in (2, 3, 4):
        send(receiver, number)
    wait_until(lambda: acme(receiver)["queue"]["pending"] == 3, what="the burst to wait")
    assert len(dagster.launches) == 1
    dagster.outcome, dagster.status = "succeeded", "SUCCESS"
    wait_until(lambda: acme(receiver)["queue"]["pending"] == 0, what="the burst to be taken")
    wait_until(lambda: ended(receiver) == "succeeded", what="the burst's run")
    assert len(dagster.launches) == 2
    assert acme(receiver)["last_run"]["dagster_run_id"] == "run-2"
    runs = receiver.metrics()["runs"]
    assert (runs["started"], runs["succeeded"]) == (2, 2)
    assert receiver.metrics()["deliveries"]["coalesced"] == 2


def ended(receiver: ReceiverThread) -> str | None:
    """The brand's last run's outcome once it has ended (None while it runs)."""
    outcome = (acme(receiver)["last_run"] or {}).get("outcome")
    return None if outcome == "running" else outcome


@pytest.mark.slow  # about a second: the receiver's runs, one after another
def test_the_outcome_the_asset_recorded_decides(
    receiver: ReceiverThread, dagster: ScriptedDagster
) -> None:
    dagster.status, dagster.outcome = "FAILURE", "auth_failed"
    send(receiver, 1)
    wait_until(lambda: ended(receiver), what="a run's end")
    last = acme(receiver)["last_run"]
    assert last["outcome"] == "auth_failed"
    assert last["dagster_run_id"] == "run-1"
    assert "run outcome: auth_failed" in last["output_tail"]
    # Not handled: the delivery waits for the next run (after a back-off).
    wait_until(lambda: len(dagster.launches) >= 2, what="the launch after the back-off")
    # A failed step that set aside too much: handled (the target alerted), no more launches.
    dagster.outcome = "set_aside_over_threshold"
    wait_until(
        lambda: ended(receiver) == "set_aside_over_threshold",
        what="the run that handles the delivery",
    )
    queue = acme(receiver)["queue"]
    assert (queue["pending"], queue["in_run"]) == (0, 0)


@pytest.mark.slow  # about a second: the receiver's runs, one after another
def test_a_refused_launch_keeps_the_deliveries_and_says_why(
    receiver: ReceiverThread, dagster: ScriptedDagster
) -> None:
    dagster.refuse = "partition 'acme' not found: reload the code location"
    send(receiver, 1)
    wait_until(lambda: (acme(receiver)["last_run"] or {}).get("note"), what="a refused launch")
    last = acme(receiver)["last_run"]
    assert last["outcome"] == "crashed"
    assert last["dagster_run_id"] is None
    assert last["note"] == (
        "Dagster did not launch the run: launch refused: PythonError: partition 'acme' not"
        " found: reload the code location"
    )
    assert acme(receiver)["queue"]["pending"] + acme(receiver)["queue"]["in_run"] == 1
    dagster.refuse = None
    dagster.status, dagster.outcome = "SUCCESS", "succeeded"
    wait_until(lambda: ended(receiver) == "succeeded", what="the delivery's run")
    queue = acme(receiver)["queue"]
    assert (queue["pending"], queue["in_run"]) == (0, 0)


def test_dagster_url_needs_a_brands_file_and_an_http_url(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="dagster_url needs brands_file"):
        load_settings(
            env={}, webhook_secret=SECRET, store_id="s", dagster_url="http://127.0.0.1:3000"
        )
    with pytest.raises(SettingsError, match="must be an http"):
        load_settings(env={}, brands_file=str(tmp_path / "b.yml"), dagster_url="127.0.0.1:3000")
    config = load_settings(
        env={"SWAP_WEBHOOKS_DAGSTER_URL": "http://dagster:3000"},
        brands_file=str(tmp_path / "b.yml"),
        project_dir=tmp_path,
    )
    assert config.dagster_url == "http://dagster:3000"
    # No command of the receiver's starts the runs: the run command is not checked.
    assert runner.check_command(config, {"PATH": ""}) is None


@pytest.mark.slow  # about a second: two receivers, one after the other
def test_a_restarted_receiver_follows_its_launched_run_instead_of_launching_again(
    receiver: ReceiverThread, dagster: ScriptedDagster
) -> None:
    send(receiver, 1)
    wait_until(lambda: (acme(receiver)["current_run"] or {}).get("dagster_run_id"), what="launch")
    dagster.status = "STARTED"
    receiver.stop()
    with ReceiverThread(receiver.settings, env={"ACME_WEBHOOK_SECRET": SECRET}) as again:
        current = wait_until(lambda: acme(again)["current_run"], what="the run followed again")
        assert current["dagster_run_id"] == "run-1"
        dagster.outcome, dagster.status = "succeeded", "SUCCESS"
        wait_until(lambda: ended(again) == "succeeded", what="the followed run's end")
        health = acme(again)
        runs = again.metrics()["runs"]
    assert len(dagster.launches) == 1
    assert health["last_run"]["dagster_run_id"] == "run-1"
    assert (health["queue"]["pending"], health["queue"]["in_run"]) == (0, 0)
    assert (runs["started"], runs["succeeded"], runs["interrupted"]) == (1, 1, 0)
    log = Path(health["last_run"]["log_file"]).read_text()
    assert "the receiver started again: following Dagster run run-1" in log


@pytest.mark.slow  # about a second: the receiver's runs, one after another
def test_a_run_dagster_retries_itself_is_followed_to_the_retrys_outcome(
    receiver: ReceiverThread, dagster: ScriptedDagster
) -> None:
    will_retry = {"dagster/will_retry": "true"}
    dagster.per_run["run-1"] = ("FAILURE", will_retry)  # its worker died; Dagster retries it
    send(receiver, 1)
    wait_until(lambda: dagster.launches, what="the launch")
    log = wait_until(lambda: (acme(receiver)["current_run"] or {}).get("log_file"), what="run")
    wait_until(lambda: "FAILURE (Dagster will retry it)" in Path(log).read_text(), what="retry")
    assert ended(receiver) is None  # still waiting for the retry, not a failure of ours
    dagster.per_run["run-1"] = ("FAILURE", {**will_retry, "dagster/auto_retry_run_id": "run-9"})
    dagster.outcome, dagster.status = "succeeded", "SUCCESS"  # run-9's
    wait_until(lambda: ended(receiver) == "succeeded", what="the retry's outcome")
    assert len(dagster.launches) == 1
    last = acme(receiver)["last_run"]
    assert last["dagster_run_id"] == "run-9"
    assert "Dagster run run-1: FAILURE; retried as run-9" in last["output_tail"]


@pytest.mark.slow  # about a second: the receiver's run
def test_a_run_without_an_outcome_is_not_taken_for_a_success(
    receiver: ReceiverThread, dagster: ScriptedDagster
) -> None:
    dagster.status = "SUCCESS"  # and no outcome in the asset's metadata
    send(receiver, 1)
    wait_until(lambda: ended(receiver), what="the run's end")
    last = acme(receiver)["last_run"]
    assert (last["outcome"], last["note"]) == (
        "crashed",
        "Dagster run run-1: SUCCESS without a run outcome",
    )
    queue = acme(receiver)["queue"]
    assert queue["pending"] + queue["in_run"] == 1  # the delivery waits for the next run
