"""A brand's run launched on Dagster: its webserver's GraphQL API, over plain HTTP.

With ``dagster_url`` set (and a brands file), the receiver does not start ``swap-brands run``
itself: it asks the Dagster instance that runs the brands' code location to launch the brand's
partition of the ``returns_to_klaviyo`` job, so Dagster's run queue keeps its limits (one run per
brand, a global cap), the run shows in Dagster's UI beside the scheduled ones, and the asset's own
outcome-driven retries apply. The receiver then waits for that run to finish and reads the
``outcome`` the asset recorded (its materialisation's metadata, or its failure's), so what
happens to the deliveries follows the same outcome rules as a run it started itself.

The receiver lives in Meltano's virtualenv and Dagster in its own (``orchestration/.venv``), so
this speaks GraphQL over HTTP and imports nothing of Dagster. The queries are the shapes of
Dagster's own Python GraphQL client (``dagster_graphql.DagsterGraphQLClient``:
``launchPipelineExecution`` with the job found by name in the workspace, ``terminateRun``), plus
``runOrError`` and ``logsForRun`` for the status and the outcome.

Errors say what Dagster answered (its error type and message, or the kind of network failure),
never the URL (it may carry credentials): they end up in the state db, on ``/health`` and in alerts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

#: The code location's job (orchestration/swap_orchestration/definitions.py).
JOB_NAME = "returns_to_klaviyo"
#: The tag that makes a run of a partitioned job a run of one partition (Dagster's own name);
#: the instance's run queue also limits it to one run per value (orchestration/dagster.yaml).
PARTITION_TAG = "dagster/partition"
#: The asset's metadata entry holding the run's outcome (decisions §2).
OUTCOME_ENTRY = "outcome"
#: Dagster's run statuses after which nothing more happens to the run.
FINISHED = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
#: Set on a failed run that the instance's ``run_retries`` will start again (its worker died)...
WILL_RETRY_TAG = "dagster/will_retry"
#: ... and, once it has, the id of the run that does.
RETRY_RUN_TAG = "dagster/auto_retry_run_id"
#: How long one GraphQL request may take.
REQUEST_SECONDS = 30.0
#: Events read per page of a run's event log.
EVENTS_PAGE = 500

JOBS_QUERY = """
query SwapWebhooksJobs {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { name location { name } pipelines { name } } }
    ... on Error { message }
  }
}
"""

LAUNCH_MUTATION = """
mutation SwapWebhooksLaunch($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey }
    ... on Error { message }
  }
}
"""

STATUS_QUERY = """
query SwapWebhooksRunStatus($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status tags { key value } }
    ... on Error { message }
  }
}
"""

EVENTS_QUERY = """
query SwapWebhooksRunEvents($runId: ID!, $afterCursor: String, $limit: Int) {
  logsForRun(runId: $runId, afterCursor: $afterCursor, limit: $limit) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on MaterializationEvent {
          metadataEntries { label ... on TextMetadataEntry { text } }
        }
        ... on ExecutionStepFailureEvent {
          failureMetadata { metadataEntries { label ... on TextMetadataEntry { text } } }
        }
      }
    }
    ... on Error { message }
  }
}
"""

TERMINATE_MUTATION = """
mutation SwapWebhooksTerminate($runId: String!) {
  terminateRun(runId: $runId) { __typename ... on Error { message } }
}
"""


class DagsterError(RuntimeError):
    """Dagster could not be reached, or answered with an error: the launch did not happen."""


@dataclass(frozen=True)
class RunState:
    """A run's status, and whether Dagster starts it again (and as which run)."""

    status: str
    tags: Mapping[str, str]

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def retried_as(self) -> str | None:
        return self.tags.get(RETRY_RUN_TAG)

    @property
    def to_be_retried(self) -> bool:
        """Failed, but Dagster will start it again: its outcome is the retry's."""
        return self.status == "FAILURE" and self.tags.get(WILL_RETRY_TAG) == "true"


@dataclass(frozen=True)
class JobSelector:
    """Where the job is in the Dagster workspace (found by name, as Dagster's client does)."""

    location: str
    repository: str


