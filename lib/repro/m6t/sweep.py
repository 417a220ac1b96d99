"""Notebook 05's runs: small MoE language models trained on the workbook's corpora.

One :class:`MoERun` trains one model (:class:`repro.nn.moe.MoEGPT`, or the dense :class:`repro.nn.gpt.GPT`) on a
uniform mixture of the seven corpora (general and the six domains) and evaluates it along the way: the mean of the
seven validation losses with the training capacity applied (``val_loss``; evaluation batches hold one corpus
each, so their routing is more skewed than training's mixed batches: ``eval_dropped`` is the share of choices
dropped there), and the routing statistics of the training batches since the previous evaluation (expert load
CV, max/mean, normalised entropy per routing group, dropped share, balance loss per layer and group), averaged
over the MoE layers. The final model is evaluated once more without capacity (``val_loss_nodrop``: nothing
dropped, so every routing is causal and the evaluation's skew does not count). Every run of one seed sees the
same batches (the sampler's seed is the run's seed) and starts from its own initialisation.

The configurations (:data:`CONFIGS`, M6-T's comparisons; card section 7): a dense FFN of one expert's width (the
active parameters of top-1), top-1 at capacity factor 1 and 2 (the 2x capacity control separates C from k), top-2,
2 top-1 prototypes, top-4 and 4 top-1 (E = 16), experts all of the dense FFN's width, so top-k and k top-1 do the
same work and k times top-1's; each with the balance loss (lambda = 0.01) and without (0). The matched-compute
configurations shrink the experts to ``d_ff / k``, so that top-2, 2 top-1, top-4 and 4 top-1 do top-1's work.

The sweeps (``python -m repro runs NAME``; tables in ``data/m6t/``):

* ``m6t/grid``: the seven configurations x lambda x 5 seeds at width 64 (E = 16), 800 steps of 1,024 tokens;
* ``m6t/width``: top-2, 2 top-1, top-4, 4 top-1 with the balance loss at width 128, 5 seeds, the same steps
  (with the grid's width-64 runs: the "larger model" comparison);
* ``m6t/matched``: the four matched-compute configurations with the balance loss at width 64, 5 seeds;
* ``m6t/full``: the same comparisons at larger sizes on a GPU (``device="cuda"``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import paths, runs

__all__ = ["CONFIGS", "COLUMNS", "SWEEPS", "MoERun", "perform_run", "specs", "sweep", "smoke_sweep", "retrain",
           "RETRAIN_RTOL"]

CORPORA = ("general", "code", "math", "law", "medicine", "music", "chemistry")
# name: (routing, k, capacity factor, expert width as a share of d_ff); routing "dense" is the plain GPT. The "-half"
# and "-quarter" configs have experts of d_ff / k: every such model has top-1's (and dense's) active parameters.
CONFIGS = {"dense": ("dense", 0, 0.0, 1.0), "top1": ("topk", 1, 1.0, 1.0), "top1-cf2": ("topk", 1, 2.0, 1.0),
           "top2": ("topk", 2, 1.0, 1.0), "2top1": ("prototypes", 2, 1.0, 1.0), "top4": ("topk", 4, 1.0, 1.0),
           "4top1": ("prototypes", 4, 1.0, 1.0), "top2-half": ("topk", 2, 1.0, 0.5),
           "2top1-half": ("prototypes", 2, 1.0, 0.5), "top4-quarter": ("topk", 4, 1.0, 0.25),
           "4top1-quarter": ("prototypes", 4, 1.0, 0.25)}
GRID_CONFIGS = ("dense", "top1", "top1-cf2", "top2", "2top1", "top4", "4top1")
MATCHED_CONFIGS = ("top2-half", "2top1-half", "top4-quarter", "4top1-quarter")
LAMBDAS = (0.01, 0.0)
SEEDS = (0, 1, 2, 3, 4)
WIDTH_CONFIGS = ("top2", "2top1", "top4", "4top1")
COLUMNS = {"run": str, "config": str, "routing": str, "k": int, "cf": float, "lam": float, "d_model": int,
           "d_expert": int, "seed": int, "step": int, "tokens": int, "val_loss": float, "val_loss_nodrop": float,
           "eval_dropped": float, "train_ce": float, "aux": float, "cv": float, "max_mean": float, "entropy": float,
           "dropped": float, "active_params": int, "total_params": int, "wall_s": float}
SWEEPS = ("m6t/grid", "m6t/width", "m6t/matched", "m6t/full")
RETRAIN_RTOL = runs.RETRAIN_RTOL


@dataclass(frozen=True)
class MoERun:
    """Everything that decides one run's numbers: the configuration name (:data:`CONFIGS`), balance coefficient
    ``lam``, model shape (``n_layer`` blocks of width ``d_model``, ``d_ff = 2 d_model``, experts of the same width,
    an MoE layer in every other block), ``n_expert`` E, seed, training (``steps`` updates of ``batch_size`` x
    ``context`` tokens: one routing group per step; cosine schedule from ``lr`` to ``lr / 10`` after
    ``warmup_steps``), ``eval_steps`` with ``eval_batches`` batches per corpus, the token profile and device.
    Raises ``ValueError`` naming the field for an unknown config, a negative ``lam`` or a bad size."""

    config: str
    lam: float = 0.01
    d_model: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_expert: int = 16
    seed: int = 0
    steps: int = 800
    batch_size: int = 16
    context: int = 64
    lr: float = 3e-3
    warmup_steps: int = 40
    eval_steps: tuple[int, ...] = (0, 50, 100, 200, 400, 600, 800)
    eval_batches: int = 4
    token_profile: str = "default"
    device: str = "cpu"
    num_cpus: int = 1

    def __post_init__(self) -> None:
        if self.config not in CONFIGS:
            raise ValueError(f"config must be one of {list(CONFIGS)}, got {self.config!r}")
        if isinstance(self.lam, bool) or not isinstance(self.lam, int | float) or not self.lam >= 0:
            raise ValueError(f"lam must be a number of at least 0, got {self.lam!r}")
        for name in ("d_model", "n_layer", "n_head", "n_expert", "steps", "batch_size", "context", "eval_batches"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if any(not 0 <= s <= self.steps for s in self.eval_steps):
            raise ValueError(f"eval_steps must lie in [0, steps={self.steps}], got {self.eval_steps!r}")
        if list(self.eval_steps) != sorted(set(self.eval_steps)) or self.eval_steps[-1:] != (self.steps,):
            raise ValueError(f"eval_steps must be increasing and end at steps={self.steps} (the final evaluation), "
                             f"got {self.eval_steps!r}")
        if not math.isfinite(self.lam):
            raise ValueError(f"lam must be finite, got {self.lam!r}")
        if self.d_model % self.n_head:
            raise ValueError(f"n_head={self.n_head} must divide d_model={self.d_model}")

    @property
    def label(self) -> str:
        lam = "" if self.lam or self.config == "dense" else "-nobal"
        return f"{self.config}{lam}/d{self.d_model}/s{self.seed}"

    @property
    def routing(self) -> tuple[str, int, float, float]:
        """``(routing, k, capacity factor, expert width / d_ff)`` of the configuration."""
        return CONFIGS[self.config]


def build_model(run: MoERun, vocab: int):
    """The run's model, initialised from ``torch.manual_seed(run.seed)``: a GPT, or an MoEGPT for a sparse config."""
    import torch

    from ..nn.gpt import GPT, GPTConfig
    from ..nn.moe import MoEConfig, MoEGPT

    torch.manual_seed(run.seed)
    cfg = GPTConfig(vocab_size=vocab, context=run.context, n_layer=run.n_layer, n_head=run.n_head,
                    d_model=run.d_model, d_ff=2 * run.d_model)
    routing, k, cf, share = run.routing
    if routing == "dense":
        return GPT(cfg)
    return MoEGPT(cfg, MoEConfig(n_expert=run.n_expert, k=k, routing=routing, capacity_factor=cf,
                                 balance_coef=float(run.lam), d_expert=max(1, round(share * cfg.d_ff))))


