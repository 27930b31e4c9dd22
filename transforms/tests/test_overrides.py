"""One run with other mapping files: SWAP_TRANSFORMS_MAPPING_FILES takes effect, or is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swap_transforms.errors import MappingFileError
from swap_transforms.overrides import check_effective, requested
from tests.support.shared import REPO

MELTANO = Path(sys.executable).parent / "meltano"


def test_the_variable_names_files_as_json_or_with_commas() -> None:
    assert requested({}) is None
    assert requested({"SWAP_TRANSFORMS_MAPPING_FILES": "  "}) is None
    assert requested({"SWAP_TRANSFORMS_MAPPING_FILES": '["a.yml", "b.yml"]'}) == ["a.yml", "b.yml"]
    assert requested({"SWAP_TRANSFORMS_MAPPING_FILES": "a.yml, b.yml"}) == ["a.yml", "b.yml"]
    with pytest.raises(MappingFileError, match="must be a JSON list of paths"):
        requested({"SWAP_TRANSFORMS_MAPPING_FILES": '["a.yml", 3]'})


def test_an_override_the_config_does_not_follow_is_refused() -> None:
    env = {"SWAP_TRANSFORMS_MAPPING_FILES": '["mine.yml"]'}
    check_effective(["mine.yml"], env)
    check_effective(["./mine.yml"], env)
    check_effective(["transforms/swap_to_klaviyo.yml"], {})
    with pytest.raises(MappingFileError) as error:
        check_effective(["transforms/swap_to_klaviyo.yml"], env)
    assert "asks for mine.yml but this run is configured with transforms/swap_to_klaviyo.yml" in (
        str(error.value)
    )
    assert "remove `mapping_files` from the `config:` of the Meltano mapping" in str(error.value)


def mapper_under_meltano(mapping_files: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SWAP_TRANSFORMS_MAPPING_FILES"}
    if mapping_files is not None:
        env["SWAP_TRANSFORMS_MAPPING_FILES"] = mapping_files
    return subprocess.run(
        [str(MELTANO), "invoke", "swap-to-klaviyo"],
        cwd=REPO,
        input="",
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )


@pytest.mark.meltano
@pytest.mark.slow
def test_under_meltano_the_variable_chooses_the_mapping_files(tmp_path: Path) -> None:
    committed = mapper_under_meltano(None)
    assert committed.returncode == 0, committed.stderr[-2000:]
    absent = tmp_path / "absent.yml"
    overridden = mapper_under_meltano(json.dumps([str(absent)]))
    assert overridden.returncode != 0
    assert f"{absent}: file not found" in overridden.stderr
