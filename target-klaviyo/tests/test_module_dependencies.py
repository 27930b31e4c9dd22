"""target_klaviyo's modules depend on what they use, and never on each other in a circle.

The graph is read from the package's source with ``ast`` (every import counts, also those under
``TYPE_CHECKING`` and inside functions: a typing-only import is still a dependency of the
design). A cycle means two modules cannot be understood, built or tested one without the other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

import pytest

import target_klaviyo

PACKAGE = Path(target_klaviyo.__file__).resolve().parent

#: The delivery components: each is built with the client, the ledger (or the few of its methods
#: it calls), callables and settings values, never with the run-wide ``Delivery``.
COMPONENTS = ("catalog", "events", "profiles", "integrity", "intake")


def module_name(root: Path, path: Path) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(module: str, is_package: bool, tree: ast.AST) -> set[str]:
    """The absolute names ``tree`` imports (``from a import b`` names ``a.b`` and ``a``)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph(root: Path) -> dict[str, set[str]]:
    """Each module of the package at ``root`` and the package's modules it imports."""
    files = {module_name(root, path): path for path in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        names = imported(module, path.name == "__init__.py", ast.parse(path.read_text()))
        submodules = {n for n in names if n in files}
        # ``from a import b`` with b a module depends on a.b; on a only when a name of a is used.
        parents = {n.rsplit(".", 1)[0] for n in submodules}
        used = {n for n in submodules if n not in parents or _names_of(n, names, files)}
        graph[module] = used - {module}
    return graph


def _names_of(package: str, names: set[str], files: Mapping[str, Path]) -> bool:
    """Whether ``names`` take something other than submodules from ``package``."""
    return any(n.rsplit(".", 1)[0] == package and n not in files for n in names)


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


@cache
def package_graph() -> dict[str, set[str]]:
    """target_klaviyo's graph, read once per session."""
    return import_graph(PACKAGE)


def test_no_import_cycle_between_target_klaviyo_modules() -> None:
    graph = package_graph()
    assert "target_klaviyo.delivery" in graph, "the graph reads the installed package"
    assert cycles(graph) == []


@pytest.mark.parametrize("component", COMPONENTS)
def test_delivery_components_do_not_depend_on_the_run_wide_delivery(component: str) -> None:
    uses = package_graph()[f"target_klaviyo.{component}"]
    assert "target_klaviyo.delivery" not in uses
    assert "target_klaviyo.target" not in uses
    assert "target_klaviyo.sinks" not in uses


def test_the_cycle_check_finds_a_cycle_also_through_a_type_checking_import(
    tmp_path: Path,
) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import c\n")
    (package / "a.py").write_text("from pkg.b import thing\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\nthing = 1\n"
    )
    (package / "sub" / "c.py").write_text("from pkg.sub import d\n")
    (package / "sub" / "d.py").write_text("from .c import x\n")
    (package / "e.py").write_text("import pkg.sub\n")
    graph = import_graph(package)
    assert graph["pkg.e"] == {"pkg.sub"}
    assert cycles(graph) == [["pkg.a", "pkg.b"], ["pkg.sub.c", "pkg.sub.d"]]
