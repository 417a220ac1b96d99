"""Consistency of the repository itself: notebooks stored clean, dependency files in step."""

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "tests" / "fixtures").rglob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_clean(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3", "kernelspec must be python3"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"cell {i} has outputs: strip them"
            assert cell.get("execution_count") is None, f"cell {i} has an execution count"
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assert re.search(r"^profile = None$", "".join(tagged[0]["source"]), re.M), "parameters must hold profile = None"


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ;]", spec, maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [s for extra in project["optional-dependencies"].values() for s in extra]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pip = [s for s in pip if not s.startswith("-e")]
    assert sorted(s.replace(" ", "") for s in pip) == sorted(s.replace(" ", "") for s in specs), (
        "environment.yml and pyproject.toml name different packages or versions: "
        f"only in pyproject {sorted(set(map(_name, specs)) - set(map(_name, pip)))}, "
        f"only in environment.yml {sorted(set(map(_name, pip)) - set(map(_name, specs)))}")
    assert "python=3.11" in env["dependencies"]
    assert "torch==2.13.0" in specs, "torch must stay pinned to the CPU build 2.13.0"


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make report" in readme and "make test" in readme


STORED_TABLES = sorted((ROOT / "data").rglob("*.json"))
STORED_TABLES = [p for p in STORED_TABLES if p.with_suffix(".csv").exists()]


@pytest.mark.parametrize("path", STORED_TABLES, ids=lambda p: str(p.relative_to(ROOT / "data")))
def test_every_stored_table_names_the_machine_of_every_run(path):
    """Each run of a committed table names its CPU model, instruction set and threads: recorded by the run,
    or (for tables made before runs recorded it) in a table-level entry that says it was not recorded."""
    meta = json.loads(path.read_text())
    assert meta["runs"], "a stored table with no runs"
    for rid, info in meta["runs"].items():
        m = info.get("machine") or meta.get("machine")
        assert m, f"{rid}: no machine recorded, in the run or for the table"
        assert m["cpu_model"] and m["isa"] in ("avx512", "avx2", "other") and m["threads"] >= 1, rid
        if "machine" not in info:
            assert meta["machine"]["recorded"] is False and meta["machine"]["note"], rid


@pytest.mark.parametrize("path", sorted((ROOT / "reports" / "results").glob("*.json")), ids=lambda p: p.name)
def test_every_committed_result_names_the_machine(path):
    from repro.record import validate

    doc = json.loads(path.read_text())
    validate(doc)  # the schema requires cpu_model, isa and threads in machine
    assert doc["machine"]["cpu_model"] and doc["machine"]["threads"] >= 1


def _module_imports(lib: Path) -> dict[str, set[str]]:
    """``{module: repro modules it imports}``, from the source (lazy imports inside functions included)."""
    import ast

    files = {}
    for f in sorted((lib / "repro").rglob("*.py")):
        parts = f.relative_to(lib).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    graph: dict[str, set[str]] = {}
    for mod, f in files.items():
        package = mod if f.name == "__init__.py" else mod.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            deps |= {n for n in names if n in files and n != mod}
        graph[mod] = deps
    return graph


def test_library_imports_form_no_cycle():
    """Every import points down a layer: no two modules of ``repro`` import each other, directly or through
    others (a lazy import inside a function counts), except a package importing its own submodules."""
    graph = _module_imports(ROOT / "lib")

    def edges(m: str) -> set[str]:  # a submodule importing its own package's __init__ is not followed back down
        return {d for d in graph[m] if not m.startswith(d + ".")} if m in graph else set()

    cycles, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for d in sorted(edges(m)):
            if state.get(d) == "open":
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]) if d in stack else f"{m} -> {d}")
            elif d not in state:
                visit(d, [*stack, d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles in lib/repro:\n" + "\n".join(cycles)
