"""The Dagster code location: every brand of ``brands.yml`` as a partition of one asset.

``klaviyo_returns`` is "the brand's Swap returns delivered to its Klaviyo account"; materialising
a partition runs that brand's pipeline once (``swap-brands run <brand>``, one Meltano run through
the project's launcher). Each brand has its own schedule (its ``schedule`` override, else every 5
minutes). The run's outcome, exit status, duration, log file and last log lines are the
materialisation's metadata, or the failure's. Retries follow the outcome (``pipeline.py``).
Concurrency (one run per brand, a global limit) is the instance's run queue: ``dagster.yaml``.
"""

import os
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext, ScheduleEvaluationContext

from swap_orchestration.pipeline import MAX_RETRIES, BrandRun, Project, run_brand

PROJECT = Project.from_env()
BRANDS = PROJECT.brands()
PARTITIONS = dg.StaticPartitionsDefinition([brand["name"] for brand in BRANDS])
JOB_NAME = "returns_to_klaviyo"


def _retry_wait(seconds: float) -> float:
    """Tests shorten the waits (``SWAP_RETRY_WAIT_SCALE``); production keeps them."""
    return seconds * float(os.environ.get("SWAP_RETRY_WAIT_SCALE", "1"))


def _metadata(run: BrandRun) -> dict[str, Any]:
    return {
        "brand": run.brand,
        "outcome": run.outcome,
        "exit_code": run.exit_code,
        "duration_seconds": run.duration_seconds,
        "log_file": dg.MetadataValue.path(str(run.log_file)),
        "log_tail": dg.MetadataValue.md(f"```\n{run.tail}\n```"),
    }


@dg.asset(  # type: ignore[untyped-decorator]  # dagster is untyped here (its own venv)
    partitions_def=PARTITIONS,
    group_name="brands",
    description="The brand's Swap returns, delivered to its Klaviyo account (one Meltano run).",
    kinds={"meltano"},
)
def klaviyo_returns(context: AssetExecutionContext) -> dg.MaterializeResult:
    brand = context.partition_key
    label = f"{context.run_id}-{context.retry_number}"
    run = run_brand(PROJECT, brand, label)
    context.log.info(f"{brand}: run outcome {run.outcome} (exit {run.exit_code})")
    if run.succeeded:
        return dg.MaterializeResult(metadata=_metadata(run))
    wait = run.retry_after
    if wait is not None and context.retry_number < MAX_RETRIES:
        context.log.warning(f"{brand}: {run.outcome}; trying again in {_retry_wait(wait):.0f} s")
        raise dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=_retry_wait(wait))
    raise dg.Failure(
        description=f"brand {brand}: run outcome {run.outcome}",
        metadata=_metadata(run),
        allow_retries=False,
    )


returns_job = dg.define_asset_job(
    JOB_NAME,
    selection=[klaviyo_returns],
    partitions_def=PARTITIONS,
    description="One brand's pipeline run (choose the brand as the partition).",
)


def _schedule(brand: dict[str, Any]) -> dg.ScheduleDefinition:
    name = brand["name"]

    def requests(context: ScheduleEvaluationContext) -> dg.RunRequest:
        return dg.RunRequest(partition_key=name, tags={"swap/brand": name})

    running = os.environ.get("SWAP_SCHEDULES", "running") == "running"
    return dg.ScheduleDefinition(
        name=f"{name}_returns_to_klaviyo",
        cron_schedule=brand["schedule"],
        job=returns_job,
        execution_fn=requests,
        default_status=(
            dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED
        ),
        description=f"{name}: the pipeline on its schedule ({brand['schedule']}).",
    )


defs = dg.Definitions(
    assets=[klaviyo_returns],
    jobs=[returns_job],
    schedules=[_schedule(brand) for brand in BRANDS],
)