def train_run(run: MoERun, load, vocab: int) -> list[dict[str, Any]]:
    """Train one run on the tokens ``load(corpus, split)`` gives; its table rows (one per evaluation step)."""
    import numpy as np

    from ..data.sampler import DomainSampler
    from ..nn.moe import MoEGPT
    from ..train import TrainConfig, evaluate, train

    t0 = time.perf_counter()
    model = build_model(run, vocab)
    sparse = isinstance(model, MoEGPT)
    sampler = DomainSampler({c: load(c, "train") for c in CORPORA}, run.context, run.batch_size, seed=run.seed)
    val = {c: load(c, "validation") for c in CORPORA}
    cfg = TrainConfig(max_steps=run.steps, lr=run.lr, min_lr=run.lr / 10, warmup_steps=run.warmup_steps,
                      schedule="cosine", eval_steps=run.eval_steps, eval_batches=run.eval_batches,
                      device=run.device, seed=run.seed, progress=False)
    interval: dict[str, list[float]] = {"ce": [], "aux": []}  # per step: CE, balance loss per layer and group
    stats: dict[int, dict[str, float]] = {}

    def on_step(step: int, rec: dict, state: dict) -> None:  # the CE without the balance term, per layer L_aux
        interval["ce"].append(float(model.last_ce) if sparse else rec["train_loss"])
        interval["aux"].append(float(model.last_aux) / len(model.moe_layers()) / model.moe_cfg.groups if sparse
                               else math.nan)

    def on_eval(step: int, losses: dict, state: dict) -> None:  # load of the training steps since the last one
        if not sparse:
            return
        layers = model.moe_layers()
        stats[step] = {"eval_dropped": sum(m.eval_dropped for m in layers) / sum(m.eval_choices for m in layers)}
        if step:
            per_layer = [m.stats().summary() for m in layers]
            stats[step].update({key: float(np.mean([s[key] for s in per_layer])) for key in per_layer[0]})
        for m in layers:
            m.reset_stats()

    history = train(model, sampler, cfg, val_tokens=val, on_eval=on_eval, on_step=on_step)
    nodrop = math.nan
    if sparse:  # the final model once more, routed without capacity (nothing dropped; causal for every routing)
        model.set_drop_at_eval(False)
        nodrop = float(np.mean(list(evaluate(model, val, run.context, run.batch_size, run.eval_batches).values())))
    routing, k, cf, _ = run.routing
    d_expert = model.moe_layers()[0].d_expert if sparse else 2 * run.d_model
    active = model.active_params() if sparse else model.num_params(True)
    rows, nan = [], math.nan
    for h in history:
        if "val" not in h:
            continue
        s = stats.get(h["step"], {})
        since = max([e for e in run.eval_steps if e < h["step"]], default=0)
        ce, aux = interval["ce"][since:h["step"]], interval["aux"][since:h["step"]]  # steps since+1 .. step
        last = h["step"] == run.eval_steps[-1]
        rows.append({"config": run.config, "routing": routing, "k": k, "cf": cf, "lam": float(run.lam),
                     "d_model": run.d_model, "d_expert": d_expert, "seed": run.seed, "step": h["step"],
                     "tokens": h["tokens"], "val_loss": float(np.mean(list(h["val"].values()))),
                     "val_loss_nodrop": nodrop if last else nan, "eval_dropped": s.get("eval_dropped", nan),
                     "train_ce": float(np.mean(ce)) if ce else nan, "aux": float(np.mean(aux)) if aux else nan,
                     "cv": s.get("cv", nan),
                     "max_mean": s.get("max_mean", nan), "entropy": s.get("entropy", nan),
                     "dropped": s.get("dropped", nan), "active_params": active,
                     "total_params": model.num_params(True), "wall_s": 0.0})
    wall = time.perf_counter() - t0
    for r in rows:
        r["wall_s"] = wall
    return rows


