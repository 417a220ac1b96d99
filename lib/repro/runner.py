"""Execute the notebooks with papermill and publish them as reports (``python -m repro run``).

Before any notebook starts, :func:`plan` checks the request: the overrides must be values that can
travel to a notebook (:func:`travel`) and must match the type of each notebook's default
(:func:`check_overrides`); a bad request is a :class:`RunnerError` naming the parameter. A notebook that
cannot be run at all (no cell tagged ``parameters``, a parameters cell that does not parse, no
``profile`` parameter) is refused on its own: it fails, the others run.

Each notebook runs in its own child process (:mod:`repro.execute`) into a staging folder; only a run
that completed every cell, wrote its results and rendered replaces ``reports/<name>.html`` and
``reports/results/<name>.json``. The runner finishes every selected notebook, recording each in
``reports/runs.json`` under a lock (several runners may share one reports folder), rewrites the index,
and fails if any notebook failed. A notebook whose inputs (:func:`input_key`) hash as at its last good
run is skipped unless ``force``.
"""

from __future__ import annotations

import ast
import datetime as _dt
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import paths
from .profile import PROFILES, check
from .report import write_index
from .runstate import LOCK_FILE, STATE_FILE, load_state, state_lock, update_state

TRAVEL_TYPES = "str, int, float, bool, None, and lists, tuples (arrive as lists) and dicts with str keys of these"


class RunnerError(ValueError):
    """Bad input to the runner: an unknown notebook, profile or parameter, or a value of the wrong type."""


class NotebookRefused(RunnerError):
    """A notebook the runner cannot run (no parameters cell, one that does not parse, no ``profile``).

    ``ename`` names the defect for the report; ``cell`` locates it (empty when there is no such cell).
    """

    def __init__(self, ename: str, message: str, cell: dict[str, Any] | None = None):
        super().__init__(message)
        self.ename = ename
        self.cell = cell or {}


class Expression(str):
    """A parameter default that is not a literal (``x = os.cpu_count()``): its source text."""


@dataclass
class Job:
    """One notebook of a run: its ``name`` and ``path``, the ``parameters`` it gets, its input ``key``
    (:func:`input_key`; ``None`` when not computed), and what happened: ``status``, ``seconds`` of wall time,
    ``error`` (the failure and its cell)."""

    name: str
    path: Path
    parameters: dict[str, Any]
    key: str | None
    status: str = "queued"  # queued | skipped | running | ok | failed | interrupted
    seconds: float = 0.0
    error: dict[str, Any] = field(default_factory=dict)


# -- discovery and parameters ---------------------------------------------------------------------
def discover(folder: Path) -> list[Path]:
    """The notebooks of ``folder`` (``*.ipynb``, hidden files left out), sorted by name."""
    return sorted(p for p in Path(folder).glob("*.ipynb") if not p.name.startswith("."))


def select(notebooks: Sequence[Path], only: Sequence[str] | None) -> list[Path]:
    """Pick notebooks by full stem (``03_dcpt_law``), number (``03``) or name after it (``dcpt_law``)."""
    if not only:
        return list(notebooks)
    chosen = []
    for want in only:
        hits = [p for p in notebooks if want in (p.stem, p.stem.split("_", 1)[0], p.stem.split("_", 1)[-1])]
        if not hits:
            valid = ", ".join(p.stem for p in notebooks) or "none"
            raise RunnerError(f"no notebook named {want!r}; valid: {valid}")
        chosen += [p for p in hits if p not in chosen]
    return chosen


def _first_line(text: str) -> str:
    return next((ln for ln in text.splitlines() if ln.strip()), "")[:200]


