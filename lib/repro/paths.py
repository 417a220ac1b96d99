"""Where things live in the repository, and atomic writes.

Every path the workbook uses is derived here, so notebooks, tests and the runner agree.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def _find_root() -> Path:
    env = os.environ.get("REPRO_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "lib" / "repro").is_dir():
            return parent
    raise RuntimeError(
        "cannot find the workbook's root (a folder holding pyproject.toml and lib/repro); set REPRO_ROOT"
    )


ROOT = _find_root()
LIB = ROOT / "lib" / "repro"
NOTEBOOKS = ROOT / "notebooks"
DATA = ROOT / "data"
REPORTS = ROOT / "reports"
BUILD = ROOT / "build"  # scratch: git-ignored
ASSETS = LIB / "assets"


def results_dir() -> Path:
    """Folder that `repro.record` writes into.

    The runner points ``REPRO_RESULTS_DIR`` at a staging folder, so that only a finished, rendered run
    reaches ``reports/results``. Outside the runner (Run All in Jupyter, nbval) results go to
    ``build/results``: a scratch folder that never replaces a committed report.
    """
    env = os.environ.get("REPRO_RESULTS_DIR")
    return Path(env) if env else BUILD / "results"


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder, then rename it into place."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder (created where missing), then
    rename it into place: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
