"""The project's segments (transforms/klaviyo_segments.yml) are ones Klaviyo accepts.

target-klaviyo's own tests provision segments from a file of their own; this checks the file the
project's `target-klaviyo:segments` command reads by default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from target_klaviyo.cli import main as klaviyo_ops
from tests.support.shared import REPO
from tests.support.target import RecordingKlaviyo

SEGMENTS = REPO / "transforms" / "klaviyo_segments.yml"


@pytest.mark.slow
def test_the_projects_segments_are_created(
    klaviyo: RecordingKlaviyo, config: dict[str, Any], tmp_path: Path
) -> None:
    config_file = tmp_path / "ops.json"
    config_file.write_text(json.dumps({**config, "rate_limits": None}))
    args = ["--config", str(config_file), "segments", "--definitions", str(SEGMENTS)]
    result = CliRunner().invoke(klaviyo_ops, args)
    assert result.exit_code == 0, result.output
    names = {segment["name"] for segment in klaviyo.segments()}
    assert "Swap: open return (suppress promotions)" in names
    assert result.output.count("created") == len(names) == 3
