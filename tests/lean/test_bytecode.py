"""Meltano's plugin virtualenvs hold bytecode for every module, as scripts/setup.sh leaves them.

Meltano's installer leaves a plugin's virtualenv as sources whenever Python may not write bytecode
(``PYTHONDONTWRITEBYTECODE``, read-only installs): then every run compiles each module it imports,
about half of a plugin's start-up (README, "Benchmarks"). The set-up byte-compiles them once; a
plugin reinstalled by hand (``meltano install``) loses it, and this test says which and how to fix.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

from tests.support.shared import REPO

VENVS = sorted(REPO.glob(".meltano/*/*/venv"))


def _uncompiled(venv: Path) -> list[str]:
    """Python sources in the virtualenv's site-packages with no bytecode beside them."""
    purelib = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    site = Path(purelib)
    return [
        str(source.relative_to(site))
        for source in site.rglob("*.py")
        if not Path(importlib.util.cache_from_source(str(source))).exists()
    ]


def test_the_set_up_installed_every_plugin_virtualenv() -> None:
    assert {venv.parent.name for venv in VENVS} >= {
        "tap-swapcommerce",
        "swap-transforms",
        "target-klaviyo",
        "swap-webhooks",
    }, "run `bash scripts/setup.sh` first"


@pytest.mark.parametrize("venv", VENVS, ids=lambda venv: venv.parent.name)
def test_every_module_of_a_plugin_virtualenv_is_byte_compiled(venv: Path) -> None:
    missing = _uncompiled(venv)
    where = venv.relative_to(REPO)
    assert not missing, (
        f"{len(missing)} modules of {where} have no bytecode (e.g. {missing[:3]}): every run "
        f"would compile them. Run `bash scripts/setup.sh`, or "
        f"`{where}/bin/python -m compileall -q {where}/lib`"
    )
