"""PICASSO (Zhang, Chen et al., ICDE 2022, arXiv 2204.04903): packing, interleaving and caching for
wide-and-deep recommender training, rebuilt at small scale for notebook 04.

Modules, by idea: :mod:`.data` (Criteo-like generator, jagged batches, validation), :mod:`.criteo` (reader of
the real Criteo text format), :mod:`.embedding` (per-field baseline, D-packing, K-packing), :mod:`.models`
(Wide&Deep, DeepFM), :mod:`.interleave` (micro-batch pipelining, stage timeline), :mod:`.cache` (hot-ID
cache over a slow tier), :mod:`.train` (optimizers, training, AUC, stage timing, operator counts),
:mod:`.peers` (TorchRec / FBGEMM stages, optional).
"""

from .cache import CachedEmbedding, CachedSGD, SlowTier, zipf_hit_rate
from .criteo import CriteoFormatError, parse_criteo_line, read_criteo
from .data import Batch, BatchError, ClickLogGenerator, Schema, make_schema, split_batch, validate_batch
from .embedding import (
    DPackedEmbedding,
    KPackedEmbedding,
    PerFieldEmbedding,
    Pooled,
    init_field_tables,
    make_stage,
)
from .interleave import Optimizers, record_timeline, train_step
from .models import DeepFM, WideAndDeep, make_model
from .train import auc, count_ops, evaluate_auc, make_optimizers, stage_breakdown, train

__all__ = [
    "Batch", "BatchError", "CachedEmbedding", "CachedSGD", "ClickLogGenerator", "CriteoFormatError",
    "DPackedEmbedding", "DeepFM", "KPackedEmbedding", "Optimizers", "PerFieldEmbedding", "Pooled", "Schema",
    "SlowTier", "WideAndDeep", "auc", "count_ops", "evaluate_auc", "init_field_tables", "make_model",
    "make_optimizers", "make_schema", "make_stage", "parse_criteo_line", "read_criteo", "record_timeline",
    "split_batch", "stage_breakdown", "train", "train_step", "validate_batch", "zipf_hit_rate",
]
