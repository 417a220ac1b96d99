"""Where a result came from: the git state of the workbook and the versions of the packages it ran on.

Recorded with every notebook's results (:mod:`repro.record`) and every stored run (:mod:`repro.runs`).
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from typing import Any

from . import paths

PACKAGES = ("torch", "numpy", "scipy", "statsmodels", "pandas", "matplotlib", "papermill")


def git_state() -> dict[str, Any]:
    """``{"revision": commit or None, "dirty": uncommitted changes to tracked files, or None}``.

    ``$REPRO_GIT_REVISION`` names the revision where the work tree is not a git checkout (a copied tree on a
    cluster node); ``None`` where git is missing or fails."""

    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=paths.ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    rev = os.environ.get("REPRO_GIT_REVISION") or run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"revision": rev, "dirty": None if status is None else bool(status)}


def package_versions() -> dict[str, str | None]:
    """Python's version and those of :data:`PACKAGES` (``None`` for a package that is not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
