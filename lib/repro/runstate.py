"""The runner's state file, ``reports/runs.json``: reading it, and changing it under a lock.

The runner (:mod:`repro.runner`) records every notebook run here; the index page (:mod:`repro.report`) reads
it. Both import this module, which imports neither, so the layers go runner -> report -> runstate.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import paths

STATE_FILE = "runs.json"
LOCK_FILE = ".runs.json.lock"  # beside runs.json: held while the state is read, merged and rewritten

__all__ = ["LOCK_FILE", "STATE_FILE", "load_state", "state_lock", "update_state"]


def load_state(out: Path) -> dict[str, Any]:
    """The runner's state in ``out/runs.json``: ``{notebook name: its entry}``, ``{}`` when there is no file.

    Raises ``json.JSONDecodeError`` when the file is not JSON (a file another writer left half written cannot
    occur: :func:`update_state` replaces it atomically).
    """
    p = Path(out) / STATE_FILE
    return json.loads(p.read_text()) if p.exists() else {}


@contextlib.contextmanager
def state_lock(out: Path) -> Iterator[None]:
    """Hold the exclusive lock on ``out``'s runner state: ``fcntl.flock`` on ``out/.runs.json.lock``.

    Every change to ``runs.json``, to the published pages and to the index happens under it, so runners
    sharing one reports folder take turns and none overwrites what another recorded.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_FILE, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def update_state(out: Path, updates: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> dict[str, Any]:
    """Merge this run's entries into ``out/runs.json``; the caller holds :func:`state_lock`.

    The state is read again from disk (another runner may have written since this one started) and only
    the named entries change, each made from its previous entry by its function. Returns the new state.
    """
    state = load_state(out)
    for name, make in updates.items():
        state[name] = make(state.get(name, {}))
    paths.atomic_write_text(Path(out) / STATE_FILE, json.dumps(state, indent=1, sort_keys=True) + "\n")
    return state
