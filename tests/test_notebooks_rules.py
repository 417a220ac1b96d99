"""The notebook rules (issue 13), enforced for every notebook in ``notebooks/`` and every rendered report.

A notebook reads like the paper and only calls the library:

(a) no function or class is defined in a code cell (``lambda`` is fine): what a notebook needs lives in
    ``repro``;
(b) no private name is imported or reached (``from repro.bench import _summary``, ``bench._summary(...)``,
    ``import repro._x``), and no benchmark module is imported (``repro.bench``): what a notebook and a
    benchmark share lives in the paper's package;
(c) no code cell is longer than :data:`MAX_LINES` lines.

And a rendered report (``reports/*.html`` but the index) carries no stray warning in its outputs: no
Python warning (``UserWarning: ...``) and no torch C++ log line (``W1129 12:34:56.789 ...``, ``[W ...]``).

Each failure names the notebook (or page), the cell index and the rule. Cell indices count every cell of
the notebook from 0 (markdown too), as Jupyter's ``nb["cells"]`` does; on a rendered page they count the
page's cells, which include the ``injected-parameters`` cell papermill adds after the parameters cell.
"""

from __future__ import annotations

import ast
import html
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PAGES = sorted(p for p in (ROOT / "reports").glob("*.html") if p.name != "index.html")
MAX_LINES = 25
BENCHMARK_MODULES = ("repro.bench",)
CELL_MAGICS_PYTHON = ("%%time", "%%timeit", "%%capture")  # cell magics whose body is still Python


def _python_source(source: str) -> str | None:
    """The cell as Python: IPython line magics and shell escapes (``%...``, ``!...``) become blank lines.

    ``None`` for a cell that is not Python at all (a ``%%bash``-style cell magic).
    """
    lines = source.split("\n")
    if lines and lines[0].lstrip().startswith("%%"):
        if not lines[0].lstrip().startswith(CELL_MAGICS_PYTHON):
            return None
        lines[0] = ""
    return "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in lines)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_benchmark(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in BENCHMARK_MODULES)


def cell_violations(source: str) -> list[str]:
    """The rules one code cell breaks, each as ``"rule (x): what"``; empty when it keeps them all."""
    out = []
    n_lines = len(source.strip("\n").split("\n")) if source.strip() else 0
    if n_lines > MAX_LINES:
        out.append(f"rule (c): {n_lines} lines, more than {MAX_LINES}")
    code = _python_source(source)
    if code is None:
        return out
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        return [*out, f"does not parse as Python (line {e.lineno}): {e.msg}"]
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out.append(f"rule (a): defines the function {node.name!r} (line {node.lineno})")
        elif isinstance(node, ast.ClassDef):
            out.append(f"rule (a): defines the class {node.name!r} (line {node.lineno})")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if any(_is_private(part) for part in alias.name.split(".")):
                    out.append(f"rule (b): imports the private module {alias.name!r} (line {node.lineno})")
                if _is_benchmark(alias.name):
                    out.append(f"rule (b): imports the benchmark module {alias.name!r} (line {node.lineno})")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if any(_is_private(part) for part in module.split(".") if part):
                out.append(f"rule (b): imports from the private module {module!r} (line {node.lineno})")
            if _is_benchmark(module):
                out.append(f"rule (b): imports from the benchmark module {module!r} (line {node.lineno})")
            for alias in node.names:
                if _is_private(alias.name):
                    out.append(f"rule (b): imports the private name {alias.name!r} from {module!r} "
                               f"(line {node.lineno})")
                full = f"{module}.{alias.name}" if module else alias.name
                if not _is_benchmark(module) and _is_benchmark(full):
                    out.append(f"rule (b): imports the benchmark module {full!r} (line {node.lineno})")
        elif isinstance(node, ast.Attribute):
            if _is_private(node.attr):
                out.append(f"rule (b): reaches the private name {node.attr!r} (line {node.lineno})")
            if isinstance(node.value, ast.Name) and _is_benchmark(f"{node.value.id}.{node.attr}"):
                out.append(f"rule (b): uses the benchmark module '{node.value.id}.{node.attr}' (line {node.lineno})")
    return out


