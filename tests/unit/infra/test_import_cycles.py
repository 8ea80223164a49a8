"""No import cycle between first-party modules (issue 14), strictly: no allow-list.

The graph comes from grimp (the engine of import-linter): every import statement, those inside
functions and under TYPE_CHECKING included, since each still makes the two modules depend on
each other. A cycle is a strongly connected component of that graph; the failure names each one
with an import chain that closes it, file lines included.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[3]
#: The first-party packages; `payments` once it exists (issue 14 creates it).
FIRST_PARTY = ("runtime", "monitors", "services", "payments")


def _packages() -> list[str]:
    present = [name for name in FIRST_PARTY if (REPO / name / "__init__.py").is_file()]
    for name in present:
        spec = importlib.util.find_spec(name)
        # The graph must be of this checkout, not of an installed copy elsewhere.
        assert spec is not None, name
        assert spec.origin is not None, name
        assert Path(spec.origin).resolve().is_relative_to(REPO), (name, spec.origin)
    return present


def _build(packages: Iterable[str]) -> grimp.ImportGraph:
    first, *rest = packages
    return grimp.build_graph(first, *rest, cache_dir=None)


def strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """The components of more than one module, or of a module importing itself (Tarjan,
    iterative: the graph holds a few hundred modules and recursion depth is not to be trusted)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            module, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                elif child in on_stack:
                    low[module] = min(low[module], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[module])
            if low[module] == index[module]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == module:
                        break
                if len(component) > 1 or graph.direct_import_exists(
                    importer=module, imported=module
                ):
                    components.append(sorted(component))
    return sorted(components)


def describe(graph: grimp.ImportGraph, component: list[str]) -> str:
    """One cycle through the component's first module, each import with its file line."""
    start = component[0]
    # A module of the component importing `start`, and the shortest chain from `start` to it.
    back = min(set(component) & graph.find_modules_that_directly_import(start))
    chain = graph.find_shortest_chain(importer=start, imported=back) if back != start else None
    steps = [*(chain or (start,)), start]
    lines = []
    for importer, imported in itertools.pairwise(steps):
        details = graph.get_import_details(importer=importer, imported=imported)
        where = ", ".join(f"line {d['line_number']}: {d['line_contents']}" for d in details)
        lines.append(f"    {importer} -> {imported}  ({where})")
    return f"  {{{', '.join(component)}}}\n" + "\n".join(lines)


def cycles_report(graph: grimp.ImportGraph) -> str:
    return "\n".join(describe(graph, c) for c in strongly_connected(graph))


def test_no_import_cycle_between_first_party_modules() -> None:
    graph = _build(_packages())
    report = cycles_report(graph)
    assert not report, "import cycles (each: its modules, then one chain closing it):\n" + report


def test_a_planted_cycle_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail: a package whose `a` imports `b` (inside a function) and `b` imports
    `a` under TYPE_CHECKING, beside an acyclic `c`, is reported with exactly that cycle."""
    package = tmp_path / "planted_cycle_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(
        textwrap.dedent(
            """
            def f() -> None:
                from planted_cycle_pkg import b
                b.g()
            """
        )
    )
    (package / "b.py").write_text(
        textwrap.dedent(
            """
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from planted_cycle_pkg.a import f
            def g() -> None: ...
            """
        )
    )
    (package / "c.py").write_text("from planted_cycle_pkg import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "planted_cycle_pkg", raising=False)
    graph = _build(["planted_cycle_pkg"])
    assert strongly_connected(graph) == [["planted_cycle_pkg.a", "planted_cycle_pkg.b"]]
    report = cycles_report(graph)
    assert "planted_cycle_pkg.a -> planted_cycle_pkg.b  (line 3:" in report
    assert "planted_cycle_pkg.b -> planted_cycle_pkg.a  (line 4:" in report
    # Broken, it is no longer reported.
    (package / "b.py").write_text("def g() -> None: ...\n")
    assert strongly_connected(_build(["planted_cycle_pkg"])) == []
