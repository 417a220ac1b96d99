"""Training, evaluation and measurement helpers for the PICASSO notebook.

:func:`make_optimizers` pairs a stage with its embedding optimizer (sparse SGD; the cached stage's
write-through SGD); the dense part uses Adam. :func:`train` runs seeded steps on a generator's batches
(same batches for every variant), :func:`auc` is the Mann-Whitney AUC, :func:`stage_breakdown` times the
stages of a step and :func:`count_ops` counts operators per step with ``torch.profiler`` (on CPU the
per-operator dispatch cost plays the part of GPU kernel-launch overhead, the cost packing removes).
"""

from __future__ import annotations

import os
import statistics
from collections import Counter
from typing import Any

import torch

from ..progress import tqdm
from .cache import CachedEmbedding, CachedSGD
from .data import Batch, ClickLogGenerator, validate_batch
from .embedding import SparseSGD
from .interleave import Optimizers, Timeline, train_step
from .models import RecModel

EMB_LR, DENSE_LR = 0.05, 1e-3


def make_optimizers(model: RecModel, emb_lr: float = EMB_LR, dense_lr: float = DENSE_LR) -> Optimizers:
    """Sparse SGD (:class:`~repro.picasso.embedding.SparseSGD`) over the embedding tables (working-set SGD for a cached stage; none for a stage whose
    optimizer is fused into backward, ``stage.fused_optimizer``) and Adam over the dense parameters."""
    stage = model.emb
    if isinstance(stage, CachedEmbedding):
        emb: Any = CachedSGD(stage, emb_lr)
    elif getattr(stage, "fused_optimizer", False):
        emb = None
    else:
        emb = SparseSGD(stage.sparse_parameters(), lr=emb_lr)
    return Optimizers(emb, torch.optim.Adam(model.dense_parameters(), lr=dense_lr))


def _quiet() -> bool:
    return bool(os.environ.get("PAPERMILL_EXECUTION") or os.environ.get("REPRO_QUIET"))


def train(model: RecModel, gen: ClickLogGenerator, steps: int, batch_size: int, *, micro_batches: int = 1,
          interleave: bool = False, opt: Optimizers | None = None, progress: bool = True,
          validate: bool = True) -> list[float]:
    """Train ``steps`` steps on generator batches ``0 .. steps-1``; returns the loss per step."""
    opt = opt or make_optimizers(model)
    losses = []
    for i in tqdm(range(steps), desc=f"train {model.emb.kind}", disable=not progress or _quiet(), leave=False):
        b = gen.batch(i, batch_size)
        if validate:
            validate_batch(b, model.schema)
        losses.append(train_step(model, opt, b, micro_batches=micro_batches, interleave=interleave))
    return losses


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (average ranks for ties)."""
    s = scores.detach().double().flatten().cpu()
    y = labels.detach().flatten().cpu() > 0.5
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both positive and negative labels")
    uniq, inv, counts = torch.unique(s, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    avg_rank = ends - (counts.double() - 1) / 2  # 1-based average rank of each distinct score
    r = avg_rank[inv]
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@torch.no_grad()
def evaluate_auc(model: RecModel, batches: list[Batch]) -> float:
    scores = torch.cat([model(b) for b in batches])
    return auc(scores, torch.cat([b.labels for b in batches]))


def stage_breakdown(model: RecModel, opt: Optimizers, batches: list[Batch], *, micro_batches: int = 1,
                    interleave: bool = False, warmup: int = 1) -> dict[str, float]:
    """Median seconds per step spent in each stage (embedding forward, dense forward+backward, embedding
    backward, optimizer) and in the whole step, over ``batches`` (the first ``warmup`` not counted)."""
    per_stage: dict[str, list[float]] = {}
    for i, b in enumerate(batches):
        tl = Timeline(sync=True)
        train_step(model, opt, b, micro_batches=micro_batches, interleave=interleave, timeline=tl)
        if i < warmup:
            continue
        tot = Counter()
        for e in tl.events:
            tot[e["stage"]] += e["end"] - e["start"]
        tot["step"] = max(e["end"] for e in tl.events) - min(e["start"] for e in tl.events)
        for k, v in tot.items():
            per_stage.setdefault(k, []).append(v)
    return {k: statistics.median(v) for k, v in per_stage.items()}


def count_ops(fn) -> dict[str, int]:
    """Operator calls made by ``fn()`` (one training step), from ``torch.profiler``: ``aten_ops`` (every
    ATen operator, nested ones included), ``emb_ops`` (operators with "embedding" in the name, forward and
    backward, FBGEMM's included) and ``emb_lookups`` (top-level forward lookup calls)."""
    from torch.profiler import ProfilerActivity, profile

    os.environ.setdefault("KINETO_LOG_LEVEL", "6")  # the profiler's start/stop lines on stderr, per call
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    names = [e.name for e in prof.events()]
    lookups = 0
    for e in prof.events():  # FBGEMM lookups: top-level only
        if e.cpu_parent is None or not (e.cpu_parent.name.startswith("aten::")
                                        or e.cpu_parent.name.startswith("fbgemm::")):
            if e.name.startswith("fbgemm::") and "embedding" in e.name and "backward" not in e.name:
                lookups += 1
    lookups += sum(n in ("aten::embedding_bag", "aten::embedding") for n in names)
    return {"aten_ops": sum(n.startswith("aten::") for n in names),
            "emb_ops": sum("embedding" in n for n in names), "emb_lookups": lookups}
