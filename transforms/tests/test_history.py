"""`swap-transforms-history`: a changed mapping over past returns, compared with the committed one.

Nothing it does may touch production: it reads Swap (GET), maps in memory, and neither the
target, its ledger, Meltano's state (the bookmark) nor the run lock is involved.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from swap_transforms.history import main as history_main
from tests.support import TRANSFORMS

BIN = Path(sys.executable).parent
SAMPLE = TRANSFORMS / "samples" / "returns.jsonl"


def changed_copy(into: Path) -> Path:
    """A copy of transforms/ whose mapping renames a metric and breaks Return Started."""
    copy = into / "transforms"
    shutil.copytree(TRANSFORMS, copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    mapping = copy / "swap_to_klaviyo.yml"
    text = mapping.read_text()
    text = text.replace("metric: Return Received", "metric: Return Arrived")
    text = text.replace(
        '              PortalLink: "{{ record.portal_quick_link | default(none) }}"\n',
        '              PortalLink: "{{ record.portal_quick_link | default(none) }}"\n'
        '              Share: "{{ record.total / 0 }}"\n',
    )
    mapping.write_text(text)
    return mapping


def history(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = history_main(list(args))
    captured = capsys.readouterr()
    return status, captured.out + captured.err


@pytest.mark.slow
def test_added_removed_and_changed_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = changed_copy(tmp_path)
    args = ["--mapping", str(mine), "--base", str(TRANSFORMS / "swap_to_klaviyo.yml")]
    status, out = history(capsys, *args, "--since", "2026-01-01", "--input", str(SAMPLE))
    assert status == 0, out
    assert "Returns updated 2026-01-01T00:00:00+00:00 .. now: 21 mapped\n" in out
    events = out.split("\nklaviyo_events: ")[1].split("\n\n")[0]
    assert events.startswith("0 added, 15 removed, 10 changed, 89 unchanged\n")
    assert "  removed: Return Started 15\n" in events
    assert "  changed fields: metric 10\n" in events
    assert '        metric: "Return Received" -> "Return Arrived"\n' in events
    assert "integration_exceptions: 15 added, 0 removed, 0 changed, 6 unchanged" in out
    assert (
        "The changed mapping fails on some returns: rule 'return_started': mapping_error x15"
        in (out)
    )
    assert "klaviyo_profile_updates: 0 added, 0 removed, 0 changed, 15 unchanged" in out
    # The window: only returns updated in it are mapped.
    status, out = history(
        capsys, *args, "--since", "2026-05-20", "--until", "2026-05-30", "--input", str(SAMPLE)
    )
    times = [json.loads(line)["date_updated"] for line in SAMPLE.read_text().splitlines()]
    inside = sum("2026-05-20" <= t < "2026-05-30" for t in times)
    assert 0 < inside < len(times)
    assert f"2026-05-30T00:00:00+00:00: {inside} mapped\n" in out


@pytest.mark.slow
def test_the_committed_mapping_comes_from_git(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(TRANSFORMS, project / "transforms", ignore=shutil.ignore_patterns("*.egg-info"))
    git = ["git", "-C", str(project), "-c", "user.email=a@b.c", "-c", "user.name=analyst"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "transforms"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "committed mapping"], check=True)
    mapping = project / "transforms" / "swap_to_klaviyo.yml"
    mapping.write_text(mapping.read_text().replace("metric: Item Restocked", "metric: Restocked"))
    monkeypatch.chdir(project)
    monkeypatch.delenv("SWAP_TRANSFORMS_MAPPING_FILES", raising=False)
    status, out = history(capsys, "--since", "2026-01-01", "--input", str(SAMPLE))
    assert status == 0, out
    assert "Committed mapping: transforms/swap_to_klaviyo.yml at git HEAD\n" in out
    assert "klaviyo_events: 0 added, 0 removed, 12 changed, 102 unchanged" in out
    assert '        metric: "Item Restocked" -> "Restocked"\n' in out
    # Outside a git repository, the committed mapping must be named.
    shutil.rmtree(project / ".git")
    status, out = history(capsys, "--since", "2026-01-01", "--input", str(SAMPLE))
    assert status == 2
    assert "cannot read the committed mapping at git HEAD: give it with --base FILE" in out
