"""Fault-injection trials of C4D as stored sweeps (:mod:`repro.runs`), and their evaluation.

Sweeps (``python -m repro runs c4/<name>``, tables in ``data/c4/``):

* ``c4/calibration``: the runs the detector's default :class:`.detect.Thresholds` were checked on (seeds 1000+);
* ``c4/trials``: the evaluation (seeds 0+): :data:`TRIALS` randomised trials per fault class (random rank, peer and
  onset iteration) and :data:`HEALTHY_RUNS` fault-free runs of :data:`HEALTHY_ITERATIONS` iterations;
* ``c4/overhead``: the monitor's cost: the all-reduce of the job's gradient timed per round as the monitored ring,
  the same ring unmonitored, and gloo's own all-reduce, in one process group (paired by round).

A trial's row: the injected fault (the truth), the detector's first finding after the onset, its delay in
iterations and seconds, and its alarms before the onset (false alarms, with the healthy iterations they came from).
"""

from __future__ import annotations

import hashlib
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import paths, runs
from .detect import NCCL_TIMEOUT_S, Thresholds, Watchdog
from .faults import KINDS, random_fault
from .job import check_config, run_job, time_allreduce
from .worker import JobConfig

TRIALS = 130  # per fault class: 130 of 130 right puts the exact 95 % interval's low end at 0.972
HEALTHY_RUNS = 10
HEALTHY_ITERATIONS = 200
CALIBRATION = (5, 4)  # the calibration sweep: trials per class, healthy runs
ONSET = (8, 20)  # the fault's first iteration, uniform in this range (the detector needs a short history first)
AFTER = 8  # iterations run after the onset of a slow fault (the goal is a finding within 5)
STOPS = ("noncomm_hang", "comm_hang", "crash", "unknown_hang")  # findings of a stopped job, timed in seconds

COLUMNS = {"run": str, "kind": str, "trial": int, "rank": int, "peer": int, "onset": int, "found": str,
           "found_ranks": str, "found_connection": str, "delay_iterations": float, "delay_s": float,
           "false_alarms": int, "alarm_kinds": str, "healthy_iterations": int, "judged_iterations": int,
           "iteration_s": float, "watchdog_s": float, "wall_s": float}
OVERHEAD_COLUMNS = {"run": str, "round": int, "variant": str, "seconds": float}
SWEEPS = ("c4/calibration", "c4/trials", "c4/overhead")


@dataclass(frozen=True)
class Trial:
    """One trial: fault ``kind`` (or ``"healthy"``), trial index, seed, and the job's size."""

    kind: str
    trial: int
    seed: int
    world: int = 4
    iterations: int = HEALTHY_ITERATIONS

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.trial}"


def fault_of(t: Trial):
    """The trial's fault (``None`` for a healthy run): random rank, onset and peer from its own seed."""
    if t.kind == "healthy":
        return None
    cfg = check_config(JobConfig(world=t.world, seed=t.seed))
    rng = np.random.default_rng([t.seed, t.trial, zlib.crc32(t.kind.encode())])
    return random_fault(t.kind, t.world, *ONSET, list(cfg.rings), rng)


