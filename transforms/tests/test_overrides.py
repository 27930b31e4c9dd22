"""One run with other mapping files: SWAP_TRANSFORMS_MAPPING_FILES takes effect, or is refused."""

from __future__ import annotations

import pytest

from swap_transforms.errors import MappingFileError
from swap_transforms.overrides import check_effective, requested


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