def perform_run(run: MoERun) -> list[dict[str, Any]]:
    """One run of a sweep wherever an executor puts it, on the workbook's tokens (the run's token profile)."""
    import functools

    from ..data import load_tokens, vocab_size

    return train_run(run, functools.partial(load_tokens, profile=run.token_profile), vocab_size())


# ------------------------------------------------------------------------------------------------- sweeps
_FULL = dict(d_model=256, n_layer=8, n_head=8, n_expert=16, steps=6000, batch_size=64, context=128, lr=1e-3,
             warmup_steps=200, eval_steps=(0, 250, 500, 1000, 2000, 3000, 4000, 5000, 6000), eval_batches=16,
             token_profile="default")


def specs(name: str, device: str = "cpu") -> list[MoERun]:
    """The runs of sweep ``name`` (:data:`SWEEPS`) on ``device``; ``ValueError`` naming ``name`` else."""
    if name == "m6t/grid":
        return [MoERun(c, lam, seed=s, device=device) for s in SEEDS for c in GRID_CONFIGS
                for lam in (LAMBDAS if c != "dense" else (0.0,))]
    if name == "m6t/width":
        return [MoERun(c, 0.01, d_model=128, seed=s, device=device) for s in SEEDS for c in WIDTH_CONFIGS]
    if name == "m6t/matched":
        return [MoERun(c, 0.01, seed=s, device=device) for s in SEEDS for c in MATCHED_CONFIGS]
    if name == "m6t/full":
        base = [MoERun(c, lam, seed=s, device=device, **_FULL) for s in SEEDS for c in GRID_CONFIGS + MATCHED_CONFIGS
                for lam in (LAMBDAS if c in GRID_CONFIGS[1:] else (0.0,) if c == "dense" else (0.01,))]
        wide = [replace(r, d_model=512, n_head=8) for r in base if r.config in WIDTH_CONFIGS and r.lam]
        return base + wide
    raise ValueError(f"name: unknown M6-T sweep {name!r} (valid: {', '.join(SWEEPS)})")


