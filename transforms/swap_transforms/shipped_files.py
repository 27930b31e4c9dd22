"""Where the files shipped with the mapper are, installed from a wheel or editable.

A wheel (an install from git, as another Meltano project does) carries the plugin folder's
`schemas/` and `sources/` inside the package (`swap_transforms/shipped/`, pyproject.toml); an
editable install (this project's `pip_url: -e ./transforms`) reads them from the folder itself.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped(name: str) -> Path:
    """The shipped folder `name`: the wheel's copy if there is one, else the plugin folder's."""
    inside = _PACKAGE / "shipped" / name
    return inside if inside.is_dir() else _PACKAGE.parent / name