def read_parameters(path: Path) -> dict[str, Any]:
    """The names and default values assigned in the notebook's cell tagged ``parameters``.

    The cell is read as IPython would run it (magics such as ``%matplotlib inline`` and ``!cmd`` lines
    become calls), then parsed; a default that is not a literal is returned as an :class:`Expression`.
    Raises :class:`NotebookRefused` when the notebook cannot be read, has no such cell, or the cell
    does not parse.
    """
    from IPython.core.inputtransformer2 import TransformerManager

    path = Path(path)
    try:
        nb = json.loads(path.read_text())
        cells = nb["cells"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise NotebookRefused("UnreadableNotebook", f"{path.name} is not a readable notebook: {e}") from None
    code_index = 0
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        code_index += 1
        if "parameters" not in cell.get("metadata", {}).get("tags", []):
            continue
        src = "".join(cell["source"])
        where = {"code_cell": code_index, "source_line": _first_line(src)}
        try:
            tree = ast.parse(TransformerManager().transform_cell(src))
        except SyntaxError as e:
            raise NotebookRefused("SyntaxError", f"the parameters cell (code cell {code_index}) of {path.stem} "
                                  f"does not parse: line {e.lineno}: {e.msg}", where) from None
        params = _assignments(tree, TransformerManager())
        return params
    raise NotebookRefused("MissingParametersCell", f"{path.stem} has no code cell tagged 'parameters' "
                          "(papermill injects the parameters after that cell)")


def _default(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return Expression(ast.unparse(node))


def _cell_magic_body(node: ast.stmt) -> str | None:
    """The body of ``get_ipython().run_cell_magic(name, line, body)`` (how IPython runs ``%%magic`` cells)."""
    call = node.value if isinstance(node, ast.Expr) else None
    if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "run_cell_magic" \
            and len(call.args) == 3 and isinstance(call.args[2], ast.Constant) and isinstance(call.args[2].value, str):
        return call.args[2].value
    return None


def _assignments(tree: ast.Module, transformer: Any) -> dict[str, Any]:
    """Names assigned at the top level of a (transformed) parameters cell, with their defaults: plain and
    annotated assignments, tuple unpacking of a literal tuple (``profile, seed = None, 0``) and the body of
    a cell magic (``%%capture`` then assignments), read the same way."""
    params: dict[str, Any] = {}
    for node in tree.body:
        body = _cell_magic_body(node)
        if body is not None:
            try:
                params.update(_assignments(ast.parse(transformer.transform_cell(body)), transformer))
            except SyntaxError:
                pass  # a cell magic whose body is not Python (%%bash, %%html): it assigns nothing we can see
            continue
        if not isinstance(node, ast.Assign | ast.AnnAssign) or node.value is None:
            continue
        for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
            if isinstance(t, ast.Name):
                params[t.id] = _default(node.value)
            elif isinstance(t, ast.Tuple | ast.List) and all(isinstance(e, ast.Name) for e in t.elts):
                values = node.value.elts if isinstance(node.value, ast.Tuple | ast.List) \
                    and len(node.value.elts) == len(t.elts) else None
                for i, e in enumerate(t.elts):
                    params[e.id] = _default(values[i]) if values else Expression(f"({ast.unparse(node.value)})[{i}]")
    return params


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["steps=100", "name=abc"]`` -> ``{"steps": 100, "name": "abc"}`` (Python literals, else strings)."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise RunnerError(f"parameter {item!r} is not of the form key=value")
        try:
            out[key.strip()] = ast.literal_eval(raw)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            out[key.strip()] = raw
    return out


def travel(name: str, value: Any) -> Any:
    """``value`` as it arrives in the notebook, or a :class:`RunnerError` naming ``name`` if it cannot travel.

    Parameters travel as JSON to the worker and as Python source (papermill's injected cell) to the
    kernel: str, int, float (``nan`` and ``inf`` included), bool, None, lists and dicts with str keys of
    these arrive as they are; a tuple arrives as a list (converted here, so the run is recorded as it
    ran). Anything else (bytes, sets, complex numbers, dicts with other keys) is refused.
    """
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [travel(f"{name}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise RunnerError(f"parameter {name!r}: dict key {bad[0]!r} ({type(bad[0]).__name__}) cannot be "
                              f"passed to a notebook (it would arrive as a str); allowed: {TRAVEL_TYPES}")
        return {k: travel(f"{name}[{k!r}]", v) for k, v in value.items()}
    raise RunnerError(f"parameter {name!r}: {type(value).__name__} {value!r} cannot be passed to a notebook; "
                      f"allowed: {TRAVEL_TYPES}")


def _conform(nb: str, name: str, value: Any, default: Any) -> Any:
    """``value`` checked against the type of the notebook's ``default`` (int accepted, as float, for a float)."""
    if default is None or isinstance(default, Expression):
        return value  # any value that travels
    if isinstance(default, tuple):
        default = list(default)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is type(default):
        return value
    want = {"float": "float (or int)"}.get(type(default).__name__, type(default).__name__)
    hint = "; quote it to pass a str" if isinstance(default, str) else ""
    got = "None" if value is None else f"{type(value).__name__} {value!r}"
    raise RunnerError(f"parameter {name!r} of {nb} must be {want} like its default {default!r}, got {got}{hint}")


def check_overrides(path: Path, overrides: dict[str, Any],
                    defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The overrides as the notebook at ``path`` gets them; raises :class:`RunnerError` on a bad one.

    Every override must name one of the notebook's parameters, be able to travel (:func:`travel`), and
    match the type of its default: an int default requires an int, a float default accepts an int
    (passed as a float), a str default a str, a bool default a bool (strictly: not 0 or 1), a list
    default a list, a dict default a dict; a ``None`` or non-literal default accepts any value that
    travels. Raises :class:`NotebookRefused` if the notebook itself cannot be run.
    """
    valid = read_parameters(path) if defaults is None else defaults
    if "profile" not in valid:
        raise NotebookRefused("MissingProfileParameter", f"{path.stem}'s parameters cell has no 'profile' "
                              f"parameter; its parameters: {', '.join(valid) or 'none'}")
    if "profile" in overrides:
        raise RunnerError("set the profile with --profile, not -p profile=...")
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise RunnerError(f"unknown parameter(s) {', '.join(unknown)} for {path.stem}; "
                          f"valid: {', '.join(k for k in valid if k != 'profile')}")
    return {k: _conform(path.stem, k, travel(k, v), valid[k]) for k, v in overrides.items()}


def _data_files(data: Path) -> Iterator[Path]:
    """Files under ``data`` that notebooks may read: all but ``build/``, lock files and hidden files."""
    for f in sorted(Path(data).rglob("*")):
        rel = f.relative_to(data)
        if (not f.is_file() or rel.parts[0] == "build" or f.suffix == ".lock"
                or any(p.startswith(".") or p == "__pycache__" for p in rel.parts)):
            continue
        yield f


def input_key(path: Path, parameters: dict[str, Any], lib: Path = paths.LIB, data: Path = paths.DATA) -> str:
    """Hash of everything a run reads: the notebook's cells, ``lib/``, ``data/``, its parameters and profile.

    ``lib``: every file (sources, templates, schemas, assets) but ``__pycache__``. ``data``: every file but
    the git-ignored ``data/build/`` (the corpora built there are covered by ``data/manifest.json``, their
    sha256), ``*.lock`` files and hidden files (temporary files of atomic writes). Each file enters by its
    path relative to its folder and its bytes, so a changed, added, removed or renamed table changes the key.
    """
    h = hashlib.sha256()
    nb = json.loads(Path(path).read_text())
    h.update(json.dumps([[c["cell_type"], "".join(c["source"])] for c in nb["cells"]]).encode())
    lib_files = (f for f in sorted(Path(lib).rglob("*")) if f.is_file() and "__pycache__" not in f.parts)
    for tag, root, files in (("lib", Path(lib), lib_files), ("data", Path(data), _data_files(data))):
        for f in files:
            blob = f.read_bytes()
            h.update(f"{tag}/{f.relative_to(root)}\0{len(blob)}\0".encode())
            h.update(blob)
    h.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _entry(job: Job, profile: str, prev: dict[str, Any]) -> dict[str, Any]:
    """The state entry for a finished (or refused) job, keeping the date and profile of the last good run."""
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    entry = {"status": job.status, "key": job.key, "profile": profile, "parameters": job.parameters,
             "seconds": round(job.seconds, 1), "finished_at": now}
    if job.status == "ok":
        entry["last_ok"] = now
    else:
        entry["error"] = job.error
        entry["key"] = None
        entry["last_ok"] = prev.get("last_ok")
        last_profile = prev.get("profile") if prev.get("status") == "ok" else prev.get("last_ok_profile")
        entry["last_ok_profile"] = last_profile if prev.get("last_ok") else None
    return entry


def _fmt_s(s: float) -> str:
    return f"{int(s // 60)}m{int(s % 60):02d}s" if s >= 60 else f"{s:.1f}s"


# -- running ----------------------------------------------------------------------------------------
def _run_one(job: Job, profile: str, stage_root: Path, cell_timeout: float, timeout: float,
             procs: dict[str, subprocess.Popen], stop: threading.Event, log_dir: Path) -> None:
    from .execute import failed_cell

    if stop.is_set():
        job.status = "interrupted"
        return
    stage = stage_root / job.name
    (stage / "results").mkdir(parents=True)
    spec = {"name": job.name, "input": str(job.path), "cwd": str(job.path.parent), "stage": str(stage),
            "parameters": {**job.parameters, "profile": profile}, "cell_timeout": cell_timeout}
    (stage / "spec.json").write_text(json.dumps(spec))
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{job.name}.log"
    job.status = "running"
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "repro.execute", str(stage / "spec.json")], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ})
        procs[job.name] = proc
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            # papermill saved the notebook when the cell started, marked "running": that cell ran too long
            job.error = {"stage": "execute", "ename": "NotebookTimeout",
                         "evalue": f"notebook ran past its {timeout:g} s limit",
                         "cell": failed_cell(stage / f"{job.name}.ipynb", stopped=True)}
        finally:
            procs.pop(job.name, None)
    job.seconds = time.perf_counter() - t0
    job.error.setdefault("log", str(log_path))
    if stop.is_set():
        job.status = "interrupted"
        return
    status_file = stage / "status.json"
    status = json.loads(status_file.read_text()) if status_file.exists() else {"ok": False}
    if status["ok"] and proc.returncode == 0:
        job.status = "ok"
        job.error = {}
    else:
        job.status = "failed"
        if "ename" in status:
            job.error.update({k: status[k] for k in ("stage", "ename", "evalue", "cell")})
        elif "ename" not in job.error:
            job.error.update(stage="execute", ename="WorkerDied", evalue=f"exit code {proc.returncode}",
                             cell=failed_cell(stage / f"{job.name}.ipynb", stopped=True))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _publish(job: Job, stage_root: Path, out: Path) -> bool:
    """Move a finished run's results and HTML into ``out``, each file atomically; both must exist."""
    stage = stage_root / job.name
    html = stage / f"{job.name}.html"
    results = stage / "results" / f"{job.name}.json"
    if not (html.exists() and results.exists()):
        return False
    paths.atomic_write_bytes(out / "results" / results.name, results.read_bytes())
    paths.atomic_write_bytes(out / html.name, html.read_bytes())
    return True


def _describe_error(job: Job) -> str:
    e = job.error
    cell = e.get("cell") or {}
    where = f" in code cell {cell['code_cell']} ({cell.get('source_line', '')!r})" if cell.get("code_cell") else ""
    evalue = e.get("evalue", "").splitlines()[0] if e.get("evalue") else ""
    log = f"  [log: {e['log']}]" if e.get("log") else ""
    return f"{job.name} failed{where}: {e.get('ename')}: {evalue}{log}"


def plan(*, only: Sequence[str] | None = None, profile: str = "default", force: bool = False,
         parameters: dict[str, Any] | None = None, out: Path = paths.REPORTS, notebooks: Path = paths.NOTEBOOKS,
         lib: Path = paths.LIB, data: Path = paths.DATA) -> list[Job]:
    """Check a request and decide each selected notebook's fate before anything runs.

    Returns one :class:`Job` per selected notebook: ``queued``, ``skipped`` (inputs unchanged since its
    last good run, and not ``force``) or ``failed`` (refused: the notebook cannot be run; its error says
    why). Raises :class:`RunnerError` (or :class:`repro.profile.ProfileError`) for a bad request: an
    unknown notebook or profile, a parameter unknown to a notebook, or a value that cannot travel or
    does not match the type of a notebook's default.
    """
    check(profile)
    parameters = dict(parameters or {})
    if "profile" in parameters:
        raise RunnerError("set the profile with --profile, not -p profile=...")
    traveled = {k: travel(k, v) for k, v in parameters.items()}
    if not Path(notebooks).is_dir():
        raise RunnerError(f"notebooks folder {str(notebooks)!r} does not exist or is not a folder")
    selected = select(discover(notebooks), only)
    state = load_state(Path(out))
    jobs = []
    for p in selected:
        try:
            params = check_overrides(p, parameters)
        except NotebookRefused as e:
            jobs.append(Job(p.stem, p, traveled, None, status="failed",
                            error={"stage": "parameters", "ename": e.ename, "evalue": str(e), "cell": e.cell}))
            continue
        key = input_key(p, {**params, "profile": profile}, lib, data)
        job = Job(p.stem, p, params, key)
        prev = state.get(p.stem, {})
        fresh = prev.get("status") == "ok" and prev.get("key") == key and (Path(out) / f"{p.stem}.html").exists()
        if fresh and not force:
            job.status = "skipped"
        jobs.append(job)
    return jobs


def run(*, only: Sequence[str] | None = None, profile: str = "default", jobs: int = 1, force: bool = False,
        parameters: dict[str, Any] | None = None, out: Path = paths.REPORTS,
        notebooks: Path = paths.NOTEBOOKS, cell_timeout: float = 1800, timeout: float = 3600,
        heartbeat: float = 30, log: Callable[[str], None] = print, lib: Path = paths.LIB,
        data: Path = paths.DATA) -> list[Job]:
    """Run the selected notebooks; returns the jobs. Raises :class:`RunnerError` on bad input (see :func:`plan`)."""
    if jobs < 1:
        raise RunnerError(f"jobs must be at least 1, got {jobs}")
    for name, limit in (("timeout", timeout), ("cell_timeout", cell_timeout)):
        if not limit > 0:  # also refuses NaN
            raise RunnerError(f"{name} must be a positive number of seconds, got {limit!r}")
    out = Path(out)
    all_jobs = plan(only=only, profile=profile, force=force, parameters=parameters, out=out,
                    notebooks=notebooks, lib=lib, data=data)
    if not all_jobs:
        log(f"no notebooks in {notebooks}")
    refused = [j for j in all_jobs if j.status == "failed"]
    todo = [j for j in all_jobs if j.status == "queued"]
    for job in all_jobs:
        if job.status == "skipped":
            log(f"= {job.name}: inputs unchanged since its last good run, skipped (--force re-runs)")
    if refused:
        with state_lock(out):
            update_state(out, {j.name: (lambda prev, j=j: _entry(j, profile, prev)) for j in refused})
        for job in refused:
            log(f"! {_describe_error(job)}")

    stop = threading.Event()
    procs: dict[str, subprocess.Popen] = {}
    stage_root = Path(tempfile.mkdtemp(prefix="repro-run-"))
    old_term = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def finish(job: Job) -> None:
        """Publish a finished job (if good) and record it, both under the state lock."""
        with state_lock(out):
            if job.status == "ok" and not _publish(job, stage_root, out):
                job.status = "failed"
                job.error.update(stage="render", ename="MissingReport", evalue="no HTML or results to publish",
                                 cell={})
            update_state(out, {job.name: lambda prev: _entry(job, profile, prev)})
        log(f"+ {job.name}: ok in {_fmt_s(job.seconds)}" if job.status == "ok" else f"! {_describe_error(job)}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_term)
    t_start = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = []
        for job in todo:
            log(f"> {job.name}: queued ({profile} profile)")
            futures.append(pool.submit(_run_one, job, profile, stage_root, cell_timeout, timeout, procs, stop,
                                       paths.BUILD / "logs"))
        reported: set[str] = set()
        last_beat = time.perf_counter()
        while True:
            finished = all(f.done() for f in futures)
            for job in todo:
                if job.status in ("ok", "failed") and job.name not in reported:
                    reported.add(job.name)
                    finish(job)
            if finished:
                break
            time.sleep(0.2)
            if time.perf_counter() - last_beat >= heartbeat:
                last_beat = time.perf_counter()
                running = [j.name for j in todo if j.status == "running"]
                if running:
                    log(f"  running: {', '.join(running)} ({_fmt_s(time.perf_counter() - t_start)} since start)")
        for f in futures:
            f.result()
    except KeyboardInterrupt:
        stop.set()
        for proc in list(procs.values()):
            _stop(proc)
        log("interrupted: notebooks that had not finished left reports/ as it was")
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, old_term)
        shutil.rmtree(stage_root, ignore_errors=True)

    with state_lock(out):
        write_index(out)
    failed = [j for j in all_jobs if j.status == "failed"]
    ok = [j for j in todo if j.status == "ok"]
    skipped = [j for j in all_jobs if j.status == "skipped"]
    log(f"done in {_fmt_s(time.perf_counter() - t_start)}: {len(ok)} ok, {len(failed)} failed, "
        f"{len(skipped)} skipped; index: {out / 'index.html'}")
    for j in failed:
        log(f"! {_describe_error(j)}")
    return all_jobs


__all__ = ["LOCK_FILE", "PROFILES", "STATE_FILE", "Job", "NotebookRefused", "RunnerError", "check_overrides", "discover", "input_key",
           "load_state", "parse_overrides", "plan", "read_parameters", "run", "select", "state_lock", "travel",
           "update_state"]
