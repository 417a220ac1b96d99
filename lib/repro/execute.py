"""One notebook's execution, run by :mod:`repro.runner` in a child process.

``python -m repro.execute SPEC.json`` executes the notebook with papermill into the staging folder
named in the spec, renders it to HTML there, and writes ``status.json``: ``{"ok": true}`` or the
failing cell and its error. It never writes outside the staging folder, so a failed or killed run
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


def _failed_cell(nb_path: Path) -> dict[str, Any]:
    """The cell papermill marked as failed (or left running at a timeout) in the executed notebook."""
    import nbformat

    if not nb_path.exists():
        return {}
    nb = nbformat.read(nb_path, as_version=4)
    code_index = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        injected = "injected-parameters" in cell.metadata.get("tags", [])
        if not injected:
            code_index += 1
        status = cell.metadata.get("papermill", {}).get("status")
        if status in ("failed", "running"):
            first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
            return {"code_cell": code_index, "injected": injected, "status": status, "source_line": first[:200]}
    return {}


def main(spec_path: str) -> int:
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
            spec["input"], str(out_nb), parameters=spec["parameters"], kernel_name="python3",
            cwd=spec["cwd"], execution_timeout=spec["cell_timeout"], progress_bar=False, log_output=False,
            stdout_file=sys.stdout, stderr_file=sys.stderr,
        )
    except Exception as e:  # noqa: BLE001 - any failure is reported, with its cell
        cell = _failed_cell(out_nb)
        ename = getattr(e, "ename", type(e).__name__)
        evalue = getattr(e, "evalue", str(e))
        status.update(stage="execute", ename=ename, evalue=str(evalue)[:2000], cell=cell)
        traceback.print_exc()
    else:
        try:
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
