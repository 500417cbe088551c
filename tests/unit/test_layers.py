"""The floors of ``src/edgefleet``: no module imports from a higher floor, no import cycle.

Read from the source with :mod:`ast`, so every import counts: module level, inside functions
(late imports) and under ``if TYPE_CHECKING:``. An import of ``a.b.c`` names module ``a.b.c``
if it exists, else the package or module ``a.b`` it comes from. Floors, lowest first (the README's
Layout section says the same in prose):

0. the shared core: ``errors``, ``names``, ``tensors``, ``jsondoc``, ``bodies``, ``proto``,
   ``wire``, ``runtimes``, ``package`` (used by the agent and the control plane alike);
1. agent-wide modules: ``agent.config``, ``agent.types``, ``agent.backoff``;
2. ``agent.serving`` and ``agent.capture`` (neither imports the other);
3. ``agent.device``: the device side of the control plane;
4. ``agent.daemon``: the composition root of the agent;
1-4 for the control plane too: ``fleet`` never imports ``edgefleet.agent``;
1 for the JSON-RPC bridge (``bridge``): a client of the agent's socket, beside agent and fleet;
5. command lines: ``agent.cli``, ``package.cli``, ``fleet.cli``, ``edgefleet.cli``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

#: Module prefix -> floor; the longest matching prefix wins.
FLOORS = {
    "edgefleet": 0,
    "edgefleet.agent": 1,
    "edgefleet.agent.serving": 2,
    "edgefleet.agent.capture": 2,
    "edgefleet.agent.device": 3,
    "edgefleet.agent.daemon": 4,
    "edgefleet.agent.cli": 5,
    "edgefleet.agent.__main__": 5,
    "edgefleet.fleet": 1,
    "edgefleet.fleet.cli": 5,
    "edgefleet.fleet.__main__": 5,
    "edgefleet.bridge": 1,
    "edgefleet.bridge.cli": 5,
    "edgefleet.package.cli": 5,
    "edgefleet.cli": 5,
}

#: Module prefixes that must never import the other (side by side on one floor).
INDEPENDENT = [
    ("edgefleet.agent.serving", "edgefleet.agent.capture"),
    ("edgefleet.fleet", "edgefleet.agent"),
    ("edgefleet.bridge", "edgefleet.agent"),
    ("edgefleet.bridge", "edgefleet.fleet"),
]


def _modules() -> dict[str, Path]:
    """Every module under src/ by dotted name (a package by the name of its ``__init__``)."""
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def floor_of(name: str) -> int:
    """The floor of module ``name`` (its longest prefix in :data:`FLOORS`)."""
    best = max((p for p in FLOORS if _within(name, p)), key=len)
    return FLOORS[best]


def _resolve(name: str) -> str | None:
    """The project module an import of ``name`` loads (None outside the project)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> Iterator[tuple[str, int]]:
    """``(imported project module, line)`` for every import statement in ``module``."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                yield target, node.lineno


GRAPH = {module: sorted(set(imports_of(module))) for module in MODULES}


def test_the_checker_sees_the_project() -> None:
    # Guards against a checker that passes because it read nothing.
    assert "edgefleet.agent.daemon" in MODULES
    daemon_imports = {target for target, _ in GRAPH["edgefleet.agent.daemon"]}
    assert "edgefleet.agent.serving.service" in daemon_imports
    assert floor_of("edgefleet.agent.device.deploy") == 3
    assert floor_of("edgefleet.package.cli") == 5
    assert floor_of("edgefleet.tensors") == 0


def test_no_module_imports_from_a_higher_floor() -> None:
    wrong = [f"{module} (floor {floor_of(module)}) imports {target} (floor {floor_of(target)}) "
             f"at line {line}"
             for module, targets in GRAPH.items() for target, line in targets
             if floor_of(target) > floor_of(module)]
    assert not wrong, "\n".join(wrong)


def test_side_by_side_packages_stay_independent() -> None:
    wrong = [f"{module} imports {target} at line {line}"
             for module, targets in GRAPH.items() for target, line in targets
             for a, b in INDEPENDENT for x, y in ((a, b), (b, a))
             if _within(module, x) and _within(target, y)]
    assert not wrong, "\n".join(wrong)


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_src_has_no_import_cycle() -> None:
    graph = {module: [t for t, _ in targets] for module, targets in GRAPH.items()}
    cycles = _cycles(graph)
    assert not cycles, "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": []}) == []


def test_every_folder_says_what_it_owns() -> None:
    # A folder without __init__.py would be a namespace package this check cannot see.
    folders = {path.parent for path in SRC.rglob("*.py")} - {SRC}
    assert sorted(str(f) for f in folders if not (f / "__init__.py").exists()) == []
    silent = [str(path.relative_to(SRC)) for path in SRC.rglob("__init__.py")
              if not ast.get_docstring(ast.parse(path.read_text()))]
    assert silent == []
