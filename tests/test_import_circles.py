"""No module of the project imports, directly or through others, a module that imports it back.

Imports inside functions and under `if TYPE_CHECKING:` count: they close the circle later, not
never. The rules are those of ../shared/tools/import-circles, so the two name the same circles:
`from X import y` depends on X (whose __init__ runs) and on X.y when that is a module; an import
resolves to the longest known module it names; a package importing its own submodules is how a
package is built, not a circle. Migrations and tests are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("agenthub", "agenthub_cli", "hooks", "jobs", "notify")

# module -> {imported module -> where: "path:line" of its first import}
Graph = dict[str, dict[str, str]]


def find_modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root)
            if "migrations" in rel.parts or rel.name.startswith("test_"):
                continue
            parts = rel.with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def named_imports(name: str, path: Path) -> list[tuple[str, int]]:
    """Every module name an import statement anywhere in the file names, with its line."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    named = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            named += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(p for p in [*up, base] if p)
            named.append((base, node.lineno))
            named += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return named


def resolve(target: str, known: dict[str, Path]) -> str | None:
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def import_graph(root: Path, packages: tuple[str, ...] = PACKAGES) -> Graph:
    known = find_modules(root, packages)
    graph: Graph = {}
    for name, path in known.items():
        edges = graph[name] = {}
        for target, line in named_imports(name, path):
            module = resolve(target, known)
            if module and module != name and not module.startswith(name + "."):
                edges.setdefault(module, f"{path.relative_to(root)}:{line}")
    return graph


def circles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = stack[stack.index(v) :]
            del stack[stack.index(v) :]
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def describe(component: list[str], graph: Graph) -> str:
    members = set(component)
    ties = [
        f"  {a} -> {b}  ({graph[a][b]})"
        for a in component
        for b in sorted(graph[a].keys() & members)
    ]
    return f"circle of {len(component)} modules:\n" + "\n".join(ties)


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph(ROOT)
    found = circles(graph)
    assert not found, "\n" + "\n".join(describe(c, graph) for c in found)


def test_it_finds_a_circle_closed_inside_a_function_or_under_type_checking(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("from pkg import a\n")
    (tmp_path / "pkg" / "a.py").write_text("from pkg.b import helper\n")
    (tmp_path / "pkg" / "b.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from pkg.c import C\n"
        "def helper():\n"
        "    from . import a\n"
    )
    (tmp_path / "pkg" / "c.py").write_text("import pkg.b\n")
    graph = import_graph(tmp_path, ("pkg",))
    assert circles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert graph["pkg.b"] == {"pkg.c": "pkg/b.py:3", "pkg": "pkg/b.py:5", "pkg.a": "pkg/b.py:5"}
    assert "pkg.a" not in graph["pkg"]  # a package importing its own submodule is no circle


def test_the_cli_package_is_a_library_the_mcp_server_uses_not_the_reverse():
    graph = import_graph(ROOT)
    assert "agenthub_cli.client" in graph["agenthub_cli.mcp_server"]
    assert "agenthub_cli.mcp_server" in graph["agenthub_cli.commands"]  # `agenthub mcp`
    assert not {"agenthub_cli.commands", "agenthub_cli.main"} & set(
        graph["agenthub_cli.mcp_server"]
    )
