"""``klaviyo-ops``: what people do with Klaviyo and the delivery ledger between runs.

- ``summary`` and ``report``: what reached Klaviyo, what did not and why (terminal, HTML).
- ``dead-letters``: the set-aside records as JSON Lines, for a person to read or fix.
- ``replay``: send set-aside records again once their cause is fixed (a variant created, a
  profile repaired, Klaviyo back up). Each gets a new outcome in the ledger.
- ``purge``: clear personal data older than the retention period now.
- ``schema``: the ledger's schema version, and this release's.

Every command that opens the ledger first brings it to this release's schema when it is behind
(an upgrade made by a previous release's ledger), under the run lock, waiting at most
``SCHEMA_LOCK_SECONDS`` for a run that holds it; a ledger already current is used without the
lock, so a command never waits for a run in progress.

Configuration is target-klaviyo's own: ``--config FILE`` (JSON), or ``--config ENV`` to read
``TARGET_KLAVIYO_*`` variables, which is how Meltano passes it to plugin commands
(``meltano invoke target-klaviyo:replay``).
"""

from __future__ import annotations

import importlib
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import yaml
from sqlalchemy.engine import make_url

from target_klaviyo import deadletters, runlog
from target_klaviyo._compat import parse_environment_config
from target_klaviyo.catalog import STREAM as CATALOG_STREAM
from target_klaviyo.client import KlaviyoAuthError, KlaviyoClient, KlaviyoUnavailable, RunStats
from target_klaviyo.delivery import Delivery
from target_klaviyo.events import STREAM as EVENTS_STREAM
from target_klaviyo.intake import Intake
from target_klaviyo.ledger import (
    INVALID_RECORD,
    MAPPER_EXCEPTION,
    Ledger,
    LedgerSchemaError,
    head_revision,
    to_json,
)
from target_klaviyo.outcomes import safe_error
from target_klaviyo.profiles import STREAM as PROFILES_STREAM
from target_klaviyo.segments import load_definitions, provision
from target_klaviyo.sinks import run_intake
from target_klaviyo.target import TargetKlaviyo
from target_klaviyo.terminal import escape_controls
from target_klaviyo.window import parse_since

#: Set-aside outcomes a replay can resend: Klaviyo refused them, or they were held.
REPLAYABLE = ("rejected", "failed_profile_import", "held")
#: How long a command waits for a run's lock when the ledger must be upgraded first.
SCHEMA_LOCK_SECONDS = 30.0


def open_ledger(config: dict[str, Any], *, read_only: bool = False) -> Ledger:
    """The ledger at this release's schema (upgraded first under the run lock if behind)."""
    upgrade_ledger(config)
    return Ledger(config["ledger_url"], read_only=read_only)


def upgrade_ledger(config: dict[str, Any]) -> None:
    """Upgrade a ledger written by an older release; a clear refusal when it cannot be now."""
    ledger = Ledger(config["ledger_url"])
    try:
        ledger.ensure_current(SCHEMA_LOCK_SECONDS)
    except LedgerSchemaError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        ledger.close()


def _existing_ledger(config: dict[str, Any]) -> bool:
    """False for a SQLite file that does not exist (the report says so, and creates nothing)."""
    parsed = make_url(config["ledger_url"])
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return True
    return Path(str(parsed.database)).is_file()


def load_config(source: str) -> dict[str, Any]:
    """The target's config from a JSON file or from ``TARGET_KLAVIYO_*`` variables, validated."""
    schema = TargetKlaviyo.config_jsonschema
    if source == "ENV":
        config = parse_environment_config(schema, prefix="TARGET_KLAVIYO_")
        for key, value in list(config.items()):
            kind = schema["properties"].get(key, {}).get("type")
            kinds = kind if isinstance(kind, list) else [kind]
            if isinstance(value, str) and "number" in kinds:
                config[key] = float(value)
            elif isinstance(value, str) and "object" in kinds:
                config[key] = json.loads(value)
    else:
        config = json.loads(Path(source).read_text())
    defaults = {k: v["default"] for k, v in schema["properties"].items() if "default" in v}
    return {**defaults, **config}


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
    """Read and act on target-klaviyo's delivery ledger."""
    context.obj = load_config(config_source)


