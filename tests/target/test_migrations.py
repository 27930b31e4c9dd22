"""The ledger's schema migrations: a ledger written by 0.1.0 upgraded, on SQLite and PostgreSQL.

The 0.1.0 ledger is ``tests/fixtures/ledger-0.1.0.sqlite``, written by that release's own ledger
module (``tests/fixtures/make_ledger_0_1_0.py``); on PostgreSQL the same module writes the same
rows at test time. After the upgrade, every row 0.1.0 wrote must still be there and still work:
outcomes deduplicate, restock keys block a second application, profile versions keep an older
update from overwriting, and list values read as appended.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner

from target_klaviyo import cli
from target_klaviyo.ledger import (
    FIRST_RELEASE,
    VERSION_TABLE,
    Ledger,
    LedgerSchemaError,
    ListChange,
    alembic_config,
    head_revision,
    metadata,
    profile_hash,
)
from tests.fixtures import ledger_0_1_0
from tests.fixtures import make_ledger_0_1_0 as fixture
from tests.support.target import (
    RecordingKlaviyo,
    event,
    properties_of,
    restock,
    run_cli,
    run_target,
    singer,
    state,
    update,
)

#: The releases' tables; a ledger's rows are compared table by table.
TABLES = ("deliveries", "profile_versions", "restocks", "profile_lists", "runs")
#: This release's revision (0003 clamps profile versions far in the future: test_migration_0003).
HEAD = "0003"
OPEN = "swap_open_returns"
ANA, BOB = fixture.ANA, fixture.BOB


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database of each kind (PostgreSQL from tests/support/postgres.py)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    return str(request.getfixturevalue("postgres_db"))


@pytest.fixture
def old_sqlite(tmp_path: Path) -> Path:
    """A copy of the ledger 0.1.0 wrote (the fixture itself is never changed)."""
    path = tmp_path / "ledger" / "klaviyo-ledger.sqlite"
    path.parent.mkdir()
    shutil.copy(fixture.FIXTURE, path)
    path.chmod(0o600)
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def old_url(request: pytest.FixtureRequest, old_sqlite: Path) -> str:
    """A ledger written by 0.1.0: the committed SQLite file, or 0.1.0's code on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{old_sqlite}"
    url = str(request.getfixturevalue("postgres_db"))
    fixture.write_ledger(url)
    return url


