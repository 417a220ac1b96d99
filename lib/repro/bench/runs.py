"""What the runs layer costs, and what Ray buys: ``python -m repro bench runs [--quick]``.

1. **Overhead per run** (scheduling, provenance, writing the table): a sweep of no-op runs, each returning the rows
   of one D-CPT grid run (15 rows of the grid table's columns), performed by :func:`repro.runs.run_sweep` in this
   process into a table that grows to the committed grid's size (54 runs; ``--quick``: 18). Wall time per run,
   against the median wall time of the committed grid's runs (``data/dcpt/grid.json``): the share the layer adds to
   a typical grid run. Its parts are timed alone: one :func:`repro.runs.perform` of a no-op (threads, git revision
   and dirty flag, package versions, machine) and one write of the full table (CSV and JSON, atomic, fsynced).
   The same no-op sweep on the Ray executor (warm) gives Ray's overhead per run.
2. **ray with 2 workers against local**: a sweep of 8 equal runs, each a fixed CPU-bound torch workload (a
   ``tanh(x W)`` chain, 1 thread), performed in this process one after another (``local``), in 2 worker processes
   (``local --jobs 2``), and as Ray tasks on a local instance with 2 CPUs: its start-up timed apart, then the sweep
   cold (fresh Ray workers import torch) and again warm. Wall-time ratios over ``local``; the goal is 0.6 or less.
   Every executor must give the same table (the workload's checksums): a check, not a timing.
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import paths, runs
from ..dcpt.grid import COLUMN_TYPES, Grid
from . import time_it

GOAL_RATIO = 0.6
BURN_ITERS = 50000  # about 4 s of one core (Intel Xeon, AVX-512: 0.08 ms a step)
QUICK_BURN_ITERS = 12000


@dataclass(frozen=True)
class NoOp:
    """A run that does nothing but return ``rows`` rows shaped like one grid run's."""

    i: int
    rows: int = 15

    @property
    def label(self) -> str:
        return f"noop{self.i}"


def noop(spec: NoOp) -> list[dict[str, Any]]:
    """A run that does no work: ``spec.rows`` rows shaped like a D-CPT grid's, to time the runs layer's overhead."""
    return [{"size": "s", "N": 100096.0, "n_total": 632576.0, "domain": "code", "r_d": 0.1, "step": float(k),
             "D": 2048.0 * k, "L_g": 5.7, "L_d": 7.7} for k in range(spec.rows)]


@dataclass(frozen=True)
class Burn:
    """A fixed CPU-bound torch workload: ``iters`` steps of ``x <- tanh(x W)``, x (64, 256), W (256, 256)."""

    i: int
    iters: int

    @property
    def label(self) -> str:
        return f"burn{self.i}"


def burn(spec: Burn) -> list[dict[str, Any]]:
    """A run that keeps one CPU busy with seeded matrix products for a fixed time; returns one row."""
    import torch

    g = torch.Generator().manual_seed(spec.i)
    w = torch.randn(256, 256, generator=g) / 16  # (256, 256)
    x = torch.randn(64, 256, generator=g)  # (64, 256)
    for _ in range(spec.iters):
        x = torch.tanh(x @ w)
    return [{"i": float(spec.i), "checksum": float(x.double().sum())}]


BURN_COLUMNS = {"run": str, "i": float, "checksum": float}
QUIET = {"log": lambda s: None, "progress": False}


def _sweep(name: str, folder: Path, specs: list[Any], fn: Any, columns: dict[str, type]) -> runs.Sweep:
    return runs.Sweep(f"bench/{name}", folder / name, specs, fn, columns)


def _timed_sweep(sweep: runs.Sweep, **kw: Any) -> float:
    t0 = time.perf_counter()
    runs.run_sweep(sweep, **kw, **QUIET)
    return time.perf_counter() - t0


