"""``swap-health summary|report``: ``klaviyo-ops summary|report`` plus the webhook latency.

Installed beside target-klaviyo (meltano.yml's ``target-klaviyo`` pip_url), so that
``meltano invoke target-klaviyo:summary`` and ``:report`` run it with the target's settings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from swap_health.webhooks import WebhooksDbError, webhook_latency
from target_klaviyo.cli import load_config, since_option
from target_klaviyo.report import TriggerLatency, build_report, load_report_data, terminal_summary
from target_klaviyo.terminal import escape_controls

webhooks_db_option = click.option(
    "--webhooks-db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("runtime/swap-webhooks.sqlite"),
    show_default=True,
    help="swap-webhooks' state db (a missing file means no webhooks).",
)


@click.group()
@click.option(
    "--config",
    "config_source",
    default="ENV",
    show_default=True,
    help="target-klaviyo config: a JSON file, or ENV for TARGET_KLAVIYO_* variables.",
)
@click.pass_context
def main(context: click.Context, config_source: str) -> None:
    """The integration health report of this project (target-klaviyo's, with webhooks)."""
    context.obj = load_config(config_source)


@main.command()
@webhooks_db_option
@since_option
@click.pass_obj
def summary(config: dict[str, Any], webhooks_db: Path, since: datetime | None) -> None:
    """Print what reached Klaviyo, what was set aside and why, and the webhook latency."""
    with _usage_errors():
        data = load_report_data(config["ledger_url"], since=since)
        data.triggers = _latency(config, webhooks_db, since)
    click.echo(terminal_summary(data))


@main.command()
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html")
)
@webhooks_db_option
@since_option
@click.pass_obj
def report(config: dict[str, Any], output: Path, webhooks_db: Path, since: datetime | None) -> None:
    """Write the integration health report (one offline HTML page) and print its summary."""
    with _usage_errors():
        triggers = _latency(config, webhooks_db, since)
        data = build_report(config["ledger_url"], output, since=since, triggers=triggers)
    click.echo(terminal_summary(data))
    click.echo(escape_controls(f"Report written to {output}"))


@contextlib.contextmanager
def _usage_errors() -> Iterator[None]:
    """No ledger yet, or a file that is not the receiver's state db: one line, no traceback."""
    try:
        yield
    except (FileNotFoundError, WebhooksDbError) as exc:
        raise click.ClickException(str(exc)) from exc


def _latency(config: dict[str, Any], webhooks_db: Path, since: datetime | None) -> TriggerLatency:
    """The latency from each of the receiver's deliveries to Klaviyo's acceptance."""
    return webhook_latency(config["ledger_url"], webhooks_db, since)