# the smoke profile's runs: every configuration once, tiny, on the smoke corpora (seconds each)
SMOKE = dict(d_model=32, n_layer=2, n_head=2, n_expert=8, steps=20, batch_size=8, context=32, warmup_steps=2,
             eval_steps=(0, 10, 20), eval_batches=1, token_profile="smoke")


def smoke_sweep(folder: str | os.PathLike, seeds: Sequence[int] = (0,)) -> runs.Sweep:
    """The smoke profile's sweep, its table at ``folder/m6t-smoke``: every configuration and lambda at width 32 and
    the width configurations at 48, the matched-compute ones at 32 (E = 8, 2 blocks, 20 steps), for ``seeds``; trained
    live in seconds."""
    base = [MoERun(c, lam, seed=s, **SMOKE) for s in seeds for c in GRID_CONFIGS
            for lam in (LAMBDAS if c != "dense" else (0.0,))]
    wide = [replace(r, d_model=48) for r in base if r.config in WIDTH_CONFIGS and r.lam]
    matched = [MoERun(c, 0.01, seed=s, **SMOKE) for s in seeds for c in MATCHED_CONFIGS]
    return runs.Sweep("m6t/smoke", Path(folder) / "m6t-smoke", tuple(base + wide + matched), perform_run, COLUMNS)


def sweep(name: str, device: str = "cpu") -> runs.Sweep:
    """The sweep ``name`` of :data:`SWEEPS` on ``device``, its table at ``data/<name>``."""
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return runs.Sweep(name, paths.DATA / name, tuple(specs(name, device)), perform_run, COLUMNS)


def retrain(name: str, rid: str, threads: int | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Re-train the stored run ``rid`` (id or label) of the table of sweep ``name`` from scratch; returns
    ``(rows, stored_rows)``. ``threads``: torch threads (default: what the run recorded). Compare with
    :data:`RETRAIN_RTOL` across machines. Raises ``ValueError`` naming ``rid`` for a run the table does not hold."""
    import torch

    table = runs.Table.load(paths.DATA / name, COLUMNS)
    rid = table.find(rid)
    info = table.meta["runs"][rid]
    spec = info["spec"]
    run = MoERun(**{**spec, "eval_steps": tuple(spec["eval_steps"])})
    threads = threads or (info.get("machine") or {}).get("threads") or 1
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rows = perform_run(run)
    finally:
        torch.set_num_threads(before)
    return rows, [r for r in table.rows if r["run"] == rid]
