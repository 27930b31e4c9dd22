"""Deliveries that arrive during a run start the next run as soon as it ends.

They have already waited a whole run, longer than the coalescing window, and any burst they belong
to is in the store by then: the runner does not wait ``coalesce_seconds`` for them again. A
delivery that finds the receiver idle is still coalesced with the rest of its burst.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from swap_webhooks.runner import Runner
from swap_webhooks.store import DeliveryStore
from tests.support import fake_run_command, settings

COALESCE = 30.0


def waits_of(runner: Runner) -> list[float]:
    """Make the runner's waits instant, and note each one asked for."""
    waits: list[float] = []

    async def sleep(seconds: float) -> bool:
        waits.append(seconds)
        return True

    runner._sleep = sleep  # type: ignore[method-assign]
    return waits


def test_only_deliveries_that_came_during_a_run_skip_the_coalescing_window(
    tmp_path: Path,
) -> None:
    config = settings(
        tmp_path, fake_run_command(tmp_path / "runs.jsonl"), coalesce_seconds=COALESCE
    )

    async def scenario() -> list[list[float]]:
        with DeliveryStore(config.state_db) as store:
            runner = Runner(config, store, env={})
            waits = waits_of(runner)
            seen = []
            runner.notify()  # the receiver is idle: a burst may be starting
            assert await runner._coalesce()
            seen.append(list(waits))
            runner.current_run = {"id": 1}
            runner.notify()  # during run 1
            runner.current_run = None
            assert await runner._coalesce()
            seen.append(list(waits))
            runner.notify()  # idle again: coalesced again
            assert await runner._coalesce()
            seen.append(list(waits))
            return seen

    idle, after_run, idle_again = asyncio.run(scenario())
    assert idle == [COALESCE]
    assert after_run == [COALESCE]  # no second wait: the run starts at once
    assert idle_again == [COALESCE, COALESCE]
