"""One notebook's execution, run by :mod:`repro.runner` in a child process.

``python -m repro.execute SPEC.json`` executes the notebook with papermill into the staging folder
named in the spec, renders it to HTML there, and writes ``status.json``: ``{"ok": true}`` or the
failing cell and its error. A run is good only if every cell completed and the notebook wrote its
results JSON (:func:`incomplete`); the paths are never papermill templates (:func:`_literal`). It never writes outside the staging folder, so a failed or killed run
cannot touch ``reports/``.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any


def _die_with_parent() -> None:
    """Ask Linux to send us SIGTERM when the runner dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _terminate(signum: int, frame: Any) -> None:
    """Kill the kernel and anything else we started, then leave."""
    try:
        import psutil

        for child in psutil.Process().children(recursive=True):
            child.kill()
    finally:
        os._exit(128 + signum)


def _literal(path: str | os.PathLike) -> str:
    """``path`` escaped so that papermill's ``str.format`` templating of paths gives it back unchanged.

    papermill formats the input and output paths with the parameters (``out_{seed}.ipynb``); our paths
    are never templates, and a brace in one (``my{proj}/nbs``) must neither fail nor pick another file.
    """
    return str(path).replace("{", "{{").replace("}", "}}")


def failed_cell(nb_path: Path, stopped: bool = False) -> dict[str, Any]:
    """Where execution failed or stopped, read from papermill's cell metadata in the executed notebook.

    papermill saves the notebook when a cell starts (status ``running``) and when it ends (``completed``,
    or ``failed`` on an error). A cell marked ``failed`` is the answer. Otherwise, when execution was
    ``stopped`` inside a cell (a per-cell timeout, a dead kernel, the worker killed at the notebook's
    time limit), it is the last cell that started: cells run in order, and none starts after the one
    that was running. Returns ``{}`` when the notebook was never written or no cell started.
    """
    import nbformat

    try:
        nb = nbformat.read(nb_path, as_version=4)
    except Exception:  # noqa: BLE001 - missing, or cut short by a kill mid-write: no cell to name
        return {}
    code_index = 0
    last_started = None
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        injected = "injected-parameters" in cell.metadata.get("tags", [])
        if not injected:
            code_index += 1
        pm_meta = cell.metadata.get("papermill", {})
        where = {"code_cell": code_index, "injected": injected, "status": pm_meta.get("status"),
                 "source_line": next((ln for ln in cell.source.splitlines() if ln.strip()), "")[:200]}
        if pm_meta.get("status") == "failed":
            return where
        if pm_meta.get("start_time"):
            last_started = where
    if last_started and (stopped or last_started["status"] == "running"):
        return {**last_started, "status": "running"}
    return {}


def incomplete(nb_path: Path, name: str, results: Path) -> dict[str, Any] | None:
    """Why a run that raised no error is still not a good run, or ``None`` when it is good.

    Good means every code cell completed and the notebook wrote ``results/<name>.json``. papermill and
    nbclient treat ``SystemExit`` with code 0 (``sys.exit(0)``, ``exit()``) as a clean stop: they stop
    executing and report success, although the cells after it never ran.
    """
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    # papermill's injected-parameters cell is not one of the notebook's own cells: it is not counted
    not_done = [c for c in code if c.metadata.get("papermill", {}).get("status") != "completed"
                and "injected-parameters" not in c.metadata.get("tags", [])]
    if not_done:
        cell = failed_cell(nb_path)
        error = next((o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"), None)
        how = f" ({error['ename']}: {error['evalue']})" if error else ""
        at = f"at code cell {cell['code_cell']}" if cell else "before its first cell"
        return {"stage": "execute", "ename": "StoppedEarly", "cell": cell,
                "evalue": f"the notebook stopped {at}{how} without an error; {len(not_done) - bool(cell)} "
                          "code cell(s) after it did not run"}
    if not (results / f"{name}.json").exists():
        others = sorted(p.name for p in results.glob("*.json"))
        instead = f" (it wrote {', '.join(others)} instead)" if others else ""
        return {"stage": "execute", "ename": "NoResults", "cell": {},
                "evalue": f"every cell ran, but the notebook recorded no results: no results/{name}.json"
                          f"{instead}; a run must end with rec.save()"}
    return None


def main(spec_path: str) -> int:
    """Run one notebook as the runner's child process: the JSON job spec at ``spec_path`` names the input,
    staging folder, parameters and cell timeout. Executes it with papermill, checks it completed and recorded
    results, renders its page, and writes ``status.json`` (``{"ok": True}`` or the failure and its cell) into
    the staging folder. Returns 0 on success, 1 on failure; failures are reported there, not raised."""
    _die_with_parent()
    signal.signal(signal.SIGTERM, _terminate)
    spec = json.loads(Path(spec_path).read_text())
    stage = Path(spec["stage"])
    name = spec["name"]
    out_nb = stage / f"{name}.ipynb"
    status: dict[str, Any] = {"ok": False}
    try:
        import papermill as pm

        os.environ["REPRO_RESULTS_DIR"] = str(stage / "results")
        os.environ["TQDM_DISABLE"] = "1"  # progress bars stay quiet in batch runs
        os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        pm.execute_notebook(
            _literal(spec["input"]), _literal(out_nb), parameters=spec["parameters"], kernel_name="python3",
            cwd=spec["cwd"], execution_timeout=spec["cell_timeout"], progress_bar=False, log_output=False,
            stdout_file=sys.stdout, stderr_file=sys.stderr,
        )
    except Exception as e:  # noqa: BLE001 - any failure is reported, with its cell
        # nbclient's per-cell timeout and dead kernel stop inside a cell that papermill then marks completed
        cell = failed_cell(out_nb, stopped=type(e).__name__ in ("CellTimeoutError", "DeadKernelError"))
        ename = getattr(e, "ename", type(e).__name__)
        evalue = getattr(e, "evalue", str(e))
        status.update(stage="execute", ename=ename, evalue=str(evalue)[:2000], cell=cell)
        traceback.print_exc()
    else:
        try:
            problem = incomplete(out_nb, name, stage / "results")
            if problem:
                status.update(problem)
                print(f"{problem['ename']}: {problem['evalue']}", file=sys.stderr)
            else:
                from .report import render_html

                render_html(out_nb, stage / f"{name}.html")
                status = {"ok": True}
        except Exception as e:  # noqa: BLE001
            status.update(stage="render", ename=type(e).__name__, evalue=str(e)[:2000], cell={})
            traceback.print_exc()
    (stage / "status.json").write_text(json.dumps(status))
    return 0 if status["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
