"""The runner against the fixture notebook in tests/fixtures (not a paper notebook).

Tests marked slow execute the fixture (or variants of it made by :func:`variant`) with papermill; the
others check what the runner decides before any notebook starts.
"""

import ast
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import papermill as pm
import psutil
import pytest
from papermill.translators import PythonTranslator

from repro import execute, paths, runner
from repro.profile import ProfileError

NAME = "90_fixture"
FIXTURE = Path(__file__).parent / "fixtures" / "notebooks" / f"{NAME}.ipynb"
slow = pytest.mark.slow


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "repro", "run", *map(str, args)], capture_output=True, text=True,
                          timeout=300, **kw)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def variant(folder: Path, name: str, params: str | None = None, tagged: bool = True, cell3: str | None = None) -> Path:
    """A copy of the fixture as ``folder/name.ipynb`` recording under ``name``; optionally with another
    parameters cell source, without the ``parameters`` tag, or another third code cell."""
    nb = json.loads(FIXTURE.read_text())
    cells = nb["cells"]
    cells[2]["source"] = [s.replace(NAME, name) for s in cells[2]["source"]]
    if params is not None:
        cells[1]["source"] = params
    if not tagged:
        cells[1]["metadata"]["tags"] = []
    if cell3 is not None:
        cells[3]["source"] = cell3
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.ipynb"
    path.write_text(json.dumps(nb))
    return path