def rows(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every table's rows, in primary key order, read with plain SQLAlchemy reflection."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            reflected = sa.MetaData()
            reflected.reflect(conn, only=list(TABLES))
            result = {}
            for name in TABLES:
                table = reflected.tables[name]
                query = sa.select(table).order_by(*table.primary_key.columns)
                result[name] = [dict(row) for row in conn.execute(query).mappings()]
            return result
    finally:
        engine.dispose()


def schema_differences(url: str) -> list[Any]:
    """What differs between the database's schema and ``ledger.py``'s tables (types, defaults)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "version_table": VERSION_TABLE,
                    "compare_type": True,
                    "compare_server_default": True,
                },
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def stored_version(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
            if VERSION_TABLE not in tables:
                return None
            return str(conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar())
    finally:
        engine.dispose()


def without(row: dict[str, Any], *columns: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in columns}


def by(rows_: list[dict[str, Any]], *columns: str) -> dict[Any, dict[str, Any]]:
    return {tuple(r[c] for c in columns) if len(columns) > 1 else r[columns[0]]: r for r in rows_}


# -- the schema ----------------------------------------------------------------------------------


def test_a_new_ledger_gets_this_releases_schema_exactly(empty_url):
    ledger = Ledger(empty_url)
    try:
        versions = [ledger.schema_version]
        assert ledger.migrate() == head_revision() == HEAD
        versions.append(ledger.schema_version)
        assert versions == [None, HEAD]
        assert ledger.migrate() == HEAD, "a ledger at the head is left as it is"
    finally:
        ledger.close()
    assert schema_differences(empty_url) == []
    assert stored_version(empty_url) == HEAD


def test_a_0_1_0_ledger_is_recognised_stamped_and_upgraded_with_its_rows(old_url):
    before = rows(old_url)
    assert all(before[name] for name in TABLES), "the fixture has rows in every table"
    assert stored_version(old_url) is None
    ledger = Ledger(old_url)
    try:
        assert ledger.schema_version == "0001", "tables without a version table are 0.1.0's"
        assert ledger.migrate() == HEAD
    finally:
        ledger.close()
    assert stored_version(old_url) == HEAD
    assert schema_differences(old_url) == []
    after = rows(old_url)
    for name in ("deliveries", "profile_versions", "restocks"):
        assert after[name] == before[name], name
    assert [without(r, "error") for r in after["runs"]] == before["runs"]
    assert all(r["error"] is None for r in after["runs"])
    assert [without(r, "state") for r in after["profile_lists"]] == before["profile_lists"]
    assert {r["state"] for r in after["profile_lists"]} == {"appended"}


def test_a_ledger_of_a_newer_release_is_refused(empty_url):
    ledger = Ledger(empty_url)
    try:
        ledger.migrate()
        with ledger.engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '0099'"))
        with pytest.raises(LedgerSchemaError, match="0099, written by a newer release"):
            ledger.migrate()
    finally:
        ledger.close()


# -- a run over a 0.1.0 ledger -------------------------------------------------------------------


@pytest.fixture
def klaviyo_0_1_0(klaviyo: RecordingKlaviyo) -> RecordingKlaviyo:
    """Klaviyo as 0.1.0 left it: the pending restock's job did apply (6 = 5 + 1)."""
    klaviyo.add_variants(["SKU-A"], inventory=3)
    klaviyo.add_variants(["SKU-B"], inventory=6)
    klaviyo.add_variants(["SKU-C"], inventory=0)
    return klaviyo


def next_release_input() -> str:
    """Records a run after the upgrade meets: some 0.1.0 delivered already, some new."""
    return singer(
        [
            event("swap:r1:started", ANA, metric="Return Started"),  # accepted by 0.1.0
            event("swap:r9:started", BOB, metric="Return Started"),
            update(
                "upd-9",
                ANA,
                as_of="2026-04-01T00:00:00+00:00",  # older than 0.1.0's newest for ana
                properties={"swap_last_return_status": "requested"},
                append={OPEN: ["RMA-1"]},  # 0.1.0 appended it already
                unappend={OPEN: ["RMA-2"]},
            ),
            update(
                "upd-10",
                BOB,
                as_of="2026-05-02T00:00:00+00:00",
                properties={"swap_last_return_status": "completed"},
                unappend={OPEN: ["RMA-3"]},  # 0.1.0 deleted its row: unknown, sent
            ),
            restock("rs-applied", "SKU-A", 2),  # applied by 0.1.0
            restock("rs-new", "SKU-C", 4),
            state({"bookmark": "after-upgrade"}),
        ]
    )


def check_after_upgrade(url: str, before: dict[str, list[dict[str, Any]]], klaviyo) -> None:
    """Every 0.1.0 row intact and used, the new run recorded, at this release's schema."""
    after = rows(url)
    assert stored_version(url) == HEAD
    old_ids = {r["id"] for r in before["deliveries"]}
    assert [r for r in after["deliveries"] if r["id"] in old_ids] == before["deliveries"]
    new = {(r["stream"], r["record_key"]): r for r in after["deliveries"] if r["id"] not in old_ids}
    assert new[("klaviyo_events", "swap:r1:started")]["outcome"] == "deduplicated"
    assert new[("klaviyo_events", "swap:r9:started")]["outcome"] == "accepted"
    assert new[("klaviyo_catalog_variants", "rs-applied")]["outcome"] == "deduplicated"
    assert new[("klaviyo_catalog_variants", "rs-new")]["outcome"] == "accepted"
    assert [e["unique_id"] for e in klaviyo.events()] == ["swap:r9:started"]
    # Restock keys: the applied one blocked a second application, the pending one was settled.
    restocks = by(after["restocks"], "restock_key")
    assert restocks["rs-applied"] == by(before["restocks"], "restock_key")["rs-applied"]
    assert restocks["rs-pending"]["status"] == "applied"
    assert restocks["rs-new"]["status"] == "applied"
    assert klaviyo.variant("$custom:::$default:::SKU-A")["inventory_quantity"] == 3
    assert klaviyo.variant("$custom:::$default:::SKU-C")["inventory_quantity"] == 4
    # Profile versions: ana's newer version kept the older update's properties out.
    versions = by(after["profile_versions"], "profile_hash")
    ana, bob = profile_hash({"email": ANA}), profile_hash({"email": BOB})
    assert versions[ana] == by(before["profile_versions"], "profile_hash")[ana]
    assert "swap_last_return_status" not in properties_of(klaviyo, ANA)
    assert properties_of(klaviyo, BOB)["swap_last_return_status"] == "completed"
    # The list mirror: 0.1.0's values read as appended; no value appended twice.
    lists = {(r["profile_hash"], r["value"]): r["state"] for r in after["profile_lists"]}
    assert lists == {
        (ana, "RMA-1"): "appended",
        (ana, "RMA-2"): "unappended",
        (bob, "RMA-3"): "unappended",
    }
    sent = json.dumps([s.json() for s in klaviyo.posts()])
    assert "RMA-1" not in sent, "0.1.0 appended RMA-1 already"
    assert "RMA-2" in sent
    # Runs: 0.1.0's are still there; the new one is recorded with its schema version.
    runs = by(after["runs"], "run_id")
    for old in before["runs"]:
        assert runs[old["run_id"]]["started_at"] == old["started_at"]
    assert runs[fixture.RUNS[0]]["status"] == "succeeded"
    assert runs[fixture.RUNS[1]]["status"] == "failed"
    [latest] = [r for r in after["runs"] if r["run_id"] not in fixture.RUNS]
    assert latest["status"] == "succeeded"
    assert json.loads(latest["summary"])["ledger_schema_version"] == HEAD


def upgrade_config(config: dict[str, Any], url: str) -> dict[str, Any]:
    # 0.1.0's payloads must survive the start-up purge whatever the fixture's age.
    return {**config, "ledger_url": url, "retention_days": 36500}


@pytest.mark.slow
def test_the_target_executable_upgrades_a_0_1_0_ledger_and_finds_everything(
    klaviyo_0_1_0, config, old_sqlite, tmp_path
):
    url = f"sqlite:///{old_sqlite}"
    before = rows(url)
    result = run_cli(upgrade_config(config, url), next_release_input(), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"bookmark": "after-upgrade"}
    assert f"Ledger schema upgraded from revision 0001 to {HEAD}" in result.stderr
    check_after_upgrade(url, before, klaviyo_0_1_0)


def test_the_target_upgrades_a_0_1_0_ledger_on_postgresql(klaviyo_0_1_0, config, postgres_db):
    fixture.write_ledger(postgres_db)
    before = rows(postgres_db)
    run = run_target(upgrade_config(config, postgres_db), next_release_input())
    assert run.error is None, repr(run.error)
    check_after_upgrade(postgres_db, before, klaviyo_0_1_0)


@pytest.mark.slow
def test_a_dry_run_refuses_a_ledger_behind_and_leaves_it_untouched(
    klaviyo, config, old_sqlite, tmp_path
):
    digest = hashlib.sha256(old_sqlite.read_bytes()).hexdigest()
    dry = {**config, "ledger_url": f"sqlite:///{old_sqlite}", "dry_run": True}
    result = run_cli(dry, singer([event("e-1")]), tmp_path)
    assert result.returncode == 1
    assert "a dry run does not change the ledger" in result.stderr
    assert "Traceback" not in result.stderr
    assert hashlib.sha256(old_sqlite.read_bytes()).hexdigest() == digest
    assert klaviyo.posts() == []


# -- commands between runs -----------------------------------------------------------------------


@pytest.fixture
def ops(config: dict[str, Any], tmp_path: Path) -> Any:
    """``klaviyo-ops`` in-process with a config file; returns (exit code, output)."""
    path = tmp_path / "ops-config.json"

    def invoke(url: str, *args: str) -> tuple[int, str]:
        path.write_text(json.dumps({**config, "ledger_url": url}))
        result = CliRunner().invoke(cli.main, ["--config", str(path), *args])
        return result.exit_code, result.output

    return invoke


def test_ops_commands_report_the_version_and_upgrade_a_ledger_behind(ops, old_sqlite, tmp_path):
    url = f"sqlite:///{old_sqlite}"
    assert ops(url, "schema") == (
        0,
        f"ledger schema 0001, this release {HEAD}: behind: "
        "the next run (or --upgrade) upgrades it\n",
    )
    assert stored_version(url) is None, "`schema` alone reads, never writes"
    code, output = ops(url, "dead-letters", "--output", str(tmp_path / "dead.jsonl"))
    assert code == 0, output
    assert "set-aside records written" in output
    assert stored_version(url) == HEAD
    assert ops(url, "schema") == (0, f"ledger schema {HEAD}, this release {HEAD}: up to date\n")


def test_an_ops_command_refuses_to_upgrade_while_a_run_holds_the_ledger(
    ops, old_sqlite, tmp_path, monkeypatch
):
    url = f"sqlite:///{old_sqlite}"
    monkeypatch.setattr(cli, "SCHEMA_LOCK_SECONDS", 0.2)
    running = Ledger(url)
    assert running.lock_run(1)
    try:
        code, output = ops(url, "purge")
    finally:
        running.close()
    assert code == 1
    assert "a run has held the ledger" in output
    assert stored_version(url) is None
    assert ops(url, "purge")[0] == 0, "once the run is over the command upgrades and works"
    assert stored_version(url) == HEAD


def test_0002_downgrades_to_a_ledger_0_1_0_can_use(old_url):
    """For a developer rolling back: 0.1.0's schema again, without the rows it cannot read."""
    ledger = Ledger(old_url)
    try:
        ledger.migrate()
        ledger.apply_list_operations([ListChange("h", None, OPEN, "RMA-9", "unappend")])
        with ledger.engine.begin() as conn:
            command.downgrade(alembic_config(conn), FIRST_RELEASE)
    finally:
        ledger.close()
    assert stored_version(old_url) == FIRST_RELEASE
    assert "state" not in rows(old_url)["profile_lists"][0]
    assert [r["value"] for r in rows(old_url)["profile_lists"]] == ["RMA-1", "RMA-2"]
    previous = ledger_0_1_0.Ledger(old_url)
    try:
        previous.start_run()
        previous.finish_run("succeeded", {})
    finally:
        previous.close()


def test_the_report_reads_a_ledger_not_yet_upgraded_without_writing_it(old_url):
    """`python -m target_klaviyo.report` only selects: a 0.1.0 ledger's list rows are all held."""
    from target_klaviyo.report import load_report_data  # noqa: PLC0415 - the report extra

    before = rows(old_url)
    data = load_report_data(old_url)
    assert [row.open_returns for row in data.open_returns] == [("RMA-1", "RMA-2")]
    assert stored_version(old_url) is None
    assert rows(old_url) == before
