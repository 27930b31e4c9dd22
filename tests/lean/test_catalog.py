"""The committed catalog Meltano gives the tap instead of running discovery before every run.

meltano.yml names ``tap-swapcommerce/catalog.json`` as the extractor's ``catalog``: a run skips
discovery (a whole tap start-up). That file must be exactly what the tap discovers, or runs would
read streams with yesterday's schemas.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TAP = Path(sys.executable).parent / "tap-swapcommerce"
CATALOG = "tap-swapcommerce/catalog.json"
REGENERATE = f"regenerate it: tap-swapcommerce --discover > {CATALOG}"


def test_meltano_gives_the_tap_the_committed_catalog() -> None:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    (tap,) = [p for p in project["plugins"]["extractors"] if p["name"] == "tap-swapcommerce"]
    assert tap["catalog"] == CATALOG
    assert "catalog" in tap["capabilities"]
    # Applied by every environment alike: none overrides it (or discovery would be back).
    for environment in project["environments"]:
        plugins = (environment.get("config") or {}).get("plugins") or {}
        for extractor in plugins.get("extractors") or []:
            assert "catalog" not in extractor, environment["name"]


@pytest.mark.slow
def test_the_committed_catalog_is_what_the_tap_discovers(tmp_path: Path) -> None:
    config = tmp_path / "tap.json"
    config.write_text(json.dumps({"api_key": "k", "store_id": "s"}))
    result = subprocess.run(
        [str(TAP), "--config", str(config), "--discover"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    committed = json.loads((ROOT / CATALOG).read_text())
    assert committed == json.loads(result.stdout), REGENERATE
