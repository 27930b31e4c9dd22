"""Which mapping files a run uses: the `SWAP_TRANSFORMS_MAPPING_FILES` override, and its check.

An analyst tries a changed mapping on one run by setting `SWAP_TRANSFORMS_MAPPING_FILES` (a JSON
list, or paths separated by commas). Under Meltano this is the plugin's `mapping_files` setting
read from the environment, and it wins over meltano.yml's plugin-level value; but a Meltano
*mapping*'s own `config:` wins over the environment, so a `mapping_files` written there would
silently keep the committed files. A silent override is worse than none (the analyst would
believe their change ran), so a run whose files differ from the variable is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from swap_transforms.errors import MappingFileError, Problem

VARIABLE = "SWAP_TRANSFORMS_MAPPING_FILES"


def requested(environ: Mapping[str, str] | None = None) -> list[str] | None:
    """The mapping files the variable asks for, or None when it is unset or empty."""
    text = (os.environ if environ is None else environ).get(VARIABLE, "").strip()
    if not text:
        return None
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            message = "must be a JSON list of paths, or paths separated by commas"
            raise MappingFileError([Problem(VARIABLE, None, "", message)])
        return value
    return [part.strip() for part in text.split(",") if part.strip()]


def check_effective(configured: list[str], environ: Mapping[str, str] | None = None) -> None:
    """Refuse a run whose configured mapping files are not the ones the variable asks for."""
    wanted = requested(environ)
    if wanted is None or [os.path.normpath(p) for p in wanted] == [
        os.path.normpath(p) for p in configured
    ]:
        return
    message = (
        f"asks for {', '.join(wanted)} but this run is configured with "
        f"{', '.join(configured)}, so the override cannot take effect: remove `mapping_files` "
        "from the `config:` of the Meltano mapping in meltano.yml (a mapping's own config wins "
        f"over the environment; set it at the plugin level instead), or unset {VARIABLE}"
    )
    raise MappingFileError([Problem(VARIABLE, None, "", message)])
