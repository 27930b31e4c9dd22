"""The target's input contract: which output streams it accepts, and with which schema.

target-klaviyo owns its input schemas; `transforms/schemas/` holds byte-identical copies (a
project test checks them). The mapper refuses at load a mapping that declares an output stream
the target does not accept, or declares an accepted stream with another schema: such a mapping
would only fail once the pipeline runs, in the target, where the analyst cannot see why.
The mapper never imports the target's package: the contract is read from a folder of files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swap_transforms.errors import MappingFileError, Problem
from swap_transforms.shipped_files import shipped

#: The copies of the target's schemas shipped with this package: inside it in a wheel
#: (pyproject.toml's force-include), else beside it (transforms/schemas, an editable install).
DEFAULT_FOLDER = shipped("schemas")


@dataclass(frozen=True)
class Contract:
    """The streams a target accepts (one JSON Schema file per stream, named after it)."""

    folder: str
    schemas: dict[str, dict[str, Any]]

    @classmethod
    def load(cls, folder: str | Path | None = None) -> Contract:
        """Read every `<stream>.json` of `folder` (default: the shipped copies)."""
        path = DEFAULT_FOLDER if folder is None else Path(folder)
        files = sorted(path.glob("*.json")) if path.is_dir() else []
        if not files:
            message = (
                f"the target's contract (its input schemas) is not found in '{path}': set "
                "contract_schemas to the folder of target-klaviyo's schema copies"
            )
            raise MappingFileError([Problem(str(path), None, "", message)])
        schemas: dict[str, dict[str, Any]] = {}
        for file in files:
            try:
                schemas[file.stem] = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                problem = Problem(str(file), None, "", f"not a JSON Schema file: {error}")
                raise MappingFileError([problem]) from None
        return cls(str(path), schemas)

    def problem(self, name: str, schema: dict[str, Any], schema_file: str) -> str | None:
        """What is wrong with declaring output `name` with `schema`, or None."""
        accepted = self.schemas.get(name)
        if accepted is None:
            names = ", ".join(sorted(self.schemas))
            return f"the target does not accept a stream '{name}' (it accepts: {names})"
        if schema != accepted:
            return (
                f"schema '{schema_file}' is not the target's contract for '{name}': use "
                f"{Path(self.folder) / (name + '.json')}"
            )
        return None