def run(quick: bool = False) -> dict[str, Any]:
    """The runs benchmark: the runs layer's overhead per run against a grid run's median time, and Ray's
    executor against local worker processes on the same runs (cold and warm); returns the JSON written."""
    import ray

    grid_runs = Grid.load(paths.DATA / "dcpt" / "grid").meta["runs"]
    median_run_s = statistics.median(v["seconds"] for v in grid_runs.values())
    n_noop = 18 if quick else len(grid_runs)
    iters = QUICK_BURN_ITERS if quick else BURN_ITERS
    rows: list[dict[str, Any]] = []
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="repro-bench-runs-") as tmp:
        folder = Path(tmp)
        # 1. overhead per run, in this process (after one run outside the timing: the imports are paid once)
        noops = [NoOp(i) for i in range(n_noop)]
        runs.perform(noop, noops[0], "warm-up")
        wall = _timed_sweep(_sweep("noop-local", folder, noops, noop, COLUMN_TYPES))
        per_run = wall / n_noop
        full = runs.Table.load(folder / "noop-local", COLUMN_TYPES)
        write = time_it(full.save, repeat=5)
        prov = time_it(lambda: runs.perform(noop, noops[0], "noop0"), repeat=5)
        rows.append({"measure": "overhead per run", "executor": "local", "runs": n_noop, "wall_s": wall,
                     "per_run_ms": 1e3 * per_run, "share_of_median_grid_run": per_run / median_run_s})
        # 2. eight equal runs: local, local --jobs 2, ray (local instance, 2 CPUs)
        burns = [Burn(i, iters) for i in range(8)]
        t_local = _timed_sweep(_sweep("burn-local", folder, burns, burn, BURN_COLUMNS))
        t_jobs = _timed_sweep(_sweep("burn-jobs", folder, burns, burn, BURN_COLUMNS), jobs=2)
        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
        t_start = time.perf_counter() - t0
        try:
            t_cold = _timed_sweep(_sweep("burn-ray", folder, burns, burn, BURN_COLUMNS), executor="ray")
            t_warm = _timed_sweep(_sweep("burn-ray-warm", folder, burns, burn, BURN_COLUMNS), executor="ray")
            ray_noop = _timed_sweep(_sweep("noop-ray", folder, noops, noop, COLUMN_TYPES), executor="ray")
        finally:
            ray.shutdown()
        rows.append({"measure": "overhead per run", "executor": "ray (warm, 2 CPUs)", "runs": n_noop,
                     "wall_s": ray_noop, "per_run_ms": 1e3 * ray_noop / n_noop,
                     "share_of_median_grid_run": ray_noop / n_noop / median_run_s})
        for name, t in (("local", t_local), ("local --jobs 2", t_jobs), ("ray, cold workers", t_cold),
                        ("ray, warm workers", t_warm), ("ray, cold, with its start-up", t_cold + t_start)):
            rows.append({"measure": "8 equal runs", "executor": name, "runs": 8, "wall_s": t,
                         "ratio_to_local": t / t_local})
        tables = {n: (folder / f"{n}.csv").read_text() for n in ("burn-local", "burn-jobs", "burn-ray",
                                                                  "burn-ray-warm")}
        same = len({t.split("\n", 1)[1] for t in tables.values()}) == 1
    summary = {
        "overhead_per_run_ms": round(1e3 * per_run, 2),
        "median_grid_run_s": median_run_s,
        "overhead_share_of_median_grid_run": per_run / median_run_s,
        "overhead_goal_share": 0.01,
        "overhead_parts_ms": {"perform_noop_with_provenance": round(1e3 * prov["median_s"], 2),
                              f"table_write_{n_noop}_runs": round(1e3 * write["median_s"], 2)},
        "ray_overhead_per_run_ms": round(1e3 * ray_noop / n_noop, 2),
        "burn_run_s_local": t_local / 8,
        "ray_over_local": t_cold / t_local,
        "ray_over_local_warm": t_warm / t_local,
        "ray_over_local_with_startup": (t_cold + t_start) / t_local,
        "jobs2_over_local": t_jobs / t_local,
        "ray_startup_s": t_start,
        "goal_ratio": GOAL_RATIO,
        "ray_goal_met": t_cold / t_local <= GOAL_RATIO,
        "executors_give_one_table": same,
        "load_average_1min": {"start": load_start, "end": os.getloadavg()[0],
                              "note": "other work on this machine during the run shows here (2 cores)"},
    }
    return {"rows": rows, "baseline": "local: the sweep in this process, one run after another; overhead against "
            "the committed grid's median run (data/dcpt/grid.json)", "summary": summary}
