"""An analyst's mapping mistakes through `meltano run`: refused at load, or held, never silent.

Each run uses a copy of the project's meltano.yml whose mapping points at a changed mapping file
(the plugins, their virtualenvs and the emulators are the project's own; Meltano's system
database, state and the ledger are the test's). A mistake the mapper can see before it maps a
record (a field the source does not have, a literal of the wrong type, an output stream the
target does not accept) is refused with its file and line and nothing is sent; a mistake that
only shows on some records fails the run with outcome `mapping_errors_held`: every other record
is delivered, no bookmark is saved, and the run after the fix delivers what failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from emulators.klaviyo import KlaviyoEmulator
from emulators.swap import SwapEmulator, catalog_skus
from tests.support.shared import REPO
from tests.webhooks.support import MELTANO, STATE_ID, emulator_env, isolated_meltano

pytestmark = [pytest.mark.meltano, pytest.mark.slow]

KLAVIYO_KEY = "pk_test_mapping_mistakes"
DEFAULT_MAPPING = REPO / "transforms" / "swap_to_klaviyo.yml"
PLUGIN_FOLDERS = ("tap-swapcommerce", "target-klaviyo", "transforms", "swap-webhooks")


@dataclass
class Project:
    """A throwaway Meltano project sharing the real one's plugins, with its own mapping."""

    root: Path
    mapping: Path
    env: dict[str, str]
    sys_dir: Path
    swap: SwapEmulator
    klaviyo: KlaviyoEmulator

    def use_mapping(self, text: str) -> None:
        self.mapping.write_text(text)

    def run(self) -> tuple[int, str]:
        result = subprocess.run(
            [str(MELTANO), "run", "tap-swapcommerce", "swap-to-klaviyo", "target-klaviyo"],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        return result.returncode, result.stdout + result.stderr

    def bookmark(self) -> object:
        """The saved bookmark of the `returns` stream, or None."""
        with contextlib.closing(sqlite3.connect(self.sys_dir / "meltano.db")) as db:
            rows = db.execute(
                "SELECT completed_state, partial_state FROM state WHERE state_id = ?", (STATE_ID,)
            ).fetchall()
        for row in rows:
            for saved in row:
                state = json.loads(saved) if saved else {}
                returns = state.get("singer_state", {}).get("bookmarks", {}).get("returns")
                if returns:
                    return returns
        return None

    def started(self) -> set[str]:
        return {e["unique_id"] for e in self.klaviyo.events(metric="Return Started")}


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    if not (MELTANO.exists() and (REPO / ".meltano" / "extractors").exists()):
        pytest.fail("these tests need `meltano install` done (scripts/setup.sh)")
    root = tmp_path / "project"
    root.mkdir()
    for folder in PLUGIN_FOLDERS:
        (root / folder).symlink_to(REPO / folder)
    mappings = tmp_path / "mapping"
    for folder in ("schemas", "definitions"):
        shutil.copytree(REPO / "transforms" / folder, mappings / folder)
    mapping = mappings / "swap_to_klaviyo.yml"
    mapping.write_text(DEFAULT_MAPPING.read_text())
    config = yaml.safe_load((REPO / "meltano.yml").read_text())
    mapper = next(p for p in config["plugins"]["mappers"] if p["name"] == "swap-transforms")
    for entry in mapper["mappings"]:
        entry.setdefault("config", {})["mapping_files"] = [str(mapping)]
    (root / "meltano.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    with (
        SwapEmulator(returns=30, rate_limit_per_minute=None) as swap,
        KlaviyoEmulator(api_key=KLAVIYO_KEY) as klaviyo,
        isolated_meltano(tmp_path) as meltano_env,
    ):
        klaviyo.add_variants(catalog_skus(), inventory=0)
        env = {**os.environ, **emulator_env(swap, klaviyo.url, KLAVIYO_KEY), **meltano_env}
        env.pop("SWAP_TRANSFORMS_MAPPING_FILES", None)
        sys_dir = Path(meltano_env["MELTANO_SYS_DIR_ROOT"])
        yield Project(root, mapping, env, sys_dir, swap, klaviyo)


def line_of(text: str, needle: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), 1) if needle in line)


def changed(old: str, new: str) -> str:
    text = DEFAULT_MAPPING.read_text()
    assert old in text, f"the default mapping no longer has {old!r}"
    return text.replace(old, new, 1)


MISTAKES = {
    "typo in a field": (
        'value_currency: "{{ record.customer_currency }}"',
        'value_currency: "{{ record.customer_curency }}"',
        "unknown field 'customer_curency'",
        "did you mean 'customer_currency'?",
    ),
    "wrong-type literal": (
        "metric: Return Started",
        "metric: 42",
        "field 'metric': the literal 42 does not fit the output",
        "is not of type 'string'",
    ),
    "field the target does not have": (
        "metric: Return Started",
        "metrc: Return Started\n            metric: Return Started",
        "'klaviyo_events' has no field 'metrc'",
        "did you mean 'metric'?",
    ),
    "unaccepted stream": (
        "  integration_exceptions:\n    key_properties: [exception_id]",
        "  klaviyo_coupons:\n    key_properties: [exception_id]\n"
        "    schema: schemas/integration_exceptions.json\n"
        "  integration_exceptions:\n    key_properties: [exception_id]",
        "the target does not accept a stream 'klaviyo_coupons'",
        "it accepts: integration_exceptions",
    ),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_mistake_seen_at_load_is_refused_with_file_and_line_and_nothing_is_sent(
    project: Project, mistake: str
) -> None:
    old, new, problem, hint = MISTAKES[mistake]
    text = changed(old, new)
    project.use_mapping(text)
    code, log = project.run()
    assert code != 0
    needle = new.splitlines()[0].strip()
    assert f"{project.mapping}:{line_of(text, needle)}:" in log, log[-4000:]
    assert problem in log
    assert hint in log
    # The mapper says what is wrong in words (Meltano may add a traceback of its own).
    assert not [
        line for line in log.splitlines() if "swap-transforms" in line and "Traceback" in line
    ]
    assert project.klaviyo.events() == []
    assert project.bookmark() is None


def test_a_mistake_on_some_records_holds_the_bookmark_and_the_fix_delivers_the_rest(
    project: Project,
) -> None:
    # Fails on closed returns only (a division by zero): every other return maps as usual.
    project.use_mapping(
        changed(
            'value: "{{ record.total | money }}"',
            "value: \"{{ (1 / 0) if record.return_status == 'Closed'"
            ' else record.total | money }}"',
        )
    )
    closed = {
        f"swap:{r['return_id']}:started"
        for r in project.swap.all_returns()
        if r.get("return_status") == "Closed"
    }
    code, log = project.run()
    assert code == 1
    assert "run outcome: mapping_errors_held" in log
    assert "rule 'return_started' of stream 'returns' failed on" in log
    held = project.started()
    assert held, "the returns the mistake does not touch are delivered"
    assert not held & closed
    assert project.bookmark() is None  # no STATE passed the first failing record

    project.use_mapping(DEFAULT_MAPPING.read_text())  # the fix
    code, log = project.run()
    assert "run outcome: mapping_errors_held" not in log
    assert code == 0, log[-3000:]
    delivered = project.started()
    assert delivered > held
    assert closed & delivered, "what failed is delivered once the mapping is fixed"
    assert delivered - held <= closed
    assert project.bookmark() is not None
