"""Wide-and-deep recommenders parameterised by an embedding stage (PICASSO's WDL workloads).

Both models split into ``embed(batch) -> Pooled`` (the sparse, memory-bound stage that PICASSO packs,
interleaves and caches) and ``head(pooled, dense) -> logits`` (the dense, compute-bound stage), so the
training loop can run the two stages of different micro-batches concurrently.

* :class:`WideAndDeep` (Cheng et al. 2016): logit = wide linear part over the IDs (the stage's 1-wide
  embeddings) + a linear term on the dense features + a deep MLP over ``[pooled embeddings, dense]``.
* :class:`DeepFM` (Guo et al. 2017; DLRM-like pairwise interactions): the above plus a factorisation-
  machine term over every field's embedding projected to a shared ``k`` (one batched projection per dim
  group, so fields of different dims interact) and the bottom-MLP'd dense vector:
  ``FM = 0.5 * sum_k((sum_i z_i)^2 - sum_i z_i^2)``, i.e. all pairwise dot products in O(F k).

Layer: depends on :mod:`.data` and :mod:`.embedding`.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .data import Batch, Schema
from .embedding import EmbeddingStage, Pooled


def mlp(sizes: list[int], seed_gen: torch.Generator) -> nn.Sequential:
    """ReLU MLP with layer widths ``sizes`` (``[in, *hidden, out]``: ``[n, in] -> [n, out]``), weights
    Glorot-uniform from ``seed_gen``, biases zero."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        lin = nn.Linear(a, b)
        with torch.no_grad():
            bound = (6.0 / (a + b)) ** 0.5
            lin.weight.copy_(torch.rand(b, a, generator=seed_gen) * 2 * bound - bound)
            lin.bias.zero_()
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RecModel(nn.Module):
    """Base: holds the embedding stage ``emb`` and the dense head; ``forward = head(embed(batch))``, logits
    ``[B]``. The split is the stage boundary PICASSO §IV interleaves. Raises ``ValueError`` if the stage was
    built for another schema."""

    def __init__(self, schema: Schema, stage: EmbeddingStage) -> None:
        super().__init__()
        if stage.schema != schema:
            raise ValueError("the embedding stage was built for a different schema")
        self.schema, self.emb = schema, stage

    def embed(self, batch: Batch) -> Pooled:
        """The embedding stage: per dim group ``[B, F_g, d_g]`` and the wide part ``[B]``."""
        return self.emb(batch)

    def head(self, pooled: Pooled, dense: torch.Tensor) -> torch.Tensor:
        """The dense stage: pooled embeddings and ``dense`` ``[B, 13]`` -> logits ``[B]``."""
        raise NotImplementedError

    def forward(self, batch: Batch) -> torch.Tensor:
        """Logits ``[B]`` of ``batch``: ``head(embed(batch), batch.dense)``."""
        return self.head(self.embed(batch), batch.dense)

    def dense_parameters(self) -> list[nn.Parameter]:
        """Every parameter not in the embedding stage (the dense optimizer's)."""
        emb = {id(p) for p in self.emb.parameters()}
        return [p for p in self.parameters() if id(p) not in emb]


class WideAndDeep(RecModel):
    """Wide & Deep: ``wide(IDs) + w_d . dense + b + MLP([pooled..., dense])``."""

    def __init__(self, schema: Schema, stage: EmbeddingStage, hidden: tuple[int, ...] = (256, 128),
                 seed: int = 0) -> None:
        super().__init__(schema, stage)
        g = torch.Generator().manual_seed(seed + 1)
        d_in = sum(schema.dims) + schema.n_dense
        self.deep = mlp([d_in, *hidden, 1], g)
        self.wide_dense = nn.Linear(schema.n_dense, 1)
        with torch.no_grad():
            self.wide_dense.weight.zero_()
            self.wide_dense.bias.zero_()

    def head(self, pooled: Pooled, dense: torch.Tensor) -> torch.Tensor:
        """Logits ``[B]``: MLP over ``[B, sum d_f + 13]`` plus the wide part and the dense linear term."""
        B = dense.shape[0]
        x = torch.cat([*(g.reshape(B, -1) for g in pooled.groups), dense], 1)  # (B, sum_f d_f + 13)
        return self.deep(x).view(B) + pooled.wide + self.wide_dense(dense).view(B)


class DeepFM(WideAndDeep):
    """DeepFM / DLRM-style pairwise interactions on top of :class:`WideAndDeep`."""

    def __init__(self, schema: Schema, stage: EmbeddingStage, hidden: tuple[int, ...] = (256, 128),
                 k: int = 16, seed: int = 0) -> None:
        super().__init__(schema, stage, hidden, seed)
        g = torch.Generator().manual_seed(seed + 2)
        self.proj = nn.ParameterList(
            nn.Parameter(torch.randn(len(fs), d, k, generator=g) / d ** 0.5)
            for d, fs in zip(stage.group_dims, stage.group_fields, strict=True))
        self.bottom = mlp([schema.n_dense, 64, k], g)

    def head(self, pooled: Pooled, dense: torch.Tensor) -> torch.Tensor:
        """Logits ``[B]``: Wide&Deep's plus the FM term over ``F + 1`` vectors of width ``k``."""
        z = torch.cat([torch.einsum("bfd,fdk->bfk", e, w) for e, w in zip(pooled.groups, self.proj,
                                                                           strict=True)]
                      + [self.bottom(dense).unsqueeze(1)], 1)  # [B, F + 1, k]
        s = z.sum(1)
        fm = 0.5 * (s * s - (z * z).sum(1)).sum(1)
        return super().head(pooled, dense) + fm / z.shape[1]


MODELS = {"wdl": WideAndDeep, "deepfm": DeepFM}


def make_model(name: str, schema: Schema, stage: EmbeddingStage, **kw) -> RecModel:
    """A model by name (``wdl``: :class:`WideAndDeep`, ``deepfm``: :class:`DeepFM`) over ``stage``; ``kw``
    goes to its constructor. Raises ``ValueError`` for an unknown name or a stage of another schema."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    return MODELS[name](schema, stage, **kw)
