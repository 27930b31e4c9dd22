"""Two runners on two checkouts of the project, sharing one PostgreSQL: one brand never runs twice.

Each checkout has its own ``.meltano`` (run files, command dirs; the plugin virtualenvs linked to
the project's), as two machines would; Meltano's system database and state and the brands'
ledgers are in one throwaway PostgreSQL. Both runners start the same brand at the same moment,
round after round, with new returns between rounds: the launcher's advisory lock on the state id
lets one run and refuses the other (``already_running``), and Klaviyo never receives an event
twice.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.brands.support import brands_env, brands_file, outcome, run_brand, sandboxes
from tests.support.shared import REPO

pytestmark = [pytest.mark.meltano, pytest.mark.slow]

PLUGIN_FOLDERS = ("tap-swapcommerce", "target-klaviyo", "transforms", "swap-webhooks")
PLUGIN_KINDS = ("extractors", "loaders", "mappers", "utilities")
ROUNDS = 3


def checkout(root: Path) -> Path:
    """A second copy of the project: its own meltano.yml and .meltano, the same plugins."""
    root.mkdir()
    shutil.copy(REPO / "meltano.yml", root / "meltano.yml")
    for folder in PLUGIN_FOLDERS:
        (root / folder).symlink_to(REPO / folder)
    (root / ".meltano").mkdir()
    for kind in PLUGIN_KINDS:
        (root / ".meltano" / kind).symlink_to(REPO / ".meltano" / kind)
    return root


def test_two_checkouts_never_run_one_brand_twice_nor_deliver_twice(
    tmp_path: Path, postgres_db: str
) -> None:
    checkouts = [checkout(tmp_path / "machine-a"), checkout(tmp_path / "machine-b")]
    with sandboxes(["acme"], returns=20) as brands:
        [acme] = brands
        file = brands_file(
            tmp_path / "brands.yml",
            brands,
            ledger={"kind": "postgres", "url_env": "SWAP_LEDGER_DATABASE_URL"},
        )
        env = brands_env(brands, {"MELTANO_DATABASE_URI": postgres_db})
        env["SWAP_LEDGER_DATABASE_URL"] = postgres_db
        env.pop("MELTANO_SYS_DIR_ROOT", None)
        rounds = []
        for number in range(ROUNDS):
            if number:
                acme.swap.create_return()
                acme.swap.advance(count=3)
            with ThreadPoolExecutor(max_workers=2) as pool:
                runs = list(pool.map(lambda root: run_brand("acme", file, env, root), checkouts))
            rounds.append(sorted(str(outcome(output)) for _code, output in runs))

        # Whatever ran last, one more run from either side picks up anything left.
        code, output = run_brand("acme", file, env, checkouts[0])
        assert code == 0
        assert outcome(output) == "succeeded", output[-3000:]
        assert acme.started() == acme.expected_started()
        assert acme.klaviyo.stats()["events_deduplicated"] == 0, "an event reached Klaviyo twice"

    for pair in rounds:
        assert pair in (["already_running", "succeeded"], ["succeeded", "succeeded"]), rounds
    assert ["already_running", "succeeded"] in rounds, "the two runners never met"
    engine = sa.create_engine(postgres_db)
    try:
        with engine.connect() as conn:
            twice = conn.execute(
                sa.text(
                    "SELECT record_key FROM brand_acme.deliveries WHERE outcome = 'accepted'"
                    " AND stream = 'klaviyo_events' GROUP BY record_key HAVING count(*) > 1"
                )
            ).all()
            statuses = conn.execute(sa.text("SELECT status FROM brand_acme.runs")).scalars().all()
    finally:
        engine.dispose()
    assert twice == []
    assert set(statuses) == {"succeeded"}, "no run ever found another holding the ledger"