def snapshot_inputs(base: Path) -> SimpleNamespace:
    """Private copies of lib/repro and data/ (without data/build) to hash: other work may edit the real ones."""
    lib, data = base / "lib", base / "data"
    shutil.copytree(paths.LIB, lib, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(paths.DATA, data, ignore=lambda d, names: ["build"] if Path(d) == paths.DATA else [])
    return SimpleNamespace(lib=lib, data=data)


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    """One successful default-profile run of the fixture, with scale=7 (keyed on snapshots of lib/ and data/)."""
    base = tmp_path_factory.mktemp("good")
    nbs = base / "notebooks"
    shutil.copytree(FIXTURE.parent, nbs)
    inputs = snapshot_inputs(base)
    out = base / "reports"
    jobs = runner.run(notebooks=nbs, out=out, parameters={"scale": 7}, log=lambda s: None, lib=inputs.lib,
                      data=inputs.data)
    assert [j.status for j in jobs] == ["ok"]
    return SimpleNamespace(nbs=nbs, out=out, lib=inputs.lib, data=inputs.data)


def copy_run(good_run, tmp_path):
    shutil.copytree(good_run.nbs, tmp_path / "notebooks")
    shutil.copytree(good_run.out, tmp_path / "reports")
    return tmp_path / "notebooks", tmp_path / "reports"


@slow
def test_parameters_reach_the_notebook(good_run):
    out = good_run.out
    res = json.loads((out / "results" / f"{NAME}.json").read_text())
    assert res["parameters"]["scale"] == 7 and res["profile"] == "default"
    assert res["values"]["scale"]["value"] == 7
    assert res["claims"][0]["verdict"] == "reproduced"
    page = re.sub(r"<[^>]+>", "", (out / f"{NAME}.html").read_text())
    assert "scale = 7" in page  # papermill's injected-parameters cell is in the report
    assert 'href="90_fixture.html"' in (out / "index.html").read_text()
    state = json.loads((out / "runs.json").read_text())
    assert state[NAME]["status"] == "ok" and state[NAME]["parameters"] == {"scale": 7}


@slow
def test_pages_fetch_nothing_from_the_internet(good_run):
    for page in [good_run.out / "index.html", good_run.out / f"{NAME}.html"]:
        text = page.read_text()
        refs = re.findall(r'(?:src|href)="([^"]+)"', text)
        remote = [r for r in refs if r.startswith(("http:", "https:", "//"))]
        # the only remote link allowed is to the paper itself (an <a>, never a loaded resource)
        loaded = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(https?:|//)', text)
        assert not loaded, f"{page.name} loads {loaded}"
        for r in refs:
            if not r.startswith(("#", "data:")) and r not in remote:
                assert (page.parent / r).exists(), f"{page.name}: {r} does not resolve"


@slow
def test_failing_cell_keeps_good_report_and_shows_red(good_run, tmp_path):
    nbs, out = copy_run(good_run, tmp_path)
    before = {k: v for k, v in snapshot(out).items() if k != "index.html" and k != "runs.json"}
    p = cli("--notebooks", nbs, "--out", out, "-p", "fail=True", "-p", "scale=7")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "90_fixture failed in code cell 3" in p.stdout
    assert "RuntimeError: failing on request" in p.stdout
    after = snapshot(out)
    for k, v in before.items():
        assert after[k] == v, f"{k} changed after a failed run"
    index = (out / "index.html").read_text()
    assert 'class="failed"' in index and "RuntimeError" in index and "failing on request" in index
    state = json.loads((out / "runs.json").read_text())
    assert state[NAME]["status"] == "failed" and state[NAME]["error"]["cell"]["code_cell"] == 3
    assert state[NAME]["last_ok"]  # the good report it keeps is dated
    assert state[NAME]["last_ok_profile"] == "default"


@slow
def test_unknown_profile_and_parameter_list_the_valid_ones(fixture_notebooks, tmp_path):
    p = cli("--notebooks", fixture_notebooks, "--out", tmp_path / "r", "--profile", "tiny")
    assert p.returncode == 2 and "smoke" in p.stderr and "default" in p.stderr and "full" in p.stderr
    p = cli("--notebooks", fixture_notebooks, "--out", tmp_path / "r", "-p", "width=3")
    assert p.returncode == 2
    assert "unknown parameter(s) width for 90_fixture; valid: seed, scale, fail, sleep_s, label, stop" in p.stderr
    with pytest.raises(ProfileError, match="valid profiles: smoke, default, full"):
        runner.run(notebooks=fixture_notebooks, out=tmp_path / "r", profile="tiny")
    with pytest.raises(runner.RunnerError, match="no notebook named 'ddk'; valid: 90_fixture"):
        runner.run(notebooks=fixture_notebooks, out=tmp_path / "r", only=["ddk"])
    with pytest.raises(runner.RunnerError, match="--profile"):
        runner.run(notebooks=fixture_notebooks, out=tmp_path / "r", parameters={"profile": "smoke"})
    assert not (tmp_path / "r").exists()


@slow
def test_unchanged_is_skipped_and_changed_is_run(good_run, tmp_path):
    nbs, out = copy_run(good_run, tmp_path)
    logs = []

    def run(**kw):
        return [j.status for j in runner.run(notebooks=nbs, out=out, log=logs.append, lib=good_run.lib,
                                             data=good_run.data, **kw)]

    assert run(parameters={"scale": 7}) == ["skipped"]
    assert run(parameters={"scale": 8}) == ["ok"]  # new parameters
    nb = json.loads((nbs / f"{NAME}.ipynb").read_text())
    nb["cells"][3]["source"] = ["time.sleep(sleep_s)  # edited\n", "if fail:\n", "    raise RuntimeError('x')"]
    (nbs / f"{NAME}.ipynb").write_text(json.dumps(nb))
    assert run(parameters={"scale": 8}) == ["ok"]
    assert run(parameters={"scale": 8}, force=True) == ["ok"]
    assert any("skipped" in line for line in logs)


@slow
def test_smoke_profile_reaches_the_notebook(fixture_notebooks, tmp_path):
    jobs = runner.run(notebooks=fixture_notebooks, out=tmp_path / "r", profile="smoke", log=lambda s: None)
    assert jobs[0].status == "ok"
    res = json.loads((tmp_path / "r" / "results" / f"{NAME}.json").read_text())
    assert res["profile"] == "smoke" and res["parameters"]["scale"] == 1


@slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_run_leaves_reports_as_they_were(good_run, tmp_path, sig):
    nbs, out = copy_run(good_run, tmp_path)
    before = snapshot(out)
    proc = subprocess.Popen([sys.executable, "-m", "repro", "run", "--notebooks", nbs, "--out", out, "--force",
                             "-p", "sleep_s=60", "-p", "scale=7"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    time.sleep(8)  # the kernel is up and sleeping in the fixture's cell
    assert proc.poll() is None, proc.stdout.read()
    family = psutil.Process(proc.pid).children(recursive=True)
    assert any("repro.execute" in " ".join(p.cmdline()) for p in family)
    assert any("ipykernel" in " ".join(p.cmdline()) for p in family)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert snapshot(out) == before
    # nothing is left running: the worker and its kernel die with the runner
    gone, alive = psutil.wait_procs(family, timeout=20)
    assert not alive, [p.cmdline() for p in alive]


@slow
def test_notebook_timeout_fails_cleanly_and_names_the_running_cell(fixture_notebooks, tmp_path):
    # issue 10 item 7, own case: the worker is killed at the notebook's limit; the cell it was in is named
    jobs = runner.run(notebooks=fixture_notebooks, out=tmp_path / "r", parameters={"sleep_s": 60.0}, timeout=6,
                      log=lambda s: None)
    assert jobs[0].status == "failed" and jobs[0].error["ename"] == "NotebookTimeout"
    assert jobs[0].error["cell"]["code_cell"] == 3
    assert jobs[0].error["cell"]["source_line"] == "time.sleep(sleep_s)"
    assert not (tmp_path / "r" / f"{NAME}.html").exists()
    index = (tmp_path / "r" / "index.html").read_text()
    assert "NotebookTimeout" in index and "FAILED in code cell 3" in index


# -- item 1: paths are never papermill templates ----------------------------------------------------
@slow
def test_braces_in_the_notebooks_folder(tmp_path):
    nbs = tmp_path / "my{proj}" / "nbs"
    shutil.copytree(FIXTURE.parent, nbs)
    jobs = runner.run(notebooks=nbs, out=tmp_path / "r", parameters={"scale": 7}, log=lambda s: None)
    assert (jobs[0].status, jobs[0].error) == ("ok", {})  # was: Missing parameter 'proj'
    res = json.loads((tmp_path / "r" / "results" / f"{NAME}.json").read_text())
    assert res["values"]["scale"]["value"] == 7


@slow
def test_a_braced_folder_is_not_filled_in_from_the_parameters(tmp_path):
    shutil.copytree(FIXTURE.parent, tmp_path / "v{label}")
    variant(tmp_path / "vX", NAME, cell3='raise RuntimeError("the notebook in vX ran")')
    tmp = tmp_path / "tmp{seed}"  # own case: the staging folder (papermill's output path) holds braces too
    tmp.mkdir()
    p = cli("--notebooks", tmp_path / "v{label}", "--out", tmp_path / "r", "-p", "label=X",
            env={**os.environ, "TMPDIR": str(tmp)})
    assert p.returncode == 0, p.stdout + p.stderr
    state = json.loads((tmp_path / "r" / "runs.json").read_text())
    assert state[NAME]["status"] == "ok" and state[NAME]["parameters"] == {"label": "X"}
    assert "the notebook in vX ran" not in (tmp_path / "r" / f"{NAME}.html").read_text()


def test_papermill_gets_paths_it_cannot_template(tmp_path):
    """Own case: papermill (prepare_only, no kernel) reads and writes exactly the braced paths we give it."""
    src = tmp_path / "in{seed}" / "a{0}.ipynb"
    src.parent.mkdir()
    shutil.copy(FIXTURE, src)
    dst = tmp_path / "out{x}{}" / "b}{.ipynb"
    dst.parent.mkdir()
    pm.execute_notebook(execute._literal(src), execute._literal(dst), parameters={"seed": 5}, prepare_only=True,
                        kernel_name="python3", progress_bar=False)
    nb = nbformat.read(dst, as_version=4)
    assert "seed = 5" in nb.cells[2].source  # the injected-parameters cell
    assert nb.metadata.papermill["input_path"] == str(src) and nb.metadata.papermill["output_path"] == str(dst)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in{seed}", "out{x}{}"]


# -- item 2: only values that can travel ------------------------------------------------------------
@pytest.mark.parametrize(("value", "kind"), [("b'abc'", "bytes"), ("{1, 2}", "set"), ("1+2j", "complex")])
def test_values_that_cannot_travel_are_refused_before_anything_starts(fixture_notebooks, tmp_path, value, kind):
    p = cli("--notebooks", fixture_notebooks, "--out", tmp_path / "r", "-p", f"label={value}")
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr.startswith(f"error: parameter 'label': {kind} ") and p.stderr.count("\n") == 1
    assert runner.TRAVEL_TYPES in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("value", "where"), [({1: "a"}, "dict key 1 (int)"), ([1, b"x"], "'seed[1]': bytes"),
                                              ((1, {"a": {2}}), "\"seed[1]['a']\": set")])
def test_nested_values_that_cannot_travel(fixture_notebooks, tmp_path, value, where):
    with pytest.raises(runner.RunnerError, match=re.escape(where)):
        runner.plan(notebooks=fixture_notebooks, out=tmp_path / "r", parameters={"seed": value})


@pytest.mark.parametrize("value", [(1, (2.5, "a")), {"k": (None, True)}, "x\"y'\\z\n", float("inf"), -(2**70)])
def test_what_travels_arrives_as_travel_says(value):
    """The documented conversions: what papermill's injected code and the JSON spec give is travel(value)."""
    arrives = runner.travel("x", value)
    code = PythonTranslator.translate(arrives)
    injected = float(code[7:-2]) if code.startswith("float(") else ast.literal_eval(code)
    assert injected == arrives and json.loads(json.dumps(arrives)) == arrives
    assert type(injected) is type(arrives)
    if isinstance(value, tuple):
        assert isinstance(arrives, list) and isinstance(arrives[1], list)
    if isinstance(value, float):
        assert math.isinf(injected)


def test_a_tuple_is_recorded_as_the_list_that_arrives(fixture_notebooks, tmp_path):
    jobs = runner.plan(notebooks=fixture_notebooks, out=tmp_path / "r", parameters={"scale": (1, 2)})
    assert jobs[0].parameters == {"scale": [1, 2]} and jobs[0].status == "queued"


# -- item 3 (own cases; the listed case runs in mixed_run below) ------------------------------------
def test_parameters_cell_is_read_as_ipython_runs_it(tmp_path):
    src = ("%matplotlib inline\n!echo hi\n%env A=1\nprofile = None\nhome = %pwd\nseed: int = 3\n"
           "cores = os.cpu_count()")
    params = runner.read_parameters(variant(tmp_path, "91_magic", params=src))
    assert params == {"profile": None, "home": "get_ipython().run_line_magic('pwd', '')", "seed": 3,
                      "cores": "os.cpu_count()"}
    assert isinstance(params["cores"], runner.Expression) and not isinstance(params["seed"], runner.Expression)


@pytest.mark.parametrize(("src", "expect"), [
    ("%%capture\nprofile = None\nseed = 0\n", {"profile": None, "seed": 0}),  # a cell magic around the cell
    ("%%time\n%matplotlib inline\nprofile = None\n", {"profile": None}),
    ("profile, seed = None, 0\n", {"profile": None, "seed": 0}),  # tuple unpacking
    ("profile = None\na, b = divmod(7, 2)\n", {"profile": None, "a": "(divmod(7, 2))[0]", "b": "(divmod(7, 2))[1]"}),
    ("%%bash\necho hi\n", {}),  # a cell magic whose body is not Python assigns nothing
])
def test_cell_magics_and_tuple_assignments_in_the_parameters_cell(tmp_path, src, expect):
    assert runner.read_parameters(variant(tmp_path, "91_cell", params=src)) == expect


def test_a_missing_notebooks_folder_or_bad_timeouts_are_refused_before_anything(fixture_notebooks, tmp_path):
    p = cli("--notebooks", tmp_path / "nowhere", "--out", tmp_path / "r")
    assert p.returncode == 2 and "notebooks folder" in p.stderr and "does not exist" in p.stderr, p.stderr
    for flag, value in (("--timeout", "0"), ("--timeout", "-1"), ("--cell-timeout", "-5"), ("--timeout", "nan")):
        with pytest.raises(runner.RunnerError, match=flag.lstrip("-").replace("-", "_") + " must be a positive"):
            runner.run(notebooks=fixture_notebooks, out=tmp_path / "r", **{flag.lstrip("-").replace("-", "_"):
                                                                            float(value)})
    assert not (tmp_path / "r").exists()


# -- items 3 and 8: one run of a folder with good, magic and unrunnable notebooks --------------------
@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("mixed")
    nbs, out = base / "notebooks", base / "reports"
    fixture_params = "".join(json.loads(FIXTURE.read_text())["cells"][1]["source"])
    variant(nbs, "91_magic", params="%matplotlib inline\n" + fixture_params)
    variant(nbs, "92_untagged", tagged=False)
    variant(nbs, "93_noprofile", params="seed = 0\nscale = None")
    variant(nbs, "94_syntax", params="profile = None\nseed = = 0")
    (nbs / "95_broken.ipynb").write_text('{"cells": [')
    p = cli("--notebooks", nbs, "--out", out, "-p", "seed=3")
    return SimpleNamespace(proc=p, out=out, state=json.loads((out / "runs.json").read_text()),
                           index=(out / "index.html").read_text())


@slow
def test_magic_in_the_parameters_cell_runs(mixed_run):
    assert mixed_run.state["91_magic"]["status"] == "ok", mixed_run.proc.stdout
    res = json.loads((mixed_run.out / "results" / "91_magic.json").read_text())
    assert res["seed"] == 3
    assert "+ 91_magic: ok" in mixed_run.proc.stdout and "error" not in mixed_run.state["91_magic"]


@slow
def test_a_notebook_without_parameters_cell_is_refused_and_the_rest_run(mixed_run):
    assert mixed_run.proc.returncode == 1
    e = mixed_run.state["92_untagged"]["error"]
    assert mixed_run.state["92_untagged"]["status"] == "failed"
    assert (e["ename"], e["stage"]) == ("MissingParametersCell", "parameters")
    assert "92_untagged has no code cell tagged 'parameters'" in e["evalue"]
    assert "92_untagged failed: MissingParametersCell" in mixed_run.proc.stdout
    section = re.search(r'<section id="92_untagged" class="failed">.*?</section>', mixed_run.index, re.S)
    assert section and 'class="error">FAILED: MissingParametersCell' in section.group()
    assert not (mixed_run.out / "92_untagged.html").exists()


@slow
def test_other_unrunnable_notebooks_are_refused_alone(mixed_run):
    state = mixed_run.state
    assert state["93_noprofile"]["error"]["ename"] == "MissingProfileParameter"
    assert "93_noprofile's parameters cell has no 'profile' parameter; its parameters: seed, scale" \
        in state["93_noprofile"]["error"]["evalue"]
    e = state["94_syntax"]["error"]
    assert e["ename"] == "SyntaxError" and e["cell"]["code_cell"] == 1
    assert "the parameters cell (code cell 1) of 94_syntax does not parse: line 2: invalid syntax" in e["evalue"]
    assert state["95_broken"]["error"]["ename"] == "UnreadableNotebook"
    assert [n for n in sorted(state) if state[n]["status"] == "failed"] == [
        "92_untagged", "93_noprofile", "94_syntax", "95_broken"]
    assert mixed_run.index.count('class="failed"') == 4
    assert "FAILED in code cell 1: SyntaxError" in mixed_run.index


# -- items 4 and 7: runs that stop early or die --------------------------------------------------------
@slow
def test_sys_exit_0_is_a_failed_run_and_publishes_nothing(good_run, tmp_path):
    nbs, out = copy_run(good_run, tmp_path)
    before = {k: v for k, v in snapshot(out).items() if k not in ("index.html", "runs.json")}
    p = cli("--notebooks", nbs, "--out", out, "--force", "-p", "scale=7", "-p", "stop=exit")
    assert p.returncode == 1, p.stdout + p.stderr
    e = json.loads((out / "runs.json").read_text())[NAME]["error"]
    assert e["ename"] == "StoppedEarly" and e["cell"]["code_cell"] == 3
    assert e["evalue"] == ("the notebook stopped at code cell 3 (SystemExit: 0) without an error; "
                           "2 code cell(s) after it did not run")
    assert "90_fixture failed in code cell 3" in p.stdout and "StoppedEarly" in p.stdout
    after = snapshot(out)
    assert {k: after[k] for k in before} == before  # the last good page and its results, untouched


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """Variants that save nothing, kill their kernel, or outlast the per-cell limit: one run, one by one."""
    base = tmp_path_factory.mktemp("stopped")
    nbs, out = base / "notebooks", base / "reports"
    fixture_params = "".join(json.loads(FIXTURE.read_text())["cells"][1]["source"])
    variant(nbs, "96_nosave", params=fixture_params.replace('stop = ""', 'stop = "nosave"'))
    variant(nbs, "97_die", params=fixture_params.replace('stop = ""', 'stop = "die"'))
    variant(nbs, "98_slow", params=fixture_params.replace("sleep_s = 0.0", "sleep_s = 120.0"))
    jobs = runner.run(notebooks=nbs, out=out, cell_timeout=12, log=lambda s: None)
    return SimpleNamespace(jobs={j.name: j for j in jobs}, out=out)


@slow
def test_a_run_that_saves_no_results_fails(stopped_run):
    job = stopped_run.jobs["96_nosave"]
    assert job.status == "failed" and job.error["ename"] == "NoResults"
    assert "every cell ran, but the notebook recorded no results: no results/96_nosave.json" in job.error["evalue"]
    assert not (stopped_run.out / "96_nosave.html").exists()
    assert not (stopped_run.out / "results" / "96_nosave.json").exists()


@slow
@pytest.mark.parametrize(("name", "ename"), [("97_die", "DeadKernelError"), ("98_slow", "CellTimeoutError")])
def test_kernel_death_and_cell_timeout_name_the_cell(stopped_run, name, ename):
    job = stopped_run.jobs[name]
    assert job.status == "failed" and job.error["ename"] == ename
    assert job.error["cell"] == {"code_cell": 3, "injected": False, "status": "running",
                                 "source_line": "time.sleep(sleep_s)"}
    state = json.loads((stopped_run.out / "runs.json").read_text())
    assert state[name]["error"]["cell"]["code_cell"] == 3
    assert re.search(rf'<section id="{name}" class="failed">\s*<h2>[^<]*</h2>\s*<p class="error">FAILED in code '
                     rf"cell 3: {ename}", (stopped_run.out / "index.html").read_text())


def test_failed_cell_reads_papermill_status(tmp_path):
    """Own case for item 7: the cell papermill left running (killed mid-cell) or last started (stopped)."""
    nb = nbformat.read(FIXTURE, as_version=4)
    status = ["completed", "completed", "running", "pending", "pending"]
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell, s in zip(code, status, strict=True):
        cell.metadata["papermill"] = {"status": s, "start_time": None if s == "pending" else "2024-01-01T00:00:00"}
    nbformat.write(nb, tmp_path / "killed.ipynb")
    assert execute.failed_cell(tmp_path / "killed.ipynb")["code_cell"] == 3
    code[2].metadata["papermill"]["status"] = "completed"  # nbclient's timeout: papermill marks it completed
    nbformat.write(nb, tmp_path / "timeout.ipynb")
    assert execute.failed_cell(tmp_path / "timeout.ipynb") == {}
    assert execute.failed_cell(tmp_path / "timeout.ipynb", stopped=True)["source_line"] == "time.sleep(sleep_s)"
    (tmp_path / "cut.ipynb").write_text('{"cells": [{"cell_')  # killed while papermill was writing
    assert execute.failed_cell(tmp_path / "cut.ipynb", stopped=True) == {}


# -- item 5: everything a notebook reads is part of its key -----------------------------------------
@pytest.fixture
def inputs(tmp_path):
    """A notebook, a lib/ and a data/ holding a copy of data/dcpt/grid.csv, with a good run recorded."""
    lib, data, out = tmp_path / "lib", tmp_path / "data", tmp_path / "reports"
    (lib / "templates").mkdir(parents=True)
    (lib / "mod.py").write_text("x = 1\n")
    (data / "dcpt").mkdir(parents=True)
    shutil.copy(paths.DATA / "dcpt" / "grid.csv", data / "dcpt" / "grid.csv")
    (data / "manifest.json").write_text("{}")
    nbs = tmp_path / "notebooks"
    shutil.copytree(FIXTURE.parent, nbs)
    (job,) = runner.plan(notebooks=nbs, out=out, lib=lib, data=data)
    out.mkdir()
    (out / f"{NAME}.html").write_text("page")
    (out / "runs.json").write_text(json.dumps({NAME: {"status": "ok", "key": job.key}}))

    def status():
        return runner.plan(notebooks=nbs, out=out, lib=lib, data=data)[0].status

    assert status() == "skipped"
    return SimpleNamespace(lib=lib, data=data, status=status)


def test_a_changed_table_reruns_the_notebook(inputs):
    grid = inputs.data / "dcpt" / "grid.csv"
    lines = grid.read_text().splitlines(keepends=True)
    assert len(lines) > 40
    grid.write_text("".join(lines[:-20]))  # 20 rows deleted, as `dcpt grid` rewriting the table
    assert inputs.status() == "queued"


@pytest.mark.parametrize(("change", "expect"), [
    (lambda i: (i.data / "tokenizer").mkdir() or (i.data / "tokenizer" / "tok.json").write_text("{}"), "queued"),
    (lambda i: (i.data / "dcpt" / "grid.csv").rename(i.data / "dcpt" / "grid-old.csv"), "queued"),
    (lambda i: (i.lib / "templates" / "page.css").write_text("a {}"), "queued"),
    (lambda i: (i.data / "build").mkdir() or (i.data / "build" / "corpus.bin").write_bytes(b"x"), "skipped"),
    (lambda i: (i.data / "dcpt" / "grid.lock").write_text("pid 1"), "skipped"),
    (lambda i: (i.data / "dcpt" / ".grid.csv.abc.tmp").write_text("half"), "skipped"),
    (lambda i: (i.lib / "__pycache__").mkdir() or (i.lib / "__pycache__" / "mod.pyc").write_bytes(b"x"), "skipped"),
], ids=["new-data-file", "renamed-table", "lib-template", "data-build", "lock-file", "atomic-temp", "pycache"])
def test_what_is_and_is_not_an_input(inputs, change, expect):
    change(inputs)
    assert inputs.status() == expect


# -- item 6: runners sharing one reports folder -------------------------------------------------------
@slow
def test_two_runners_on_one_reports_folder_keep_both_entries(tmp_path):
    nbs, out = tmp_path / "notebooks", tmp_path / "reports"
    shutil.copytree(FIXTURE.parent, nbs)
    variant(nbs, "91_failing", params="profile = None\nseed = 0\nscale = None\nfail = True\nsleep_s = 0.0\n"
                                      "label = ''\nstop = ''")
    first = subprocess.Popen([sys.executable, "-m", "repro", "run", "--notebooks", nbs, "--out", out, "--only",
                              NAME, "-p", "sleep_s=15"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while not any("ipykernel" in " ".join(c.cmdline()) for c in psutil.Process(first.pid).children(recursive=True)):
        assert first.poll() is None and time.time() < deadline, first.stdout.read()
        time.sleep(0.2)
    second = cli("--notebooks", nbs, "--out", out, "--only", "91_failing")  # starts and ends while first runs
    assert second.returncode == 1 and "RuntimeError: failing on request" in second.stdout, second.stdout
    assert first.poll() is None, "the first runner ended too early for this test"
    assert first.wait(timeout=120) == 0, first.stdout.read()
    state = json.loads((out / "runs.json").read_text())
    assert state[NAME]["status"] == "ok"
    assert state["91_failing"]["status"] == "failed" and state["91_failing"]["error"]["ename"] == "RuntimeError"
    index = (out / "index.html").read_text()
    assert 'id="91_failing" class="failed"' in index and 'id="90_fixture" class="ok"' in index


def test_state_updates_wait_for_the_lock_and_merge(tmp_path):
    """Own case: a writer blocks while another holds the lock, then merges into what that one wrote."""
    out = tmp_path / "reports"
    runner.update_state(out, {"a": lambda prev: {"status": "ok", "n": 1}})
    done = threading.Event()

    def other():
        with runner.state_lock(out):
            runner.update_state(out, {"b": lambda prev: {"status": "failed", "prev": prev}})
        done.set()

    with runner.state_lock(out):
        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.5)
        assert not done.is_set()  # waiting for the lock
        runner.update_state(out, {"a": lambda prev: {**prev, "n": prev["n"] + 1}})
    t.join(timeout=10)
    assert done.is_set()
    assert runner.load_state(out) == {"a": {"status": "ok", "n": 2}, "b": {"status": "failed", "prev": {}}}
    assert (out / runner.LOCK_FILE).exists()


# -- item 9: values checked against the notebook's defaults ------------------------------------------
def test_a_value_of_the_wrong_type_is_one_line_naming_the_parameter(fixture_notebooks, tmp_path):
    p = cli("--notebooks", fixture_notebooks, "--out", tmp_path / "r", "-p", "seed=abc")
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr == "error: parameter 'seed' of 90_fixture must be int like its default 0, got str 'abc'\n"
    assert p.stdout == "" and not (tmp_path / "r").exists()


@pytest.mark.parametrize(("name", "value", "message"), [
    ("seed", True, "parameter 'seed' of 90_fixture must be int like its default 0, got bool True"),
    ("seed", 1.5, "must be int like its default 0, got float 1.5"),
    ("fail", 1, "parameter 'fail' of 90_fixture must be bool like its default False, got int 1"),
    ("sleep_s", "2", "parameter 'sleep_s' of 90_fixture must be float (or int) like its default 0.0, got str '2'"),
    ("label", 3, "parameter 'label' of 90_fixture must be str like its default '', got int 3; quote it"),
    ("stop", None, "parameter 'stop' of 90_fixture must be str like its default '', got None"),
])
def test_values_are_checked_against_the_defaults(fixture_notebooks, tmp_path, name, value, message):
    with pytest.raises(runner.RunnerError, match=re.escape(message)):
        runner.plan(notebooks=fixture_notebooks, out=tmp_path / "r", parameters={name: value})


def test_values_of_the_right_type_pass(fixture_notebooks, tmp_path):
    params = {"seed": 2, "fail": False, "sleep_s": 2, "label": "x", "scale": [1, {"a": None}]}
    (job,) = runner.plan(notebooks=fixture_notebooks, out=tmp_path / "r", parameters=params)
    assert job.status == "queued" and job.parameters == {**params, "sleep_s": 2.0}
    assert type(job.parameters["sleep_s"]) is float  # an int for a float default arrives as a float
