"""One contract: the mapper's output schemas are byte-identical copies of the target's.

target-klaviyo owns its input schemas (`target-klaviyo/target_klaviyo/schemas/*.json`). The
mapper (`transforms/schemas/*.json`) must refuse exactly what the target would refuse for type,
required or unknown fields, so it validates against the same bytes. The files are compared as
files: this test imports neither plugin's package (no plugin imports another's).
"""

from __future__ import annotations

from pathlib import Path

from tests.support.shared import REPO

TARGET = REPO / "target-klaviyo" / "target_klaviyo" / "schemas"
MAPPER = REPO / "transforms" / "schemas"
FIX = "copy target-klaviyo/target_klaviyo/schemas/*.json to transforms/schemas/ in the same commit"


def names(folder: Path) -> set[str]:
    return {path.name for path in folder.glob("*.json")}


def test_the_target_has_a_contract() -> None:
    assert names(TARGET) >= {
        "integration_exceptions.json",
        "klaviyo_catalog_variants.json",
        "klaviyo_events.json",
        "klaviyo_profile_updates.json",
    }


def test_the_mapper_copies_every_target_schema_and_nothing_else() -> None:
    assert names(MAPPER) == names(TARGET), FIX


def test_each_copy_is_byte_identical() -> None:
    different = [
        name
        for name in sorted(names(TARGET))
        if not (MAPPER / name).is_file()
        or (MAPPER / name).read_bytes() != (TARGET / name).read_bytes()
    ]
    assert different == [], f"{', '.join(different)} differ: {FIX}"


def test_the_taps_exceptions_schema_is_a_byte_identical_copy() -> None:
    """tap-swapcommerce emits integration_exceptions too, in the target's schema (its own copy)."""
    name = "integration_exceptions.json"
    tap_copy = REPO / "tap-swapcommerce" / "tap_swapcommerce" / "schemas" / name
    assert tap_copy.read_bytes() == (TARGET / name).read_bytes(), (
        f"copy {TARGET / name} to {tap_copy} in the same commit"
    )
