"""The layout of ``repro.picasso`` (issue 13): no exported name shadows a submodule, every import between
its modules points down a layer (no cycle, lazy imports included), every public function and class says
what it does."""

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import repro.picasso as pkg

MODULES = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__))


def test_no_export_shadows_a_submodule():
    """``import repro.picasso.training as m`` must give the module, not a function of the same name."""
    for name in MODULES:
        mod = importlib.import_module(f"repro.picasso.{name}")
        assert getattr(pkg, name) is mod, f"repro.picasso.{name} is {getattr(pkg, name)!r}, not the module"
        assert name not in pkg.__all__
    assert inspect.ismodule(importlib.import_module("repro.picasso.training"))
    assert pkg.train.__module__ == "repro.picasso.training"


def _imports(name: str) -> set[str]:
    """Sibling modules ``name`` imports anywhere in its source (inside functions too)."""
    tree = ast.parse(Path(pkg.__path__[0], f"{name}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("repro.picasso."):
            out.add(node.module.split(".")[2])
    return out & set(MODULES)


def test_imports_form_layers():
    """A depth-first search finds no cycle (``cache`` <-> ``embedding`` was one, through a lazy import)."""
    graph = {m: _imports(m) for m in MODULES}
    assert "cache" not in graph["embedding"]
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for d in graph[m]:
            assert state.get(d) != 1, f"import cycle: {' -> '.join([*path, m, d])}"
            if d not in state:
                visit(d, [*path, m])
        state[m] = 2

    for m in MODULES:
        if m not in state:
            visit(m, [])


def test_public_names_have_docstrings():
    missing = []
    for name in MODULES:
        mod = importlib.import_module(f"repro.picasso.{name}")
        for attr, obj in vars(mod).items():
            if attr.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and not inspect.getdoc(obj):
                missing.append(f"{name}.{attr}")
    assert not missing, missing
