"""Training the PICASSO models: optimizers, one training step, the training loop, AUC.

:func:`make_optimizers` pairs a stage with its embedding optimizer (sparse SGD; the cached stage's
write-through SGD) and Adam for the dense part. :func:`train_step` is one step: zero the gradients, split
the batch into micro-batches, run their forward and backward passes (sequential or interleaved,
:func:`~repro.picasso.interleave.run_micro_batches`, PICASSO §IV "Interleaving"), one optimizer update.
:func:`train` runs seeded steps on a generator's batches (the same batches for every variant);
:func:`auc` is the Mann-Whitney AUC and :func:`evaluate_auc` a model's AUC on held-out batches.

Layer: depends on :mod:`.data`, :mod:`.optim`, :mod:`.cache`, :mod:`.models` and :mod:`.interleave`;
:mod:`.measure` builds on it.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from ..progress import tqdm
from .cache import CachedEmbedding, CachedSGD
from .data import Batch, ClickLogGenerator, split_batch, validate_batch
from .interleave import SparseGradParts, Timeline, run_micro_batches, stage_span
from .models import RecModel
from .optim import Optimizers, SparseSGD

EMB_LR, DENSE_LR = 0.05, 1e-3


def make_optimizers(model: RecModel, emb_lr: float = EMB_LR, dense_lr: float = DENSE_LR) -> Optimizers:
    """Sparse SGD (:class:`~repro.picasso.optim.SparseSGD`, learning rate ``emb_lr``) over the embedding
    tables (working-set SGD for a cached stage, :class:`~repro.picasso.cache.CachedSGD`; none for a stage
    whose optimizer is fused into backward, ``stage.fused_optimizer``) and Adam (``dense_lr``) over the
    dense parameters. Raises ``ValueError`` if ``emb_lr <= 0``."""
    stage = model.emb
    if isinstance(stage, CachedEmbedding):
        emb: Any = CachedSGD(stage, emb_lr)
    elif getattr(stage, "fused_optimizer", False):
        emb = None
    else:
        emb = SparseSGD(stage.sparse_parameters(), lr=emb_lr)
    return Optimizers(emb, torch.optim.Adam(model.dense_parameters(), lr=dense_lr))


def train_step(model: RecModel, opt: Optimizers, batch: Batch, *, micro_batches: int = 1,
               interleave: bool = False, timeline: Timeline | None = None) -> float:
    """One training step (forward, backward, optimizer) over ``batch`` (``B`` samples); returns the batch's
    mean binary cross-entropy (a float, nats per sample).

    ``micro_batches`` = ``m`` > 1 splits the batch into ``m`` micro-batches of consecutive samples and
    accumulates their gradients (equal to the whole batch's); ``interleave`` runs the embedding forward of
    micro-batch ``i + 1`` concurrently with the dense stage of micro-batch ``i`` (PICASSO §IV
    "Interleaving", :func:`~repro.picasso.interleave.run_micro_batches`). ``timeline`` records each stage's
    span. Raises ``ValueError`` if ``m`` is not in ``[1, B]``, and :class:`~repro.picasso.data.BatchError`
    (a ``ValueError`` naming the field, the ID and the range) for an ID outside its field's vocabulary; a
    step that fails in any micro-batch drops its partial gradients and updates nothing.
    """
    opt.zero_grad()
    mbs = split_batch(batch, micro_batches)  # m x Batch of ~B/m samples
    sparse = SparseGradParts(model.emb.sparse_parameters()) if micro_batches > 1 else None
    try:
        losses = run_micro_batches(model, mbs, batch.batch_size, interleave=interleave, timeline=timeline,
                                   sparse=sparse)
    except BaseException:
        opt.zero_grad()  # no partial step: earlier micro-batches' gradients (and a cache's working sets) go
        raise
    with stage_span(timeline, micro_batches - 1, "optimizer", batch.ids.device):
        if sparse is not None:
            sparse.join()
        opt.step()
    return float(torch.stack(losses).sum())


def _quiet() -> bool:
    return bool(os.environ.get("PAPERMILL_EXECUTION") or os.environ.get("REPRO_QUIET"))


def train(model: RecModel, gen: ClickLogGenerator, steps: int, batch_size: int, *, micro_batches: int = 1,
          interleave: bool = False, opt: Optimizers | None = None, progress: bool = True,
          validate: bool = True) -> list[float]:
    """Train ``steps`` steps (:func:`train_step`) on generator batches ``0 .. steps-1`` of ``batch_size``;
    returns the mean loss per step (``steps`` floats). ``opt`` defaults to :func:`make_optimizers`;
    ``validate`` checks each batch against the schema first. Raises
    :class:`~repro.picasso.data.BatchError` for a batch that does not fit the schema (an out-of-range ID
    is refused by the stage even without ``validate``)."""
    opt = opt or make_optimizers(model)
    losses = []
    for i in tqdm(range(steps), desc=f"train {model.emb.kind}", disable=not progress or _quiet(), leave=False):
        b = gen.batch(i, batch_size)
        if validate:
            validate_batch(b, model.schema)
        losses.append(train_step(model, opt, b, micro_batches=micro_batches, interleave=interleave))
    return losses


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (average ranks for ties).

    ``scores`` and ``labels`` ``[n]`` (any shape, flattened; labels > 0.5 are positives); returns a share in
    ``[0, 1]``. Raises ``ValueError`` unless both classes occur."""
    s = scores.detach().double().flatten().cpu()
    y = labels.detach().flatten().cpu() > 0.5
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both positive and negative labels")
    uniq, inv, counts = torch.unique(s, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    avg_rank = ends - (counts.double() - 1) / 2  # 1-based average rank of each distinct score
    r = avg_rank[inv]  # (n,)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))  # U / (n_pos * n_neg)


@torch.no_grad()
def evaluate_auc(model: RecModel, batches: list[Batch]) -> float:
    """AUC (:func:`auc`) of the model's logits over all samples of ``batches``. Raises ``ValueError`` if
    the labels hold only one class."""
    scores = torch.cat([model(b) for b in batches])
    return auc(scores, torch.cat([b.labels for b in batches]))
