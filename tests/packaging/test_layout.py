"""The layout's rules: benchmarks do not lean on the tests, conftests hold fixtures only."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_nothing_in_bench_imports_the_tests() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(
            m for m in imported_modules(path) if m == "tests" or m.startswith("tests.")
        )
        for path in sorted((REPO / "bench").glob("*.py"))
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_conftests_define_no_helpers() -> None:
    """Shared helpers live in tests/support modules; a conftest defines fixtures and hooks only."""
    helpers: dict[str, list[str]] = {}
    for path in sorted((REPO / "tests").rglob("conftest.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                decorated = any(
                    "fixture" in ast.unparse(d) for d in getattr(node, "decorator_list", [])
                )
                if not decorated and not node.name.startswith("pytest_"):
                    helpers.setdefault(str(path.relative_to(REPO)), []).append(node.name)
    assert not helpers, f"move these to tests/support: {helpers}"
