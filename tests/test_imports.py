"""The package has no import cycle — including imports made lazily inside functions, which hide cycles."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"fastnmf": ROOT / "fastnmf", "fastnmf.kernels": ROOT / "kernels"}


def _modules():
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            relative = path.relative_to(folder).with_suffix("")
            parts = [p for p in relative.parts if p != "__init__"]
            name = ".".join([package, *parts])
            if name.startswith("fastnmf.kernels.") and package == "fastnmf":
                continue
            yield name, path, relative.name == "__init__"


def _imports(name, path, is_package):
    """Intra-package modules that ``name`` imports anywhere in its source (module or function level)."""
    base = name.split(".") if is_package else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            anchor = base[: len(base) - node.level + 1]
            target = ".".join(anchor + ([node.module] if node.module else []))
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from . import x` imports x
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("fastnmf"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fastnmf"):
            found.add(node.module)
    return found


def test_no_import_cycle():
    modules = {name: (path, is_package) for name, path, is_package in _modules()}
    graph = {name: sorted(t for t in _imports(name, *modules[name]) if t in modules and t != name)
             for name in modules}
    # A submodule always imports its parent package first: that edge is implicit and not a cycle.
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for target in graph[node]:
            if node.startswith(target + "."):
                continue
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for name in graph:
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles
    assert "fastnmf.layouts.base" in graph and "fastnmf.backends.registry" in graph  # the walk saw them
