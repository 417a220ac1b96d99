"""PICASSO (Zhang, Chen et al., ICDE 2022, arXiv 2204.04903): packing, interleaving and caching for
wide-and-deep recommender training, rebuilt at small scale for notebook 04.

Modules, by idea, each importing only those above it in this list:

* :mod:`.data` - Criteo-like generator, jagged batches, validation; :mod:`.criteo` - reader of the real
  Criteo text format;
* :mod:`.embedding` - per-field baseline, D-packing, K-packing (§IV "Packing");
* :mod:`.optim` - sparse SGD for the tables, the (embedding, dense) optimizer pair;
* :mod:`.cache` - hot-row cache over a slow tier (§IV "Caching"); :mod:`.peers` - TorchRec / FBGEMM stages
  (optional); :mod:`.stages` - a stage by name;
* :mod:`.models` - Wide&Deep, DeepFM;
* :mod:`.interleave` - micro-batch schedule, sequential or interleaved (§IV "Interleaving"), stage timeline;
* :mod:`.training` - optimizers for a model, the training step, the training loop, AUC;
* :mod:`.measure` - the variants table, speeds, operator counts, stage times, cache sweep (shared by the
  notebook and ``python -m repro bench picasso``).

No exported name equals a submodule's name, so ``import repro.picasso.training as m`` gives the module.
"""

from .cache import CachedEmbedding, CachedSGD, SlowTier, zipf_hit_rate
from .criteo import CriteoFormatError, parse_criteo_line, read_criteo
from .data import Batch, BatchError, ClickLogGenerator, Schema, make_schema, split_batch, validate_batch
from .embedding import DPackedEmbedding, KPackedEmbedding, PerFieldEmbedding, Pooled, init_field_tables
from .measure import (
    cache_sweep,
    count_ops,
    make_variants,
    measure_fields,
    record_timeline,
    stage_breakdown,
)
from .models import DeepFM, WideAndDeep, make_model
from .optim import Optimizers, SparseSGD
from .stages import make_stage
from .training import auc, evaluate_auc, make_optimizers, train, train_step

__all__ = [
    "Batch", "BatchError", "CachedEmbedding", "CachedSGD", "ClickLogGenerator", "CriteoFormatError",
    "DPackedEmbedding", "DeepFM", "KPackedEmbedding", "Optimizers", "PerFieldEmbedding", "Pooled", "Schema",
    "SlowTier", "SparseSGD", "WideAndDeep", "auc", "cache_sweep", "count_ops", "evaluate_auc",
    "init_field_tables", "make_model", "make_optimizers", "make_schema", "make_stage", "make_variants",
    "measure_fields", "parse_criteo_line", "read_criteo", "record_timeline", "split_batch", "stage_breakdown",
    "train", "train_step", "validate_batch", "zipf_hit_rate",
]
