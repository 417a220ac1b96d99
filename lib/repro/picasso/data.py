"""Criteo-like click logs for PICASSO (notebook 04): schema, seeded generator, jagged batches.

The paper's workload is a wide-and-deep recommender with up to about a thousand categorical feature
fields whose ID frequencies are power-law skewed (PICASSO §II, "exploitable properties" (a) and (c) in
the card). This module makes such data at any field count, deterministically from a seed:

* per-field vocabularies ``V_f`` drawn log-uniform, an embedding dimension per field from its vocabulary
  size (a few distinct dims, so fields can be D-packed by dimension);
* Zipf(``alpha``) ID frequencies within each field (``alpha`` = skew; 0 = uniform), the rank -> ID map a
  per-field bijection so hot IDs are scattered over the table;
* multi-hot fields (bags of variable length, empty bags included) and 13 dense features;
* labels from a planted model: a hidden logistic model over hashed per-ID weights, a hashed
  factorisation-machine term and the dense features, so AUC measures something learnable.

A batch is stored like TorchRec's ``KeyedJaggedTensor`` (field-major): ``lengths[f, b]`` is the bag size
of sample ``b`` in field ``f``; ``ids`` lists field 0's bags for samples 0..B-1, then field 1's, ... .
Everything here is vectorised over fields and samples (no Python loop over fields on a hot path).

Shapes: ``B`` samples, ``F`` categorical fields, ``N`` IDs in a batch (all bags, field-major).
Layer: the bottom of :mod:`repro.picasso` (torch and numpy only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

N_DENSE = 13
DIM_RULE = ((1_000, 8), (10_000, 16), (None, 32))  # V_f < 1e3 -> 8, < 1e4 -> 16, else 32
_PRIME = 2_147_483_647  # 2^31 - 1: coprime with every vocabulary size below it


@dataclass(frozen=True)
class Schema:
    """Field layout of a click log: vocabulary size, embedding dim and bag shape per categorical field
    (PICASSO §II: up to about a thousand fields, tables of a few distinct dims). Raises ``ValueError`` for
    no field, lengths that differ, a vocabulary, dim or bag size below 1, ``p_empty`` outside ``[0, 1)`` or
    a negative ``alpha``."""

    vocab: tuple[int, ...]
    dims: tuple[int, ...]
    max_bag: tuple[int, ...]  # 1 = single-hot field; > 1 = multi-hot, length ~ 1 + Poisson(mean_extra) capped
    alpha: float = 1.05  # Zipf skew of ID frequencies
    p_empty: float = 0.05  # probability that a (sample, field) bag is empty
    mean_extra: float = 1.0  # multi-hot fields: mean extra IDs per bag beyond the first
    n_dense: int = N_DENSE
    names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        F = len(self.vocab)
        if F == 0:
            raise ValueError("schema needs at least one categorical field")
        if len(self.dims) != F or len(self.max_bag) != F:
            raise ValueError(f"vocab, dims, max_bag must have the same length, got {F}, {len(self.dims)}, "
                             f"{len(self.max_bag)}")
        if not self.names:
            object.__setattr__(self, "names", tuple(f"C{i + 1}" for i in range(F)))
        for i, (v, d, m) in enumerate(zip(self.vocab, self.dims, self.max_bag, strict=True)):
            if v < 1 or d < 1 or m < 1:
                raise ValueError(f"field {self.names[i]}: vocab, dim and max_bag must be >= 1, got {v}, {d}, {m}")
        if not 0.0 <= self.p_empty < 1.0:
            raise ValueError(f"p_empty must be in [0, 1), got {self.p_empty}")
        if self.alpha < 0:
            raise ValueError(f"alpha (Zipf skew) must be >= 0, got {self.alpha}")

    @property
    def n_fields(self) -> int:
        """``F``, the number of categorical fields."""
        return len(self.vocab)

    def groups(self) -> dict[int, list[int]]:
        """Fields grouped by embedding dimension: the D-packing groups (dim -> field indices, ascending)."""
        out: dict[int, list[int]] = {}
        for f, d in enumerate(self.dims):
            out.setdefault(d, []).append(f)
        return dict(sorted(out.items()))

    def with_alpha(self, alpha: float) -> Schema:
        """The same schema with Zipf skew ``alpha``."""
        return replace(self, alpha=alpha)


def dim_for_vocab(v: int) -> int:
    """Embedding dim from vocabulary size: 8 / 16 / 32 below 1e3 / 1e4 / above (three groups)."""
    for limit, d in DIM_RULE:
        if limit is None or v < limit:
            return d
    raise AssertionError


def make_schema(n_fields: int = 26, *, seed: int = 0, vocab_range: tuple[int, int] = (100, 100_000),
                alpha: float = 1.05, multi_hot_frac: float = 0.3, max_bag: int = 8, p_empty: float = 0.05,
                mean_extra: float = 1.0, dims: tuple[int, ...] | None = None) -> Schema:
    """A Criteo-like schema with ``n_fields`` categorical fields (card §8: ``V_f ~ logUniform``, 3 dims).

    ``V_f ~ logUniform(vocab_range)``; dims from :func:`dim_for_vocab` unless ``dims`` (cycled) is given;
    a fraction ``multi_hot_frac`` of fields are multi-hot with bags up to ``max_bag`` long. Seeded by
    ``seed``. Raises ``ValueError`` if ``n_fields < 1`` or ``vocab_range`` is not ``1 <= lo <= hi``.
    """
    if n_fields < 1:
        raise ValueError(f"n_fields must be >= 1, got {n_fields}")
    lo, hi = vocab_range
    if not 1 <= lo <= hi:
        raise ValueError(f"vocab_range must satisfy 1 <= lo <= hi, got {vocab_range}")
    rng = np.random.default_rng(seed)
    vocab = np.exp(rng.uniform(math.log(lo), math.log(hi + 1), n_fields)).astype(np.int64).clip(lo, hi)
    multi = rng.random(n_fields) < multi_hot_frac
    mb = np.where(multi, max_bag, 1)
    d = [dim_for_vocab(int(v)) for v in vocab] if dims is None else [dims[i % len(dims)] for i in range(n_fields)]
    return Schema(vocab=tuple(int(v) for v in vocab), dims=tuple(d), max_bag=tuple(int(m) for m in mb),
                  alpha=alpha, p_empty=p_empty, mean_extra=mean_extra)


@dataclass
class Batch:
    """One mini-batch in jagged, field-major layout (like ``KeyedJaggedTensor``).

    ``ids`` int64 [N]; ``lengths`` int64 [F, B]; ``dense`` float [B, 13]; ``labels`` float [B].
    """

    ids: torch.Tensor
    lengths: torch.Tensor
    dense: torch.Tensor
    labels: torch.Tensor

    @property
    def batch_size(self) -> int:
        """``B``, the number of samples."""
        return int(self.lengths.shape[1])

    @property
    def n_fields(self) -> int:
        """``F``, the number of categorical fields."""
        return int(self.lengths.shape[0])

    def offsets(self) -> torch.Tensor:
        """Exclusive prefix sum of ``lengths`` over the flat (field, sample) bags: [F * B + 1]."""
        return lengths_to_offsets(self.lengths.reshape(-1))

    def to(self, device: str | torch.device, non_blocking: bool = False) -> Batch:
        """The batch with all four tensors on ``device``."""
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in (self.ids, self.lengths, self.dense,
                                                                         self.labels)))

    def sample_index(self) -> torch.Tensor:
        """Sample (row) of every ID in ``ids``: [N]."""
        B = self.batch_size
        rows = torch.arange(B, device=self.ids.device).repeat(self.n_fields)
        return rows.repeat_interleave(self.lengths.reshape(-1), output_size=self.ids.numel())

    def field_index(self) -> torch.Tensor:
        """Field of every ID in ``ids``: [N]."""
        return torch.arange(self.n_fields, device=self.ids.device).repeat_interleave(
            self.lengths.sum(1), output_size=self.ids.numel())


def lengths_to_offsets(lengths: torch.Tensor) -> torch.Tensor:
    """Bag offsets from bag lengths: int64 ``[n]`` -> int64 ``[n + 1]``, ``out[0] = 0``, ``out[i + 1] =
    out[i] + lengths[i]`` (``out[:-1]`` is what ``embedding_bag`` takes)."""
    out = torch.zeros(lengths.numel() + 1, dtype=torch.int64, device=lengths.device)
    torch.cumsum(lengths, 0, out=out[1:])
    return out


class BatchError(ValueError):
    """A batch that does not fit its schema; the message names the field and the row (sample)."""


def validate_batch(batch: Batch, schema: Schema) -> None:
    """Check a batch against its schema (vectorised; one host sync). Raises :class:`BatchError`.

    Checks: the number of fields, ``ids`` dtype and length against ``lengths``, dense width, and every ID in
    ``[0, V_f)`` of its field; the first offending ID is reported by field name and row.
    """
    if batch.lengths.dim() != 2:
        raise BatchError(f"lengths must be [fields, batch], got shape {tuple(batch.lengths.shape)}")
    F, B = batch.lengths.shape
    if F != schema.n_fields:
        raise BatchError(f"batch has {F} categorical fields, the schema has {schema.n_fields}")
    if batch.ids.dtype not in (torch.int64, torch.int32):
        raise BatchError(f"ids must be an integer tensor, got {batch.ids.dtype}")
    if (batch.lengths < 0).any():
        f, b = (batch.lengths < 0).nonzero()[0].tolist()
        raise BatchError(f"field {schema.names[f]} row {b}: negative bag length {int(batch.lengths[f, b])}")
    n = int(batch.lengths.sum())
    if n != batch.ids.numel():
        raise BatchError(f"lengths sum to {n} IDs but ids has {batch.ids.numel()}")
    if batch.dense.shape != (B, schema.n_dense):
        raise BatchError(f"dense must be [{B}, {schema.n_dense}], got {tuple(batch.dense.shape)}")
    if batch.labels.shape != (B,):
        raise BatchError(f"labels must be [{B}], got {tuple(batch.labels.shape)}")
    vocab = torch.tensor(schema.vocab, device=batch.ids.device)
    fi = batch.field_index()
    bad = (batch.ids < 0) | (batch.ids >= vocab[fi])
    if bad.any():
        j = int(bad.nonzero()[0])
        f, row = int(fi[j]), int(batch.sample_index()[j])
        v = int(batch.ids[j])
        what = "negative ID" if v < 0 else f"ID out of range [0, {schema.vocab[f]})"
        raise BatchError(f"field {schema.names[f]} (index {f}) row {row}: {what}: {v}")


def check_ids(ids: torch.Tensor, fi: torch.Tensor, vocab_hi: torch.Tensor, schema: Schema) -> None:
    """Refuse any ID outside ``[0, V_f)`` of its field (the check on every embedding stage's hot path).

    ``fi`` is the field of every ID (:meth:`Batch.field_index`), ``vocab_hi`` the per-field bound ``V_f - 1``
    (int64 ``[F]``, on the IDs' device). One gather of the bounds and one reduction over all IDs, with a
    single host sync, whatever the number of fields or tables; only a failing batch pays for the message::

        ok  <=>  0 <= id <= V_f - 1  <=>  id >= 0 and V_f - 1 - id >= 0  <=>  (V_f - 1 - id) | id >= 0

    (two's complement: a bitwise OR is negative iff either operand is). Raises :class:`BatchError` (a
    ``ValueError``) naming the field, the offending ID and the valid range.
    """
    if ids.numel() == 0:
        return
    # [N]: (V_f - 1 - id) | id, in place on the gathered bounds (index_select: the fastest gather on CPU)
    slack = vocab_hi.index_select(0, fi).sub_(ids).bitwise_or_(ids)
    if int(slack.min()) >= 0:
        return
    bad = (ids < 0) | (ids > vocab_hi[fi])
    j = int(bad.nonzero()[0])
    f, v = int(fi[j]), int(ids[j])
    n_bad = int(bad.sum())
    more = f" ({n_bad} IDs out of range in this batch)" if n_bad > 1 else ""
    raise BatchError(f"field {schema.names[f]} (index {f}): ID {v} is outside its valid range "
                     f"[0, {schema.vocab[f]}){more}")


# ---------------------------------------------------------------------------------------------- sampling
def zipf_ranks(u: torch.Tensor, V: torch.Tensor, alpha: float) -> torch.Tensor:
    """Inverse-CDF sample of a (continuous-approximation) Zipf law ``p(r) ~ (r+1)^-alpha`` on ``[0, V)``
    (the skewed ID frequencies of PICASSO §II, card §2 (c)).

    ``u`` uniform in ``[0, 1)`` and ``V`` int64, both ``[n]`` (a per-element vocabulary); returns int64 ranks
    ``[n]`` in ``[0, V)``. ``alpha = 0`` is uniform.
    """
    Vf = V.to(torch.float64) + 1.0
    u = u.to(torch.float64)
    if abs(alpha - 1.0) < 1e-9:
        x = torch.exp(u * torch.log(Vf))
    else:
        e = 1.0 - alpha
        x = (u * (Vf ** e - 1.0) + 1.0) ** (1.0 / e)
    return torch.minimum(x.floor().to(torch.int64) - 1, V - 1).clamp_min(0)


def rank_to_id(rank: torch.Tensor, V: torch.Tensor, salt: torch.Tensor) -> torch.Tensor:
    """A per-field bijection of ``[0, V)``: ``(rank * p + salt) mod V`` with prime ``p`` coprime to ``V``;
    ``rank``, ``V``, ``salt`` int64 ``[n]``, returns int64 IDs ``[n]`` (hot ranks scattered over the table)."""
    return (rank * (_PRIME % V) + salt) % V


def _mix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64-style integer hash (int64 wrap-around arithmetic), used by the planted model."""
    x = x * -7046029254386353131  # 0x9E3779B97F4A7C15 as signed
    x = x ^ (x >> 31)  # arithmetic shift: fine for mixing
    x = x * -4658895280553007687  # 0xBF58476D1CE4E5B9
    x = x ^ (x >> 29)
    x = x * -7723592293110705685  # 0x94D049BB133111EB
    return x ^ (x >> 32)


def hashed_normal(keys: torch.Tensor, stream: int) -> torch.Tensor:
    """Deterministic pseudo-normal values per integer key (Box-Muller over two hashed uniforms): int64
    ``keys`` ``[n]`` -> float32 ``[n]``; ``stream`` selects an independent sequence."""
    a = _mix64(keys * 2 + (2 * stream + 1) * 1_000_003)
    b = _mix64(keys * 2 + 1 + (2 * stream + 1) * 1_000_003)
    ua = ((a >> 11) & ((1 << 52) - 1)).to(torch.float64) / float(1 << 52) * (1 - 1e-12) + 1e-12
    ub = ((b >> 11) & ((1 << 52) - 1)).to(torch.float64) / float(1 << 52)
    return (torch.sqrt(-2.0 * torch.log(ua)) * torch.cos(2 * math.pi * ub)).to(torch.float32)


@dataclass(frozen=True)
class PlantedModel:
    """The hidden logistic model behind the labels (the generator's ground truth, not a learned model).

    ``logit = bias + w_scale * sum_f sum_{id in bag} w(f, id) + fm_scale * FM(v(f, id)) + dense @ u``,
    where ``w`` and the rank-``k`` vectors ``v`` are hashes of (field, id) and FM is the factorisation-
    machine pairwise term ``0.5 * sum_k ((sum v)^2 - sum v^2)``.
    """

    seed: int
    w_scale: float = 0.35
    fm_scale: float = 0.1
    k: int = 4
    bias: float = -1.0

    def logits(self, batch: Batch) -> torch.Tensor:
        """The planted logit of every sample of ``batch``: ``[B]``."""
        dev = batch.ids.device
        B = batch.batch_size
        fi = batch.field_index()
        keys = fi * 10_000_019 + batch.ids + self.seed * 7_919
        rows = batch.sample_index()
        w = hashed_normal(keys, 0)
        first = torch.zeros(B, device=dev).index_add_(0, rows, w)
        v = torch.stack([hashed_normal(keys, 1 + j) for j in range(self.k)], 1)
        s = torch.zeros(B, self.k, device=dev).index_add_(0, rows, v)
        sq = torch.zeros(B, self.k, device=dev).index_add_(0, rows, v * v)
        fm = 0.5 * (s * s - sq).sum(1)
        n = batch.lengths.sum(0).clamp_min(1).to(torch.float32)
        u = hashed_normal(torch.arange(batch.dense.shape[1], device=dev) + self.seed * 31, 99)
        return self.bias + self.w_scale * first / n.sqrt() + self.fm_scale * fm / n + batch.dense @ u * 0.5


class ClickLogGenerator:
    """Seeded generator of Criteo-like click-log batches for a :class:`Schema` (batch ``i`` is a pure
    function of ``(seed, i)``, so every variant and every rerun sees the same data; card §8's data), on
    ``device``."""

    def __init__(self, schema: Schema, seed: int = 0, device: str | torch.device = "cpu") -> None:
        self.schema, self.seed, self.device = schema, seed, torch.device(device)
        self.vocab = torch.tensor(schema.vocab, dtype=torch.int64)
        self.max_bag = torch.tensor(schema.max_bag, dtype=torch.int64)
        g = torch.Generator().manual_seed(seed * 1_000_003 + 17)
        self.salt = torch.randint(0, 1 << 30, (schema.n_fields,), generator=g) % self.vocab
        self.planted = PlantedModel(seed)

    def batch(self, i: int, batch_size: int) -> Batch:
        """Batch number ``i`` (``batch_size`` samples), on the generator's device: ``ids`` ``[N]``,
        ``lengths`` ``[F, B]``, ``dense`` ``[B, 13]``, ``labels`` ``[B]``. Raises ``ValueError`` if
        ``batch_size < 1``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        s = self.schema
        F, B = s.n_fields, batch_size
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + i) * 7 + 3)
        extra = torch.poisson(torch.full((F, B), s.mean_extra), generator=g).to(torch.int64)
        lengths = torch.minimum(1 + extra, self.max_bag[:, None])
        lengths = torch.where(torch.rand(F, B, generator=g) < s.p_empty, 0, lengths)
        n = int(lengths.sum())
        fi = torch.arange(F).repeat_interleave(lengths.sum(1), output_size=n)
        V = self.vocab[fi]
        ranks = zipf_ranks(torch.rand(n, generator=g, dtype=torch.float64), V, s.alpha)
        ids = rank_to_id(ranks, V, self.salt[fi])
        dense = torch.randn(B, s.n_dense, generator=g)
        b = Batch(ids, lengths, dense, torch.zeros(B))
        p = torch.sigmoid(self.planted.logits(b))
        b.labels = (torch.rand(B, generator=g) < p).to(torch.float32)
        return b.to(self.device) if self.device.type != "cpu" else b

    def batches(self, n: int, batch_size: int, start: int = 0) -> list[Batch]:
        """Batches ``start .. start + n - 1`` (:meth:`batch`)."""
        return [self.batch(start + i, batch_size) for i in range(n)]


def split_batch(batch: Batch, m: int) -> list[Batch]:
    """Split a batch of ``B`` samples into ``m`` micro-batches of consecutive samples (about ``B / m`` each,
    for PICASSO §IV "Interleaving"), vectorised; each keeps the field-major layout. Raises ``ValueError``
    unless ``1 <= m <= B``."""
    B = batch.batch_size
    if not 1 <= m <= B:
        raise ValueError(f"micro-batches m must be in [1, batch size {B}], got {m}")
    if m == 1:
        return [batch]
    bounds = [round(B * k / m) for k in range(m + 1)]
    edges = torch.tensor(bounds[1:-1], device=batch.ids.device)
    chunk = torch.bucketize(torch.arange(B, device=batch.ids.device), edges, right=True)
    # order IDs by (micro-batch, field, sample): a stable sort on the micro-batch key keeps field-major order
    order = torch.sort(chunk[batch.sample_index()], stable=True).indices
    lens = [batch.lengths[:, bounds[k]:bounds[k + 1]] for k in range(m)]
    parts = batch.ids[order].split(torch.stack([x.sum() for x in lens]).tolist())
    return [Batch(parts[k], lens[k].contiguous(), batch.dense[bounds[k]:bounds[k + 1]],
                  batch.labels[bounds[k]:bounds[k + 1]]) for k in range(m)]
