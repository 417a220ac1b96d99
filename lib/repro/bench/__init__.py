"""Benchmarks: ``python -m repro bench NAME [--quick]``.

A benchmark is a module ``repro.bench.<name>`` with a function ``run(quick: bool) -> dict`` that
measures the thing and its baseline *in the same run* and returns::

    {"name": ..., "rows": [{...}, ...],        # one row per configuration measured
     "baseline": ..., "summary": {...}}        # what the rows are compared against, headline ratios

:func:`main` adds the machine (cores, threads, torch version, CPU model) and the time, prints the rows
as a table and writes ``reports/bench/<name>.json`` atomically. ``--quick`` must finish within a
minute. Speed claims live here, never in wall-clock asserts in tests.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import platform
import statistics
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import paths

BENCHES = ("gpt", "picasso", "numerics", "runs", "moe", "ddk", "victor")


def machine() -> dict[str, Any]:
    """The machine a benchmark ran on (:func:`repro.machine.machine_info`), with Python's and torch's versions."""
    from ..machine import machine_info

    info: dict[str, Any] = {**machine_info(), "python": platform.python_version()}
    try:
        info["torch"] = metadata.version("torch")
    except metadata.PackageNotFoundError:  # pragma: no cover - torch is a dependency
        pass
    return info


def time_it(fn: Callable[[], Any], *, repeat: int = 5, warmup: int = 1, min_time: float = 0.0) -> dict[str, float]:
    """Median and spread of ``fn``'s wall time over ``repeat`` runs after ``warmup`` runs (seconds)."""
    for _ in range(warmup):
        fn()
    times = []
    t_end = time.perf_counter() + min_time
    while len(times) < repeat or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "n": len(times)}


def format_table(rows: list[dict[str, Any]]) -> str:
    """Rows of a benchmark as an aligned text table (floats to 4 significant digits); "(no rows)" when empty."""
    if not rows:
        return "(no rows)"
    cols = list(dict.fromkeys(k for r in rows for k in r))

    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    width = {c: max(len(c), *(len(cell(r.get(c, ""))) for r in rows)) for c in cols}
    lines = ["  ".join(c.rjust(width[c]) for c in cols), "  ".join("-" * width[c] for c in cols)]
    lines += ["  ".join(cell(r.get(c, "")).rjust(width[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def main(name: str, quick: bool = False, out: Path | None = None) -> Path:
    """Run the benchmark ``name`` of :data:`BENCHES` (``quick``: its short version) and write its JSON to ``out``
    (default ``reports/bench/<name>.json``); returns the path. ``ValueError`` for an unknown name."""
    if name not in BENCHES:
        raise ValueError(f"unknown benchmark {name!r}; valid: {', '.join(BENCHES)}")
    mod = importlib.import_module(f"{__name__}.{name}")
    t0 = time.perf_counter()
    result = mod.run(quick=quick)
    doc = {"name": name, "quick": quick, "when": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
           "seconds": round(time.perf_counter() - t0, 1), "machine": machine(), **result}
    print(format_table(doc.get("rows", [])))
    if doc.get("summary"):
        print(json.dumps(doc["summary"], indent=1))
    path = Path(out or paths.REPORTS / "bench") / f"{name}.json"
    paths.atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path}")
    return path