def notebook_violations(path: Path) -> list[str]:
    """Every rule broken by a notebook: ``"<name> cell <index>: rule (x): what"``, in cell order."""
    nb = json.loads(Path(path).read_text())
    out = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        out += [f"{Path(path).name} cell {i}: {v}" for v in cell_violations(source)]
    return out


# A warning in an output: Python's warning lines, and torch's C++ (glog) log lines W/E MMDD hh:mm:ss.
WARNING_LINE = re.compile(
    r"\b[A-Z]\w*Warning\b\s*:"  # UserWarning: ..., DeprecationWarning: ..., FutureWarning: ...
    r"|^\s*\[?[WE]\d{4} \d{2}:\d{2}:\d{2}\.\d+"  # W1129 12:34:56.789000 123 file.py:56] ...
    r"|^\s*\[W[ \d]"  # [W socket.cpp:...] / [W1129 ...]
    r"|\bwarnings\.warn\(",  # the source line Python prints under a warning
    re.M,
)
_CELL = re.compile(r'<div class="jp-Cell [^"]*"(?: id="cell-id=([^"]*)")?')
_TAG = re.compile(r"<[^>]+>")


def page_warnings(path: Path) -> list[str]:
    """Warning lines in the outputs of a rendered page: ``"<page> cell <index> (id <id>): <line>"``."""
    text = Path(path).read_text("utf-8")
    starts = list(_CELL.finditer(text))
    out = []
    for i, m in enumerate(starts):
        chunk = text[m.start(): starts[i + 1].start() if i + 1 < len(starts) else len(text)]
        k = chunk.find('class="jp-Cell-outputWrapper"')
        if k < 0:
            continue
        outputs = html.unescape(_TAG.sub("", chunk[k:]))
        for line in outputs.split("\n"):
            if WARNING_LINE.search(line):
                out.append(f"{Path(path).name} cell {i} (id {m.group(1)}): {line.strip()[:160]}")
    return out


# ------------------------------------------------------------------------------------ the real folders


def test_there_are_notebooks_and_pages():
    assert NOTEBOOKS, "no notebooks found in notebooks/"
    assert PAGES, "no rendered reports found in reports/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_keeps_the_rules(path):
    bad = notebook_violations(path)
    assert not bad, "the notebook breaks the notebook rules (see tests/test_notebooks_rules.py):\n" + "\n".join(bad)


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_report_carries_no_warning(path):
    bad = page_warnings(path)
    assert not bad, "the rendered report prints warnings; silence them at the source and re-render:\n" + "\n".join(bad)


# ---------------------------------------------------------------------------- the checks themselves


def _notebook(tmp_path: Path, *sources: str) -> Path:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": ["# A notebook\n"]}]
    cells += [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
               "source": s.splitlines(keepends=True)} for s in sources]
    path = tmp_path / "99_synthetic.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


GOOD = """%matplotlib inline
!nvidia-smi
import numpy as np
from repro.picasso import bench_grid
from repro import dcpt
f = lambda x: x + 1
rows = sorted(bench_grid(), key=lambda r: r["F"])
print(np.__version__, dcpt.laws.L3, f(1))
"""


def test_a_clean_notebook_passes(tmp_path):
    assert notebook_violations(_notebook(tmp_path, GOOD, "%%time\nx = 1\n", "%%bash\nls -l | wc\n")) == []