def run_trial(t: Trial, thresholds: Thresholds | None = None) -> list[dict]:
    """Run one trial (:func:`.job.run_job`) and score it against its fault: one row of :data:`COLUMNS`.

    A finding made from evidence before the onset is a false alarm: a slow-fault finding when its last iteration
    is before the onset iteration, a hang or crash finding when it came before the onset time. The first other
    finding is the trial's answer (``found``), its delay counted from the onset: in iterations for slow findings
    (faulty iterations seen), in median iteration times for hangs and crashes. ``judged_iterations``: the healthy
    iterations in which the detector could raise an alarm (from iteration ``min_history`` on)."""
    th = thresholds or Thresholds()
    fault = fault_of(t)
    iterations = t.iterations if fault is None else fault.iteration + AFTER
    cfg = JobConfig(world=t.world, iterations=iterations, seed=t.seed)
    res = run_job(cfg, fault, th, deadline_s=60 + 2 * iterations * cfg.compute_s)
    onset_s = res.truth["onset_s"] if res.truth else math.inf
    onset = fault.iteration if fault else iterations

    def early(d) -> bool:
        return d.t < onset_s if d.kind in STOPS else d.iteration < onset

    before = [d for d in res.diagnoses if early(d)]
    after = [d for d in res.diagnoses if not early(d)]
    first = after[0] if fault is not None and after else None
    shown = first or (before[0] if fault is None and before else None)  # a healthy run shows its first alarm
    delay_s = first.t - onset_s if first else math.nan
    if first is None:
        delay_it = math.nan
    elif first.kind in STOPS:
        delay_it = delay_s / res.iteration_s  # in median iteration times
    else:
        delay_it = first.iteration - onset + 1  # faulty iterations seen
    stall_s = cfg.compute_s if fault is not None and fault.kind == "comm_hang" else 0.0  # blocks after compute
    healthy = min(onset, res.iterations_done + 1)
    return [{"kind": t.kind, "trial": t.trial, "rank": fault.rank if fault else -1, "peer": fault.peer if fault else -1,
             "onset": onset, "found": shown.kind if shown else "none",
             "found_ranks": " ".join(map(str, shown.ranks)) if shown else "",
             "found_connection": "-".join(map(str, shown.connection)) if shown and shown.connection else "",
             "delay_iterations": delay_it, "delay_s": delay_s, "false_alarms": len(before),
             "alarm_kinds": " ".join(d.kind for d in before), "healthy_iterations": healthy,
             "judged_iterations": max(0, healthy - th.min_history), "iteration_s": res.iteration_s,
             "watchdog_s": Watchdog(NCCL_TIMEOUT_S).delay_s(t.kind, stall_s) if fault else math.inf,
             "wall_s": res.wall_s}]


def specs(name: str, world: int = 4) -> list[Trial]:
    """The trials of sweep ``name`` (:data:`SWEEPS`): the evaluation's :data:`TRIALS` per class and
    :data:`HEALTHY_RUNS` (seeds 0 and up), or the calibration's :data:`CALIBRATION` (seeds 1000 and up)."""
    base, (trials, healthy) = (1000, CALIBRATION) if name == "c4/calibration" else (0, (TRIALS, HEALTHY_RUNS))
    out = [Trial("healthy", i, base + i, world) for i in range(healthy)]
    return out + [Trial(k, i, base + 100 + i, world) for k in KINDS for i in range(trials)]


# ------------------------------------------------------------------------------------------------ overhead
@dataclass(frozen=True)
class OverheadRun:
    """The monitor's overhead: ``rounds`` rounds of the three all-reduce variants in one ``world``-rank job."""

    rounds: int = 30
    world: int = 4
    seed: int = 0
    label = "overhead"


def run_overhead(spec: OverheadRun) -> list[dict]:
    """Rows of :data:`OVERHEAD_COLUMNS`: per round and variant (``monitored``, ``ring``, ``native``) the seconds
    of one all-reduce of the job's gradient (all buckets), rank 0's clock, the ranks barrier-aligned."""
    return time_allreduce(JobConfig(world=spec.world, seed=spec.seed), spec.rounds)


def sweep(name: str) -> runs.Sweep:
    """The sweep ``name`` of :data:`SWEEPS`, its table at ``data/<name>``; ``ValueError`` naming ``name`` else."""
    if name not in SWEEPS:
        raise ValueError(f"name: unknown C4 sweep {name!r} (valid: {', '.join(SWEEPS)})")
    path = paths.DATA / name
    if name == "c4/overhead":
        return runs.Sweep(name, path, (OverheadRun(),), run_overhead, OVERHEAD_COLUMNS)
    return runs.Sweep(name, path, tuple(specs(name)), run_trial, COLUMNS,
                      key={"thresholds": vars(Thresholds()), "onset": list(ONSET), "after": AFTER},
                      meta={"code_sha256": code_hash()})


def code_hash() -> str:
    """sha256 of the modules that decide a trial's outcome (faults, collective, worker, detect, job, trials): the
    code a stored table was made with, recorded when the table is started."""
    h = hashlib.sha256()
    for m in ("faults", "collective", "worker", "detect", "job", "trials"):
        h.update((Path(__file__).parent / f"{m}.py").read_bytes())
    return h.hexdigest()


