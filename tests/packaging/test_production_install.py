"""A production install of the project pulls in no emulator dependency.

Production is the root package (the launcher, brands) with Meltano, plus each plugin (and
swap-health) as meltano.yml installs them, without dev or test extras. The distributions that
install brings are computed from the packages' own pyproject.toml files, then through the installed
distributions' metadata (``Requires-Dist``, markers evaluated), as pip would resolve them.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
#: What production installs: the root package, and each plugin with the extras meltano.yml asks.
PRODUCTION = {
    ".": set(),
    "tap-swapcommerce": set(),
    "transforms": set(),
    "target-klaviyo": {"report", "postgres"},
    "swap-webhooks": set(),
    "swap-health": set(),
}
LOCAL = {"tap-swapcommerce", "swap-transforms", "target-klaviyo", "swap-webhooks", "swap-health"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(folder: str, extras: set[str]) -> list[Requirement]:
    project = tomllib.loads((REPO / folder / "pyproject.toml").read_text())["project"]
    found = [Requirement(r) for r in project.get("dependencies", [])]
    for extra in extras:
        found += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return found


def runtime_distributions(roots: dict[str, set[str]]) -> set[str]:
    """Every distribution the packages in ``roots`` need at run time, transitively."""
    todo = [r for folder, extras in roots.items() for r in declared(folder, extras)]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        requirement = todo.pop()
        name = normalise(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        if name in LOCAL:  # a package of this repository: its pyproject, not its install
            continue
        try:
            needs = requires(name) or []
        except PackageNotFoundError:
            continue  # not installed here: an optional dependency of another platform
        for text in needs:
            need = Requirement(text)
            environments = [{"extra": e} for e in (requirement.extras or {""})]
            if need.marker is None or any(need.marker.evaluate(e) for e in environments):
                todo.append(need)
    return {name for name, _ in seen}


def emulator_only() -> set[str]:
    """The emulators' own dependencies that no production package declares."""
    production = {normalise(r.name) for f, e in PRODUCTION.items() for r in declared(f, e)}
    return {normalise(r.name) for r in declared("emulators", set())} - production


def test_a_production_install_has_no_emulator_dependency() -> None:
    installed = runtime_distributions(PRODUCTION)
    assert "meltano" in installed
    assert "singer-sdk" in installed
    assert {"klaviyo-api", "pydantic"} <= emulator_only()
    leaked = installed & (emulator_only() | {"swap-klaviyo-emulators"})
    assert not leaked, f"a production install would bring the emulators' {sorted(leaked)}"


def test_the_root_wheel_ships_no_emulators() -> None:
    hatch = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]
    assert "emulators" not in hatch["build"]["targets"]["wheel"]["packages"]


def test_the_emulators_package_is_what_brings_them() -> None:
    assert {"klaviyo-api", "pydantic"} <= runtime_distributions({"emulators": set()})