@pytest.mark.parametrize("source, rule", [
    ("def token_loader(path):\n    return path\n", "rule (a): defines the function 'token_loader'"),
    ("async def go():\n    pass\n", "rule (a): defines the function 'go'"),
    ("class Table:\n    pass\n", "rule (a): defines the class 'Table'"),
    ("for i in range(3):\n    def g():\n        pass\n", "rule (a): defines the function 'g'"),
    ("from repro.bench import _summary\n", "rule (b): imports the private name '_summary'"),
    ("from repro.bench import picasso\n", "rule (b): imports from the benchmark module 'repro.bench'"),
    ("from repro import bench\n", "rule (b): imports the benchmark module 'repro.bench'"),
    ("import repro.bench.picasso as bp\n", "rule (b): imports the benchmark module 'repro.bench.picasso'"),
    ("from repro.dcpt._fit import x\n", "rule (b): imports from the private module 'repro.dcpt._fit'"),
    ("import repro._private\n", "rule (b): imports the private module 'repro._private'"),
    ("import repro\nt = repro.bench.run()\n", "rule (b): uses the benchmark module 'repro.bench'"),
    ("from repro import dcpt\nrows = dcpt._summary(3)\n", "rule (b): reaches the private name '_summary'"),
    ("\n".join(f"x{i} = {i}" for i in range(26)), "rule (c): 26 lines, more than 25"),
    ("x = (\n", "does not parse as Python"),
])
def test_each_rule_names_notebook_cell_and_rule(tmp_path, source, rule):
    bad = notebook_violations(_notebook(tmp_path, GOOD, source))
    assert bad and all(b.startswith("99_synthetic.ipynb cell 2: ") for b in bad), bad
    assert any(b.startswith(f"99_synthetic.ipynb cell 2: {rule}") for b in bad), bad
    if "_summary" not in source or "bench" not in source:  # that one breaks two parts of rule (b)
        assert len(bad) == 1, bad


def test_rule_limits_sit_on_the_line(tmp_path):
    at_limit = "\n".join(f"x{i} = {i}" for i in range(MAX_LINES)) + "\n\n"  # trailing blank lines do not count
    dunder = "import repro\nprint(repro.__file__, repro.__name__)\n"
    assert notebook_violations(_notebook(tmp_path, at_limit, dunder)) == []


def _page(tmp_path: Path, *outputs: str) -> Path:
    cells = ['<div class="jp-Cell jp-MarkdownCell jp-Notebook-cell" id="cell-id=md0"><p>UserWarning: in prose'
             "</p></div>"]
    for k, out in enumerate(outputs):
        cells.append(f'<div class="jp-Cell jp-CodeCell jp-Notebook-cell" id="cell-id=c{k}"><pre>warnings.warn(x) '
                     f'in the input</pre></div><div class="jp-Cell-outputWrapper"><div class="jp-OutputArea">'
                     f"<pre>{html.escape(out)}</pre></div></div>")
    path = tmp_path / "99_page.html"
    path.write_text("<html><body>" + "\n".join(cells) + "</body></html>")
    return path


@pytest.mark.parametrize("line", [
    "/x/site-packages/torch/nn/modules/module.py:1: UserWarning: the thing is deprecated",
    "DeprecationWarning: use y",
    "<ipython-input-3>:2: FutureWarning: the default will change",
    "  warnings.warn(msg)",
    "W1129 12:34:56.789000 18042 torch/fx/_symbolic_trace.py:56] is_fx_tracing will return true",
    "[W1129 12:34:56.789 socket.cpp:464] [c10d] the hostname could not be resolved",
    "[W socket.cpp:663] [c10d] the client socket has failed to connect",
])
def test_page_warnings_are_found_in_outputs(tmp_path, line):
    bad = page_warnings(_page(tmp_path, "loss 0.31", f"step 1\n{line}\nstep 2"))
    assert len(bad) == 1 and bad[0].startswith("99_page.html cell 2 (id c1): "), bad


def test_page_without_warnings_passes(tmp_path):
    # prose and inputs that mention warnings are not outputs; ordinary output lines are not warnings
    clean = ["loss 0.31 at step 1129", "W = 12.5 (weights)", "Warnings: none", "Wall time: 1.2 s"]
    assert page_warnings(_page(tmp_path, *clean)) == []
