"""Each plugin declares every distribution its package imports, so that it installs alone.

A plugin is installed into a virtualenv of its own by Meltano (and by anyone reusing it): a module
it imports without declaring works here only because another package of the project pulled it in.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[2]
PLUGINS = {
    "tap-swapcommerce": "tap_swapcommerce",
    "transforms": "swap_transforms",
    "target-klaviyo": "target_klaviyo",
    "swap-webhooks": "swap_webhooks",
    "swap-health": "swap_health",
    "emulators": "",
}


def imported_distributions(package: Path) -> dict[str, str]:
    """Distribution -> one module importing it, for every third-party import in ``package``."""
    providers = packages_distributions()
    found: dict[str, str] = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == package.name:
                    continue
                for distribution in providers.get(top, [top]):
                    found.setdefault(normalise(distribution), str(path.relative_to(package.parent)))
    return found


def declared(pyproject: Path) -> set[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {normalise(re.split(r"[\s\[<>=~!;]", r, maxsplit=1)[0]) for r in requirements}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("folder", PLUGINS)
def test_every_imported_distribution_is_declared(folder: str) -> None:
    used = imported_distributions(REPO / folder / PLUGINS[folder])  # emulators: the folder
    known = declared(REPO / folder / "pyproject.toml")
    missing = {d: where for d, where in used.items() if d not in known}
    assert not missing, f"{folder}/pyproject.toml lacks what its package imports: {missing}"


def test_the_scan_sees_undeclared_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "m.py").write_text("import json\nimport requests\nfrom pkg import m\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "pkg"\ndependencies = []\n')
    used = imported_distributions(package)
    assert set(used) == {"requests"}
    assert "requests" not in declared(tmp_path / "pyproject.toml")
