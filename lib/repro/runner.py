"""Execute the notebooks with papermill and publish them as reports (``python -m repro run``).

Each notebook runs in its own child process (:mod:`repro.execute`) into a staging folder; only a run
that finished and rendered replaces ``reports/<name>.html`` and ``reports/results/<name>.json``. The
runner finishes every selected notebook, then rewrites ``reports/runs.json`` and the index, and fails
if any notebook failed. A notebook whose inputs (its cells, ``lib/``, the data manifest, its
parameters and profile) hash as at its last good run is skipped unless ``force``.
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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import paths
from .profile import PROFILES, check

STATE_FILE = "runs.json"


class RunnerError(ValueError):
    """Bad input to the runner: an unknown notebook, profile or parameter."""


@dataclass
class Job:
    name: str
    path: Path
    parameters: dict[str, Any]
    key: str
    status: str = "queued"  # queued | skipped | running | ok | failed | interrupted
    seconds: float = 0.0
    error: dict[str, Any] = field(default_factory=dict)


# -- discovery and parameters ---------------------------------------------------------------------
def discover(folder: Path) -> list[Path]:
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


def read_parameters(path: Path) -> dict[str, Any]:
    """The names and default values assigned in the notebook's cell tagged ``parameters``."""
    nb = json.loads(Path(path).read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            src = "".join(cell["source"])
            params = {}
            for node in ast.parse(src).body:
                if isinstance(node, ast.Assign | ast.AnnAssign):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for t in targets:
                        if isinstance(t, ast.Name):
                            try:
                                params[t.id] = ast.literal_eval(node.value)
                            except ValueError:
                                params[t.id] = None
            return params
    raise RunnerError(f"{Path(path).name} has no cell tagged 'parameters'")


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["steps=100", "name=abc"]`` -> ``{"steps": 100, "name": "abc"}`` (Python literals, else strings)."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise RunnerError(f"parameter {item!r} is not of the form key=value")
        try:
            out[key.strip()] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key.strip()] = raw
    return out


def check_overrides(path: Path, overrides: dict[str, Any]) -> None:
    valid = read_parameters(path)
    if "profile" not in valid:
        raise RunnerError(f"{path.stem} has no 'profile' parameter; its parameters: {', '.join(valid)}")
    if "profile" in overrides:
        raise RunnerError("set the profile with --profile, not -p profile=...")
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise RunnerError(f"unknown parameter(s) {', '.join(unknown)} for {path.stem}; "
                          f"valid: {', '.join(k for k in valid if k != 'profile')}")


def input_key(path: Path, parameters: dict[str, Any], lib: Path = paths.LIB,
              manifest: Path = paths.DATA / "manifest.json") -> str:
    """Hash of what a run depends on: the notebook's cells, ``lib/`` sources, the data manifest, parameters."""
    h = hashlib.sha256()
    nb = json.loads(Path(path).read_text())
    h.update(json.dumps([[c["cell_type"], "".join(c["source"])] for c in nb["cells"]]).encode())
    for f in sorted(lib.rglob("*")):
        if f.is_file() and f.suffix in (".py", ".json", ".j2") and "__pycache__" not in f.parts:
            h.update(str(f.relative_to(lib)).encode())
            h.update(f.read_bytes())
    if manifest.exists():
        h.update(manifest.read_bytes())
    h.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    return h.hexdigest()


# -- state ------------------------------------------------------------------------------------------
def load_state(out: Path) -> dict[str, Any]:
    p = out / STATE_FILE
    return json.loads(p.read_text()) if p.exists() else {}


def _fmt_s(s: float) -> str:
    return f"{int(s // 60)}m{int(s % 60):02d}s" if s >= 60 else f"{s:.1f}s"


# -- running ----------------------------------------------------------------------------------------
def _run_one(job: Job, profile: str, stage_root: Path, cell_timeout: float, timeout: float,
             procs: dict[str, subprocess.Popen], stop: threading.Event, log_dir: Path) -> None:
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
            job.error = {"stage": "execute", "ename": "NotebookTimeout",
                         "evalue": f"notebook ran past its {timeout:g} s limit", "cell": {}}
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
            job.error.update(stage="execute", ename="WorkerDied", evalue=f"exit code {proc.returncode}", cell={})


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _publish(job: Job, stage_root: Path, out: Path) -> bool:
    """Move a finished run's HTML and results into ``out``, each file atomically."""
    stage = stage_root / job.name
    html = stage / f"{job.name}.html"
    results = stage / "results" / f"{job.name}.json"
    if not html.exists():
        return False
    if results.exists():
        paths.atomic_write_bytes(out / "results" / results.name, results.read_bytes())
    paths.atomic_write_bytes(out / html.name, html.read_bytes())
    return True