def load(name: str) -> pd.DataFrame:
    """The stored table of sweep ``name`` (:data:`SWEEPS`) as a DataFrame (``FileNotFoundError`` naming the command
    that makes it when it is missing)."""
    if name not in SWEEPS:
        raise ValueError(f"name: unknown C4 sweep {name!r} (valid: {', '.join(SWEEPS)})")
    path = paths.DATA / name
    if not path.with_suffix(".csv").exists():
        raise FileNotFoundError(f"{path}.csv: run `python -m repro runs {name}` to make it")
    cols = OVERHEAD_COLUMNS if name == "c4/overhead" else COLUMNS
    return runs.Table.load(path, cols).frame()


def run_live(trials: int, healthy: int, healthy_iterations: int = HEALTHY_ITERATIONS, world: int = 4,
             seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """Trials run here and now, not stored (the smoke and full profiles): ``healthy`` fault-free runs of
    ``healthy_iterations`` iterations and ``trials`` per fault class on ``world`` ranks, seeds from ``seed`` on
    (as :func:`specs`). Rows as the stored table's, without ``run``."""
    from ..progress import tqdm

    todo = [Trial("healthy", i, seed + i, world, healthy_iterations) for i in range(healthy)]
    todo += [Trial(k, i, seed + 100 + i, world) for k in KINDS for i in range(trials)]
    return pd.DataFrame([row for t in tqdm(todo, desc="trials", disable=not progress) for row in run_trial(t)])


# ---------------------------------------------------------------------------------------------- evaluation
def correct(row: dict, max_delay_iterations: float | None = None) -> bool:
    """Whether a trial's finding names its fault: the class and the culprit (the rank; for ``slow_pair`` and
    ``comm_hang`` the connection rank -> peer), and, when ``max_delay_iterations`` is given, within that many
    iterations of the onset."""
    if row["found"] != row["kind"]:
        return False
    if max_delay_iterations is not None and not row["delay_iterations"] <= max_delay_iterations:
        return False
    if row["kind"] in ("slow_pair", "comm_hang"):
        return row["found_connection"] == f"{row['rank']}-{row['peer']}"
    return row["found_ranks"] == str(row["rank"])


def localisation(frame: pd.DataFrame, max_delay_iterations: dict[str, float] | None = None) -> pd.DataFrame:
    """Per fault class: trials, recall (share of its trials found with the right class and culprit, within
    ``max_delay_iterations[kind]`` iterations where given), precision (share of findings of that class, over every
    trial and healthy run, that were right), the median and largest delay in iterations and the median in seconds
    of the right findings."""
    lim = max_delay_iterations or {}
    f = frame.assign(ok=[correct(r, lim.get(r["kind"])) for r in frame.to_dict("records")])
    rows = []
    for k in KINDS:
        mine, claimed = f[f["kind"] == k], f[f["found"] == k]
        hits = mine[mine["ok"]]
        rows.append({"kind": k, "trials": len(mine), "recall": len(hits) / max(len(mine), 1),
                     "precision": claimed["ok"].mean() if len(claimed) else math.nan,
                     "delay_iterations_median": hits["delay_iterations"].median(),
                     "delay_s_median": hits["delay_s"].median(), "delay_iterations_max": hits["delay_iterations"].max()})
    return pd.DataFrame(rows).set_index("kind")


def confusion(frame: pd.DataFrame) -> pd.DataFrame:
    """Injected class (rows, with ``healthy``) against the detector's first finding (columns, with ``none``)."""
    t = pd.crosstab(frame["kind"], frame["found"])
    cols = [*KINDS, *sorted(set(t.columns) - {*KINDS, "none"}), "none"]
    return t.reindex(index=["healthy", *KINDS], columns=cols, fill_value=0)


def false_alarm_rate(frame: pd.DataFrame) -> tuple[int, int]:
    """(false alarms, judged healthy iterations) over every run: alarms before a fault's onset or in a healthy run,
    iterations in which the detector could raise one."""
    return int(frame["false_alarms"].sum()), int(frame["judged_iterations"].sum())


def precision_units(frame: pd.DataFrame) -> list[float]:
    """One unit per finding over every run: 0 for each false alarm, and for a trial with a fault whose job
    produced a finding after the onset, 1 when it names the fault (class and culprit), else 0."""
    out: list[float] = []
    for r in frame.to_dict("records"):
        out += [0.0] * int(r["false_alarms"])
        if r["kind"] != "healthy" and r["found"] != "none":
            out.append(float(correct(r)))
    return out