class DagsterClient:
    """The few calls the receiver makes to one Dagster webserver."""

    def __init__(self, url: str, *, timeout: float = REQUEST_SECONDS) -> None:
        self.endpoint = url.rstrip("/") + "/graphql"
        self.timeout = timeout

    async def launch(self, partition: str, tags: Mapping[str, str]) -> str:
        """Launch the job's run of ``partition``; its run id once Dagster accepted it."""
        selector = await self.job()
        params = {
            "selector": {
                "repositoryLocationName": selector.location,
                "repositoryName": selector.repository,
                "pipelineName": JOB_NAME,
            },
            "runConfigData": {},
            "mode": "default",
            "executionMetadata": {
                "tags": [
                    {"key": key, "value": value}
                    for key, value in {**tags, PARTITION_TAG: partition}.items()
                ]
            },
        }
        data = await self._call(LAUNCH_MUTATION, {"executionParams": params})
        answer = data["launchPipelineExecution"]
        if answer["__typename"] != "LaunchRunSuccess":
            raise DagsterError(f"launch refused: {_why(answer)}")
        return str(answer["run"]["runId"])

    async def job(self) -> JobSelector:
        """The repository holding ``returns_to_klaviyo``: read each time, so a reload counts."""
        data = await self._call(JOBS_QUERY, {})
        answer = data["repositoriesOrError"]
        if answer["__typename"] != "RepositoryConnection":
            raise DagsterError(f"cannot list the workspace: {_why(answer)}")
        found = [
            JobSelector(node["location"]["name"], node["name"])
            for node in answer["nodes"]
            if any(job["name"] == JOB_NAME for job in node["pipelines"])
        ]
        if len(found) != 1:
            raise DagsterError(
                f"{len(found)} code locations have a job {JOB_NAME} (the brands' must be the one)"
            )
        return found[0]

    async def state(self, run_id: str) -> RunState:
        """The run's status (QUEUED, STARTING, STARTED, SUCCESS, FAILURE, CANCELED, ...), tags."""
        answer = (await self._call(STATUS_QUERY, {"runId": run_id}))["runOrError"]
        if answer["__typename"] != "Run":
            raise DagsterError(f"cannot read run {run_id}: {_why(answer)}")
        tags = {str(tag["key"]): str(tag["value"]) for tag in answer.get("tags") or []}
        return RunState(str(answer["status"]), tags)

    async def outcome(self, run_id: str) -> str | None:
        """The last ``outcome`` the run's asset recorded (succeeded or failed); None without one."""
        found: str | None = None
        cursor: str | None = None
        while True:
            variables = {"runId": run_id, "afterCursor": cursor, "limit": EVENTS_PAGE}
            answer = (await self._call(EVENTS_QUERY, variables))["logsForRun"]
            if answer["__typename"] != "EventConnection":
                raise DagsterError(f"cannot read the events of run {run_id}: {_why(answer)}")
            for event in answer["events"]:
                found = _outcome_entry(event) or found
            if not answer["hasMore"] or not answer["events"]:
                return found
            cursor = answer["cursor"]

    async def terminate(self, run_id: str) -> None:
        """Ask Dagster to stop the run (the asset then stops its Meltano run with SIGTERM)."""
        answer = (await self._call(TERMINATE_MUTATION, {"runId": run_id}))["terminateRun"]
        if answer["__typename"] != "TerminateRunSuccess":
            raise DagsterError(f"cannot terminate run {run_id}: {_why(answer)}")

    async def _call(self, query: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        """One GraphQL request; any failure to get a usable answer is a :class:`DagsterError`."""
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.post(
                    self.endpoint, json={"query": query, "variables": dict(variables)}
                )
        except httpx.HTTPError as error:
            raise DagsterError(f"Dagster unreachable ({type(error).__name__})") from None
        if response.status_code != 200:
            raise DagsterError(f"Dagster answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise DagsterError("Dagster answered something that is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            errors = body.get("errors") if isinstance(body, dict) else None
            first = errors[0].get("message") if isinstance(errors, list) and errors else None
            raise DagsterError(f"Dagster refused the query: {str(first)[:300]}")
        data: dict[str, Any] = body["data"]
        return data


def _why(answer: Mapping[str, Any]) -> str:
    """Dagster's error type and its message (or first message), shortened."""
    detail = answer.get("message")
    if detail is None and answer.get("errors"):
        detail = answer["errors"][0].get("message")
    detail = detail or answer.get("invalidStepKey") or answer.get("stepKey") or ""
    return f"{answer.get('__typename')}: {str(detail)[:300]}".rstrip(": ")


def _outcome_entry(event: Mapping[str, Any]) -> str | None:
    entries = event.get("metadataEntries")
    if entries is None and event.get("failureMetadata"):
        entries = event["failureMetadata"].get("metadataEntries")
    for entry in entries or []:
        if entry.get("label") == OUTCOME_ENTRY and entry.get("text"):
            return str(entry["text"])
    return None