def _describe_error(job: Job) -> str:
    e = job.error
    cell = e.get("cell") or {}
    where = f" in code cell {cell['code_cell']} ({cell.get('source_line', '')!r})" if cell.get("code_cell") else ""
    return f"{job.name} failed{where}: {e.get('ename')}: {e.get('evalue', '').splitlines()[0] if e.get('evalue') else ''}" \
           f"  [log: {e.get('log')}]"


def run(*, only: Sequence[str] | None = None, profile: str = "default", jobs: int = 1, force: bool = False,
        parameters: dict[str, Any] | None = None, out: Path = paths.REPORTS,
        notebooks: Path = paths.NOTEBOOKS, cell_timeout: float = 1800, timeout: float = 3600,
        heartbeat: float = 30, log: Callable[[str], None] = print) -> list[Job]:
    """Run the selected notebooks; returns the jobs. Raises :class:`RunnerError` on bad input."""
    check(profile)
    if jobs < 1:
        raise RunnerError(f"jobs must be at least 1, got {jobs}")
    out = Path(out)
    parameters = dict(parameters or {})
    selected = select(discover(notebooks), only)
    for p in selected:
        check_overrides(p, parameters)
    state = load_state(out)
    todo: list[Job] = []
    all_jobs: list[Job] = []
    for p in selected:
        key = input_key(p, {**parameters, "profile": profile})
        job = Job(p.stem, p, dict(parameters), key)
        prev = state.get(p.stem, {})
        fresh = (prev.get("status") == "ok" and prev.get("key") == key and (out / f"{p.stem}.html").exists())
        if fresh and not force:
            job.status = "skipped"
            log(f"= {p.stem}: inputs unchanged since its last good run, skipped (--force re-runs)")
        else:
            todo.append(job)
        all_jobs.append(job)
    if not selected:
        log(f"no notebooks in {notebooks}")

    stop = threading.Event()
    procs: dict[str, subprocess.Popen] = {}
    stage_root = Path(tempfile.mkdtemp(prefix="repro-run-"))
    old_term = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

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
                    if job.status == "ok" and not _publish(job, stage_root, out):
                        job.status = "failed"
                        job.error.update(stage="render", ename="MissingReport", evalue="no HTML was rendered")
                    log(f"+ {job.name}: ok in {_fmt_s(job.seconds)}" if job.status == "ok"
                        else f"! {_describe_error(job)}")
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
        log("interrupted: reports/ left as it was")
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, old_term)
        shutil.rmtree(stage_root, ignore_errors=True)

    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    for job in todo:
        prev = state.get(job.name, {})
        entry = {"status": job.status, "key": job.key, "profile": profile, "parameters": job.parameters,
                 "seconds": round(job.seconds, 1), "finished_at": now}
        if job.status == "ok":
            entry["last_ok"] = now
        else:
            entry["error"] = job.error
            entry["key"] = None
            entry["last_ok"] = prev.get("last_ok")
            entry["last_ok_profile"] = prev.get("profile") if prev.get("last_ok") else None
        state[job.name] = entry
    if todo:
        paths.atomic_write_text(out / STATE_FILE, json.dumps(state, indent=1, sort_keys=True) + "\n")
    from .report import write_index

    write_index(out)
    failed = [j for j in todo if j.status != "ok"]
    ok = [j for j in todo if j.status == "ok"]
    skipped = [j for j in all_jobs if j.status == "skipped"]
    log(f"done in {_fmt_s(time.perf_counter() - t_start)}: {len(ok)} ok, {len(failed)} failed, "
        f"{len(skipped)} skipped; index: {out / 'index.html'}")
    for j in failed:
        log(f"! {_describe_error(j)}")
    return all_jobs


__all__ = ["PROFILES", "Job", "RunnerError", "discover", "input_key", "read_parameters", "run", "select"]