class _Since(click.ParamType):
    """``--since``: an ISO time, or an age such as ``30d`` (see :mod:`target_klaviyo.window`)."""

    name = "since"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            return parse_since(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


#: For ``summary`` and ``report``: only what was recorded in this window (all when absent).
since_option = click.option(
    "--since",
    type=_Since(),
    default=None,
    help="Only records and runs from this time on: an ISO time or an age (30d, 12h). "
    "The Meltano commands pass 30d.",
)


@main.command()
@since_option
@click.pass_obj
def summary(config: dict[str, Any], since: datetime | None) -> None:
    """Print what reached Klaviyo and what was set aside, and why."""
    report = _report_module()
    if _existing_ledger(config):
        upgrade_ledger(config)
    data = report.load_report_data(config["ledger_url"], since=since)
    click.echo(report.terminal_summary(data))


@main.command()
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html")
)
@since_option
@click.pass_obj
def report(config: dict[str, Any], output: Path, since: datetime | None) -> None:
    """Write the integration health report (one offline HTML page) and print its summary."""
    module = _report_module()
    if _existing_ledger(config):
        upgrade_ledger(config)
    data = module.build_report(config["ledger_url"], output, since=since)
    click.echo(module.terminal_summary(data))
    click.echo(escape_controls(f"Report written to {output}"))


def _report_module() -> ModuleType:
    """The report needs matplotlib, an optional extra: say so plainly when it is missing."""
    try:
        return importlib.import_module("target_klaviyo.report")
    except ImportError as exc:
        msg = f"the report needs the `report` extra (pip install 'target-klaviyo[report]'): {exc}"
        raise click.ClickException(msg) from exc


@main.command("dead-letters")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--reason", "reasons", multiple=True, help="Only these reasons (repeatable).")
@click.option("--include-replayed", is_flag=True, help="Also records already replayed.")
@click.option(
    "--page-size",
    type=click.IntRange(min=1),
    default=deadletters.PAGE_SIZE,
    show_default=True,
    help="Ledger rows read at a time.",
)
@click.pass_obj
def dead_letters(
    config: dict[str, Any],
    output: Path,
    reasons: tuple[str, ...],
    include_replayed: bool,
    page_size: int,
) -> None:
    """Export set-aside records (not accepted since) as JSON Lines, readable by the owner only."""
    ledger = open_ledger(config, read_only=True)
    counts: Counter[str] = Counter()

    def lines() -> Iterator[str]:
        for row in deadletters.unresolved(
            ledger.engine,
            reasons=reasons or None,
            include_replayed=include_replayed,
            page_size=page_size,
        ):
            counts[row["reason"] or row["outcome"]] += 1
            yield to_json(deadletters.letter(row)) + "\n"

    try:
        deadletters.write_owner_only(output, lines())
    finally:
        ledger.close()
    click.echo(f"{sum(counts.values())} set-aside records written to {output}")
    for reason, count in counts.most_common():
        click.echo(escape_controls(f"  {count:6d}  {reason}"))


@main.command()
@click.option("--reason", "reasons", multiple=True, help="Only these reasons (repeatable).")
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds to wait for a target run that holds the ledger.",
)
@click.option(
    "--page-size",
    type=click.IntRange(min=1),
    default=deadletters.PAGE_SIZE,
    show_default=True,
    help="Set-aside records read, resent and marked replayed at a time.",
)
@click.pass_obj
def replay(
    config: dict[str, Any], reasons: tuple[str, ...], lock_timeout: float, page_size: int
) -> None:
    """Send set-aside records to Klaviyo again; each gets a new outcome in the ledger.

    Under the ledger's run lock, like a run: a replay and a run never deliver at once.
    """
    ledger = open_ledger(config)
    if not ledger.lock_run(lock_timeout):
        ledger.close()
        msg = (
            f"a target-klaviyo run holds the ledger (waited {lock_timeout:.0f} s): "
            "replay again once it has finished"
        )
        raise click.ClickException(msg)
    try:
        _replay(config, ledger, reasons, page_size)
    finally:
        ledger.close()


