"""Embedding stages by name: the per-field baseline, D-packing, K-packing and the cached stage (PICASSO §IV).

:func:`make_stage` sits above both :mod:`.embedding` (baseline, D- and K-packing) and :mod:`.cache` (the
cached stage, built on a packed one), so neither of those imports the other's caller: every import of the
package points down a layer (data -> embedding -> optim -> cache -> stages).
"""

from __future__ import annotations

import torch

from .cache import CachedEmbedding
from .data import Schema
from .embedding import STAGES, EmbeddingStage

KINDS = (*STAGES, "cached")


def make_stage(kind: str, schema: Schema, seed: int = 0, device: str | torch.device = "cpu", **kw) -> EmbeddingStage:
    """Build an embedding stage by name: ``baseline`` (:class:`~repro.picasso.embedding.PerFieldEmbedding`),
    ``dpacked`` / ``kpacked`` (D- and K-packing, PICASSO §IV "Packing") or ``cached``
    (:class:`~repro.picasso.cache.CachedEmbedding`, §IV "Caching"; ``kw`` takes its ``packing``,
    ``capacity``, link settings). All start from the same :func:`~repro.picasso.embedding.init_field_tables`
    weights of ``seed`` unless ``tables=`` is given. Raises ``ValueError`` for an unknown ``kind``."""
    if kind == "cached":
        return CachedEmbedding(schema, seed=seed, device=device, **kw)
    if kind not in STAGES:
        raise ValueError(f"unknown embedding stage {kind!r}; valid: {', '.join(KINDS)}")
    return STAGES[kind](schema, seed=seed, device=device, **kw)
