"""Notebook 06's runs: pre-training with each set of proxy tasks, then retrieval and the linear probe.

One :class:`VictorRun` pre-trains a query network on the rendered training pairs (:mod:`.data`) with one
configuration of :data:`repro.victor.pretrain.TASK_SETS` and evaluates it (:func:`repro.victor.pretrain.evaluate`).
Its rows (long format, :data:`COLUMNS`): ``loss`` rows (the mean loss of each task over every ``log_every``
steps), ``retrieval`` rows (R@k per gallery, direction and scoring), a ``probe`` row (the first event's action
from pooled video features) and ``cost`` rows (``train_s``, ``train_cpu_s``, ``samples_per_s``, ``eval_s``).

Every run of a seed sees the same batches and starts from the same initialisation (for the parameters all its
configurations share). "Equal compute" between configurations means equal steps of equal batches: the notebook
reports the measured CPU time of each, since the tasks differ in their cost per step.

The sweeps (``python -m repro runs NAME [--jobs 2]``; tables in ``data/victor/``):

* ``victor/ablation``: the ladder {MLM}, {+binary match head}, {+dual contrastive alignment}, {+intra/inter-MFM},
  {+sentence and frame order} (``mlm``, ``mlm+bin``, ``mlm+vsa``, ``mlm+vsa+mfm``, ``all``), 2,000 steps each,
  and MLM alone for :data:`MLM_MATCHED_STEPS` steps ({MLM + VSA + MFM}'s CPU time), 3 seeds;
* ``victor/queue``: {MLM + dual-VSA} with visual and textual queues of 128 and 4,096 keys, and momentum 0.9 (the
  ablation's runs hold the default, 1,024 keys and 0.995), 3 seeds;
* ``victor/full``: the same comparisons at larger sizes on a GPU (``device="cuda"``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import paths, runs
from .pretrain import TASK_SETS

__all__ = ["VictorRun", "COLUMNS", "SWEEPS", "SEEDS", "CONFIGS", "perform_run", "specs", "sweep", "smoke_sweep",
           "retrain"]

CONFIGS = tuple(TASK_SETS)
SEEDS = (0, 1, 2)
QUEUES = (128, 4096)
MOMENTA = (0.9,)
STEPS = 2000  # every configuration's steps
# MLM alone at {MLM + VSA + MFM}'s compute: its 2,000 steps took 244 s of CPU against MLM's 167 s (seed 0's runs,
# one thread, Intel Xeon AVX-512), so MLM gets 2,000 x 244 / 167 = 2,922 steps, rounded down
MLM_MATCHED_STEPS = 2900
SWEEPS = ("victor/ablation", "victor/queue", "victor/full")
COLUMNS = {"run": str, "config": str, "seed": int, "queue": int, "momentum": float, "steps": int, "kind": str,
           "step": int, "task": str, "gallery": str, "direction": str, "scoring": str, "k": int, "value": float,
           "wall_s": float}


@dataclass(frozen=True)
class VictorRun:
    """Everything that decides one run's numbers: the task set ``config`` (:data:`CONFIGS`), ``seed``; training
    (``steps`` of ``batch_size`` pairs, ``lr``, ``tau``, key ``momentum``, ``queue`` keys in the visual and the
    textual queue, ``frames_queue`` frame keys); the networks (width ``d_model``, ``n_layer`` layers in each of
    the text, video and cross-modal Transformers); the data profile (``smoke`` or ``default``), the number of
    training pairs that fit the linear retrieval maps and the probe (``n_fit``), ``device``. Raises
    ``ValueError`` naming the field."""

    config: str
    seed: int = 0
    steps: int = STEPS
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    tau: float = 0.07
    momentum: float = 0.995
    queue: int = 1024
    frames_queue: int = 4096
    d_model: int = 64
    n_layer: int = 2
    n_head: int = 4
    log_every: int = 50
    n_fit: int = 2048
    data_profile: str = "default"
    device: str = "cpu"
    num_cpus: int = 1

    def __post_init__(self) -> None:
        if self.config not in TASK_SETS:
            raise ValueError(f"config must be one of {list(TASK_SETS)}, got {self.config!r}")
        if self.data_profile not in ("smoke", "default"):
            raise ValueError(f"data_profile must be 'smoke' or 'default', got {self.data_profile!r}")
        for name in ("seed", "n_fit", "d_model", "n_layer", "n_head"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "seed" else 1):
                raise ValueError(f"{name} must be a {'non-negative' if name == 'seed' else 'positive'} integer, "
                                 f"got {v!r}")
        if isinstance(self.queue, int) and isinstance(self.batch_size, int) and self.queue < self.batch_size:
            raise ValueError(f"queue={self.queue} is smaller than the batch (batch_size={self.batch_size}): the visual "
                             "and textual queues must hold at least one batch of keys")
        if "inter_mfm" in TASK_SETS[self.config] and isinstance(self.frames_queue, int) and \
                isinstance(self.batch_size, int) and self.frames_queue < 12 * self.batch_size:
            raise ValueError(f"frames_queue={self.frames_queue} is smaller than one step's frame keys (batch_size x 12 "
                             f"frames = {12 * self.batch_size})")
        self.pretrain_config()  # the rest is checked there, naming its field

    @property
    def label(self) -> str:
        """``config/q<queue>/m<momentum>/s<seed>``, then ``/n<steps>`` where the steps differ from :data:`STEPS`."""
        steps = f"/n{self.steps}" if self.steps != STEPS else ""
        return f"{self.config}/q{self.queue}/m{self.momentum}/s{self.seed}{steps}"

    def pretrain_config(self):
        from .pretrain import PretrainConfig

        return PretrainConfig(tasks=TASK_SETS[self.config], steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                              warmup_steps=self.warmup_steps, tau=self.tau, momentum=self.momentum,
                              frames_queue=self.frames_queue, visual_queue=self.queue, textual_queue=self.queue,
                              log_every=self.log_every, device=self.device, seed=self.seed)

    def net_config(self, vocab_size: int):
        from .data import SIZE, T
        from .model import VictorConfig

        return VictorConfig(vocab_size=vocab_size, frames=T, frame_size=SIZE, d_model=self.d_model,
                            n_head=self.n_head, d_ff=4 * self.d_model, n_text=self.n_layer, n_video=self.n_layer,
                            n_cross=self.n_layer, d_proj=self.d_model)


def perform_run(run: VictorRun, progress: bool = False) -> list[dict[str, Any]]:
    """Pre-train and evaluate one run; its table rows (:data:`COLUMNS` but ``run``)."""
    from . import data as vd
    from .pretrain import evaluate, pretrain

    t0 = time.perf_counter()
    train = vd.load_split("train", run.data_profile)
    vocab = vd.load_vocab(run.data_profile)
    galleries = {s: vd.load_split(s, run.data_profile) for s in ("heldout", "hard", "random")}
    net, curve, cost = pretrain(train, vocab, run.net_config(len(vocab)), run.pretrain_config(), progress=progress)
    t1 = time.perf_counter()
    ev = evaluate(net, vocab, galleries, train, head=run.config == "mlm+bin", seed=run.seed, n_fit=run.n_fit)
    cost["eval_s"] = time.perf_counter() - t1
    base = {"config": run.config, "seed": run.seed, "queue": run.queue, "momentum": float(run.momentum),
            "steps": run.steps}
    blank = {"gallery": "-", "direction": "-", "scoring": "-", "k": 0}
    rows = [{**base, "kind": "loss", "step": c["step"], "task": t, **blank, "value": v}
            for c in curve for t, v in c.items() if t != "step"]
    rows += [{**base, "kind": r["kind"], "step": run.steps, "task": "-",
              **{k: r[k] for k in ("gallery", "direction", "scoring", "k", "value")}} for r in ev]
    rows += [{**base, "kind": "cost", "step": run.steps, "task": k, **blank, "value": v} for k, v in cost.items()]
    wall = time.perf_counter() - t0
    return [{**r, "wall_s": wall} for r in rows]


# ------------------------------------------------------------------------------------------------- sweeps
_FULL = dict(steps=20000, batch_size=128, lr=3e-4, warmup_steps=1000, queue=2048, frames_queue=32768, d_model=256,
             n_layer=4, n_head=8, log_every=200, n_fit=4096)


def specs(name: str, device: str = "cpu") -> list[VictorRun]:
    """The runs of sweep ``name`` (:data:`SWEEPS`) on ``device``; ``ValueError`` naming ``name`` else."""
    if name == "victor/ablation":
        return ([VictorRun(c, seed=s, device=device) for s in SEEDS for c in CONFIGS]
                + [VictorRun("mlm", seed=s, steps=MLM_MATCHED_STEPS, device=device) for s in SEEDS])
    if name == "victor/queue":
        return ([VictorRun("mlm+vsa", seed=s, queue=q, device=device) for s in SEEDS for q in QUEUES]
                + [VictorRun("mlm+vsa", seed=s, momentum=m, device=device) for s in SEEDS for m in MOMENTA])
    if name == "victor/full":
        base = [VictorRun(c, seed=s, device=device, **_FULL) for s in SEEDS for c in CONFIGS]
        matched = [replace(r, steps=round(r.steps * MLM_MATCHED_STEPS / STEPS)) for r in base if r.config == "mlm"]
        return base + matched + [replace(r, queue=q) for r in base if r.config == "mlm+vsa" for q in (256, 4096)]
    raise ValueError(f"name: unknown VICTOR sweep {name!r} (valid: {', '.join(SWEEPS)})")


# the smoke profile's runs: every configuration and one queue setting, tiny, on the smoke videos (seconds each)
SMOKE = dict(steps=12, batch_size=8, warmup_steps=2, queue=16, frames_queue=128, d_model=32, n_layer=1, n_head=2,
             log_every=4, n_fit=128, data_profile="smoke")


def smoke_sweep(folder: str | os.PathLike, seeds: Sequence[int] = (0,)) -> runs.Sweep:
    """The smoke profile's sweep, its table at ``folder/victor-smoke``: every configuration, MLM for 18 steps, and
    {MLM + dual-VSA} with queues of 8 and 64 keys, tiny (12 steps of 8 pairs, width 32), for ``seeds``; trained live
    in seconds."""
    base = [VictorRun(c, seed=s, **SMOKE) for s in seeds for c in CONFIGS]
    matched = [replace(r, steps=18) for r in base if r.config == "mlm"]
    queue = [replace(r, queue=q) for r in base if r.config == "mlm+vsa" for q in (8, 64)]
    return runs.Sweep("victor/smoke", Path(folder) / "victor-smoke", tuple(base + matched + queue), perform_run,
                      COLUMNS)


def sweep(name: str, device: str = "cpu") -> runs.Sweep:
    """The sweep ``name`` of :data:`SWEEPS` on ``device``, its table at ``data/<name>``."""
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return runs.Sweep(name, paths.DATA / name, tuple(specs(name, device)), perform_run, COLUMNS)


def retrain(name: str, rid: str, threads: int | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Re-run the stored run ``rid`` (id or label) of sweep ``name`` from scratch; returns ``(rows, stored_rows)``.
    ``threads``: torch threads (default: what the run recorded). Raises ``ValueError`` naming ``rid`` for a run
    the table does not hold."""
    import torch

    table = runs.Table.load(paths.DATA / name, COLUMNS)
    rid = table.find(rid)
    info = table.meta["runs"][rid]
    run = VictorRun(**info["spec"])
    threads = threads or (info.get("machine") or {}).get("threads") or 1
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rows = perform_run(run)
    finally:
        torch.set_num_threads(before)
    return rows, [r for r in table.rows if r["run"] == rid]