class _Replay:
    """What a replay has done so far, page by page: resent, skipped, and why."""

    def __init__(self) -> None:
        self.replayed = 0
        self.skipped: Counter[str] = Counter()
        #: Reasons a fix at the source settles (see :func:`_mapper_reasons`).
        self.fix_at_source: set[str] = set()

    def split(
        self, page: list[dict[str, Any]]
    ) -> tuple[dict[str, list[dict[str, Any]]], list[int]]:
        """A page's replayable records by stream, and their ids; the others counted."""
        by_stream: dict[str, list[dict[str, Any]]] = defaultdict(list)
        ids: list[int] = []
        self.fix_at_source |= _mapper_reasons(page)
        for row in page:
            if row["outcome"] not in REPLAYABLE or not row["payload"]:
                self.skipped[row["reason"] or row["outcome"]] += 1
                continue
            by_stream[row["stream"]].append(json.loads(row["payload"]))
            ids.append(row["id"])
        return by_stream, ids


def _pages(ledger: Ledger, reasons: tuple[str, ...], size: int) -> Iterator[list[dict[str, Any]]]:
    """The records to replay, ``size`` at a time, as dead-letters reads them.

    Only rows there before the replay started: resending adds rows (a record rejected again is
    set aside again, with a later id), which this replay must not pick up and resend for ever.
    """
    last = ledger.last_delivery_id()
    page: list[dict[str, Any]] = []
    rows = deadletters.unresolved(ledger.engine, reasons=reasons or None, page_size=size)
    for row in rows:
        if int(row["id"]) > last:
            break
        page.append(row)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


def _replay(config: dict[str, Any], ledger: Ledger, reasons: tuple[str, ...], size: int) -> None:
    stats = RunStats()
    # Held events were held for a person to decide: replaying them is that decision.
    checked = {
        **config,
        "profile_check": "off" if config["profile_check"] == "hold" else config["profile_check"],
    }
    delivery = Delivery.from_config(checked, ledger=ledger, stats=stats)
    intake = run_intake(delivery)
    ledger.start_run()
    done = _Replay()
    try:
        for page in _pages(ledger, reasons, size):
            by_stream, ids = done.split(page)
            _resend(delivery, _admitted(intake, by_stream))
            ledger.mark_replayed(ids)  # this page was resent: a failure later keeps it so
            done.replayed += len(ids)
    except Exception as exc:  # noqa: BLE001 - any failure is recorded and said in one line
        error = safe_error(exc, [str(config.get("api_key") or "")])
        runlog.finish_run(ledger, "failed", delivery.summary.as_dict(stats), error)
        shown = str(exc) if isinstance(exc, KlaviyoAuthError | KlaviyoUnavailable) else error
        click.echo(escape_controls(f"Replay stopped: {shown}"), err=True)
        sys.exit(1)
    finally:
        delivery.background.close()
        delivery.client.close()
    result = delivery.summary.as_dict(stats)
    ledger.finish_run("replayed", result)
    _say_replayed(done, result)


def _say_replayed(done: _Replay, result: dict[str, Any]) -> None:
    click.echo(f"Replayed {done.replayed} records:")
    for key in ("accepted_by_stream", "deduplicated", "set_aside_by_reason", "left_out"):
        for name, count in sorted(result[key].items()):
            click.echo(escape_controls(f"  {key.split('_by_')[0]:12s} {name:28s} {count}"))
    for reason, count in done.skipped.most_common():
        hint = (
            "fix the source record or the mapping, then re-sync it"
            if reason in done.fix_at_source
            else "not replayable as is"
        )
        click.echo(escape_controls(f"  not replayed {reason:28s} {count}  ({hint})"))


def _admitted(
    intake: Intake, by_stream: dict[str, list[dict[str, Any]]]
) -> dict[str, list[dict[str, Any]]]:
    """The records as a run would deliver them today (its phone checks), the others set aside."""
    return {
        stream: [a for r in records if (a := intake.admit(stream, r)) is not None]
        for stream, records in by_stream.items()
    }


def _resend(delivery: Delivery, by_stream: dict[str, list[dict[str, Any]]]) -> None:
    """Through the same code as a run: events first, so profile updates can ride on them."""
    for record in by_stream.get(PROFILES_STREAM, []):
        delivery.pending_profiles.add(record)
    if by_stream.get(EVENTS_STREAM):
        delivery.event_sender().send(by_stream[EVENTS_STREAM])
        delivery.background.flush()
    delivery.profile_importer().send(delivery.pending_profiles.claim_all())
    if by_stream.get(CATALOG_STREAM):
        delivery.restock_applier().send(by_stream[CATALOG_STREAM])


def _mapper_reasons(rows: Iterable[dict[str, Any]]) -> set[str]:
    """Reasons a fix at the source (or in the mapping) settles: the record comes again then.

    Mapper exceptions, and records the target could not read or found out of bounds (outcome
    ``invalid_record``): resending the same record would fail the same way.
    """
    return {r["reason"] for r in rows if r["outcome"] in (MAPPER_EXCEPTION, INVALID_RECORD)}


@main.command()
@click.option(
    "--definitions",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=Path("transforms/klaviyo_segments.yml"),
    show_default=True,
    help="YAML file of segments (name, definition).",
)
@click.pass_obj
def segments(config: dict[str, Any], definitions: Path) -> None:
    """Create the segments the mapping drives, unless they exist; report each one."""
    try:
        wanted = load_definitions(definitions)
    except (ValueError, yaml.YAMLError) as exc:
        raise click.ClickException(str(exc)) from exc
    client = KlaviyoClient.from_config(config, stats=RunStats())
    try:
        results = provision(client, wanted)
    except KlaviyoAuthError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        client.close()
    for result in results:
        suffix = f" ({result.segment_id})" if result.segment_id else f": {result.detail}"
        click.echo(f"  {result.status:8s} {result.name}{suffix}")
    if any(r.status == "failed" for r in results):
        sys.exit(1)


@main.command()
@click.pass_obj
def purge(config: dict[str, Any]) -> None:
    """Clear set-aside records' payloads (personal data) older than ``retention_days`` now."""
    ledger = open_ledger(config)
    cleared = ledger.purge(float(config["retention_days"]))
    ledger.close()
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    click.echo(f"{stamp}: cleared {cleared} payloads older than {config['retention_days']} days")


@main.command()
@click.option(
    "--upgrade", is_flag=True, help="Upgrade a ledger that is behind now (under the run lock)."
)
@click.pass_obj
def schema(config: dict[str, Any], upgrade: bool) -> None:
    """Print the ledger's schema version and this release's (runs upgrade it by themselves)."""
    if not _existing_ledger(config):
        raise click.ClickException("no ledger at ledger_url yet: the first run creates it")
    if upgrade:
        upgrade_ledger(config)
    ledger = Ledger(config["ledger_url"], read_only=True)
    try:
        current = ledger.schema_version
    finally:
        ledger.close()
    head = head_revision()
    state = "up to date" if current == head else "behind: the next run (or --upgrade) upgrades it"
    click.echo(f"ledger schema {current or 'none'}, this release {head}: {state}")


if __name__ == "__main__":
    main()
