"""Embedding stages: the per-field baseline, D-packing and K-packing (PICASSO §IV "Packing").

Every stage maps a :class:`~repro.picasso.data.Batch` to :class:`Pooled`: per embedding-dim group ``g`` a
tensor ``[B, F_g, d_g]`` of sum-pooled bags (fields in ascending index within the group, groups by
ascending dim), plus the wide part ``[B]`` (the sum over all fields of a 1-wide embedding: the linear model
over the IDs). All stages hold the *same* parameters (:func:`init_field_tables`), so their outputs and
gradients agree to float tolerance; only the number of operators differs:

* :class:`PerFieldEmbedding` - the baseline of feature-column frameworks: one ``nn.EmbeddingBag`` per field
  (deep) and one per field (wide), one lookup-and-pool call each, a Python loop over fields.
* :class:`DPackedEmbedding` - D-Packing: fields sharing a dim become one table (rows stacked, IDs shifted by
  the field's row offset), one fused lookup-and-pool per group; the wide tables likewise become one.
* :class:`KPackedEmbedding` - K-Packing on top: all groups' tables in one flat buffer with per-table offsets
  (like FBGEMM's TBE ``weights_offsets``/``D_offsets``), one gather-and-segment-sum for every field of every
  dim. Mixed dims are handled by viewing the buffer as rows of ``c = gcd(dims)`` columns ("chunks"): an ID
  of a ``d``-dim field covers ``d / c`` consecutive chunks, so one ``embedding_bag`` serves all groups.

Embedding gradients are sparse (``sparse=True``), the recommender norm, so the SGD update touches only the
rows a batch uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import Batch, Schema, lengths_to_offsets


@dataclass
class Pooled:
    """Output of an embedding stage: ``groups[g]`` is ``[B, F_g, d_g]``; ``wide`` is ``[B]``."""

    groups: list[torch.Tensor]
    wide: torch.Tensor

    def tensors(self) -> list[torch.Tensor]:
        return [*self.groups, self.wide]

    @staticmethod
    def from_tensors(ts: list[torch.Tensor]) -> Pooled:
        return Pooled(list(ts[:-1]), ts[-1])


def init_field_tables(schema: Schema, seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The canonical parameters every stage starts from: deep ``[V_f, d_f] ~ U(+-1/sqrt(d_f))`` and wide
    ``[V_f, 1] = 0`` per field, from one seeded generator (a loop over fields, at construction only)."""
    g = torch.Generator().manual_seed(seed)
    deep = [(torch.rand(v, d, generator=g) * 2 - 1) / math.sqrt(d) for v, d in zip(schema.vocab, schema.dims,
                                                                                   strict=True)]
    wide = [torch.zeros(v, 1) for v in schema.vocab]
    return deep, wide


class EmbeddingStage(nn.Module):
    """Common interface. ``forward(batch) -> Pooled``; :meth:`field_tables` / :meth:`field_grads` give
    per-field dense views for equivalence tests (small tables only)."""

    kind = "abstract"

    def __init__(self, schema: Schema) -> None:
        super().__init__()
        self.schema = schema
        groups = schema.groups()
        self.group_dims = list(groups)
        self.group_fields = [groups[d] for d in self.group_dims]

    def field_tables(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        raise NotImplementedError

    def field_grads(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        raise NotImplementedError

    def sparse_parameters(self) -> list[nn.Parameter]:
        """Parameters with sparse gradients (the embedding optimizer's)."""
        return list(self.parameters())


def _dense_grad(p: torch.Tensor) -> torch.Tensor:
    if p.grad is None:
        return torch.zeros_like(p)
    return p.grad.to_dense() if p.grad.is_sparse else p.grad


class PerFieldEmbedding(EmbeddingStage):
    """Baseline: one ``nn.EmbeddingBag`` (deep) + one 1-wide ``nn.EmbeddingBag`` (wide) per field, called
    field by field, as a feature-column framework executes a wide-and-deep model."""

    kind = "baseline"

    def __init__(self, schema: Schema, seed: int = 0, device: str | torch.device = "cpu",
                 tables: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None) -> None:
        super().__init__(schema)
        deep, wide = tables or init_field_tables(schema, seed)
        self.deep = nn.ModuleList(nn.EmbeddingBag.from_pretrained(w.detach().clone(), freeze=False, mode="sum",
                                                               sparse=True)
                                  for w in deep)
        self.wide = nn.ModuleList(nn.EmbeddingBag.from_pretrained(w.detach().clone(), freeze=False, mode="sum",
                                                               sparse=True)
                                  for w in wide)
        self.to(device)

    def forward(self, batch: Batch) -> Pooled:
        B = batch.batch_size
        # split the jagged batch per field (what KeyedJaggedTensor.split does), then loop over fields
        per_field_ids = batch.ids.split(batch.lengths.sum(1).tolist())
        offs = torch.cumsum(batch.lengths, 1) - batch.lengths  # [F, B] exclusive prefix sums, per field
        outs, wide = [], None
        for f in range(self.schema.n_fields):
            outs.append(self.deep[f](per_field_ids[f], offs[f]))
            w = self.wide[f](per_field_ids[f], offs[f])
            wide = w if wide is None else wide + w
        assert wide is not None
        groups = [torch.stack([outs[f] for f in fs], 1) for fs in self.group_fields]
        return Pooled(groups, wide.view(B))

    def field_tables(self):
        return [m.weight for m in self.deep], [m.weight for m in self.wide]

    def field_grads(self):
        return [_dense_grad(m.weight) for m in self.deep], [_dense_grad(m.weight) for m in self.wide]


def regroup_index(field_len: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Gather index that reorders field-major IDs so fields come in the order ``perm`` (segments kept
    whole): ``ids[regroup_index(...)]``. O(N) and a constant number of operators."""
    start = torch.cumsum(field_len, 0) - field_len
    seg = field_len[perm]
    n = int(seg.sum())
    f_exp = torch.arange(len(perm), device=field_len.device).repeat_interleave(seg, output_size=n)
    pos = torch.arange(n, device=field_len.device) - (torch.cumsum(seg, 0) - seg)[f_exp]
    return start[perm][f_exp] + pos


def _row_offsets(vocab: list[int]) -> list[int]:
    out, acc = [], 0
    for v in vocab:
        out.append(acc)
        acc += v
    return out


class _PackedBase(EmbeddingStage):
    """Shared index bookkeeping of the packed stages (computed once at construction)."""

    def __init__(self, schema: Schema) -> None:
        super().__init__(schema)
        V = list(schema.vocab)
        self.row_off_list = _row_offsets(V)
        self.register_buffer("row_off", torch.tensor(self.row_off_list, dtype=torch.int64), persistent=False)
        # wide: one [sum V, 1] table
        self.total_rows = sum(V)

    def _wide(self, batch: Batch, gids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Fused wide part: one 1-wide lookup over all fields' bags, then a sum over fields."""
        out = F.embedding_bag(gids, self.wide_table, offsets[:-1], mode="sum", sparse=True)
        return out.view(batch.n_fields, batch.batch_size).sum(0)


class DPackedEmbedding(_PackedBase):
    """D-Packing: one table per embedding dim (fields' tables stacked, IDs shifted by row offsets) and one
    ``embedding_bag`` per dim group; the wide part as one table and one call."""

    kind = "dpacked"

    def __init__(self, schema: Schema, seed: int = 0, device: str | torch.device = "cpu",
                 tables: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None) -> None:
        super().__init__(schema)
        deep, wide = tables or init_field_tables(schema, seed)
        self.tables = nn.ParameterList(nn.Parameter(torch.cat([deep[f].detach() for f in fs]))
                                       for fs in self.group_fields)
        self.wide_table = nn.Parameter(torch.cat([w.detach() for w in wide]))
        # per group: row offset of each field inside the group's table, and a field -> group-position map
        g_off = torch.zeros(schema.n_fields, dtype=torch.int64)
        for fs in self.group_fields:
            g_off[fs] = torch.tensor(_row_offsets([schema.vocab[f] for f in fs]))
        self.register_buffer("g_off", g_off, persistent=False)
        self.register_buffer("field_group", torch.tensor([self.group_dims.index(d) for d in schema.dims]),
                             persistent=False)
        self.register_buffer("group_field_idx", torch.cat([torch.tensor(fs) for fs in self.group_fields]),
                             persistent=False)
        self.to(device)

    def forward(self, batch: Batch) -> Pooled:
        B, n = batch.batch_size, batch.ids.numel()
        field_len = batch.lengths.sum(1)
        fi = torch.arange(batch.n_fields, device=batch.ids.device).repeat_interleave(field_len, output_size=n)
        offsets = batch.offsets()
        wide = self._wide(batch, batch.ids + self.row_off[fi], offsets)
        gid = batch.ids + self.g_off[fi]
        if len(self.group_fields) == 1:  # fields already in group order
            parts_ids, parts_len = [gid], [batch.lengths]
        else:  # regroup IDs by dim group with one gather (fields in group order, each segment kept whole)
            src = regroup_index(field_len, self.group_field_idx)
            lens = batch.lengths[self.group_field_idx]
            sizes = [len(fs) for fs in self.group_fields]
            parts_len = list(lens.split(sizes))
            n_g = torch.zeros(len(sizes), dtype=torch.int64, device=gid.device).index_add_(
                0, self.field_group, field_len)
            parts_ids = list(gid[src].split(n_g.tolist()))
        groups = []
        for t, ids_g, len_g, d in zip(self.tables, parts_ids, parts_len, self.group_dims, strict=True):
            out = F.embedding_bag(ids_g, t, lengths_to_offsets(len_g.reshape(-1))[:-1], mode="sum", sparse=True)
            groups.append(out.view(len_g.shape[0], B, d).transpose(0, 1))
        return Pooled(groups, wide)

    def field_tables(self):
        deep: list[torch.Tensor] = [None] * self.schema.n_fields  # type: ignore[list-item]
        for t, fs in zip(self.tables, self.group_fields, strict=True):
            for f, part in zip(fs, t.split([self.schema.vocab[f] for f in fs]), strict=True):
                deep[f] = part
        return deep, list(self.wide_table.split(list(self.schema.vocab)))

    def field_grads(self):
        deep: list[torch.Tensor] = [None] * self.schema.n_fields  # type: ignore[list-item]
        for t, fs in zip(self.tables, self.group_fields, strict=True):
            for f, part in zip(fs, _dense_grad(t).split([self.schema.vocab[f] for f in fs]), strict=True):
                deep[f] = part
        return deep, list(_dense_grad(self.wide_table).split(list(self.schema.vocab)))


class KPackedEmbedding(_PackedBase):
    """K-Packing (TBE-like): every table in one flat buffer viewed as ``[n_chunks, c]``, ``c = gcd(dims)``;
    one ``embedding_bag`` over chunk bags ``(group, chunk, field, sample)`` pools every field of every dim."""

    kind = "kpacked"

    def __init__(self, schema: Schema, seed: int = 0, device: str | torch.device = "cpu",
                 tables: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None) -> None:
        super().__init__(schema)
        deep, wide = tables or init_field_tables(schema, seed)
        c = reduce(math.gcd, schema.dims)
        self.c = c
        nc = [d // c for d in schema.dims]  # chunks per ID, per field
        chunk_rows = [v * k for v, k in zip(schema.vocab, nc, strict=True)]
        self.chunk_sizes = chunk_rows
        # order the buffer and the output by dim group so the output splits into group blocks
        self.order = [f for fs in self.group_fields for f in fs]
        base = torch.zeros(schema.n_fields, dtype=torch.int64)
        base[self.order] = torch.tensor(_row_offsets([chunk_rows[f] for f in self.order]))
        self.weight = nn.Parameter(torch.cat([deep[f].detach().reshape(-1, c) for f in self.order]))
        self.wide_table = nn.Parameter(torch.cat([w.detach() for w in wide]))
        self.register_buffer("chunk_base", base, persistent=False)
        self.register_buffer("nc", torch.tensor(nc), persistent=False)
        self.register_buffer("perm", torch.tensor(self.order), persistent=False)
        self.register_buffer("chunk_ar", torch.arange(max(nc)), persistent=False)
        self.register_buffer("field_group", torch.tensor([self.group_dims.index(d) for d in schema.dims]),
                             persistent=False)
        self.to(device)

    def chunk_indices(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Expand field-major IDs to chunk indices in bag order ``(group, chunk, field, sample)``; returns
        (indices, bag offsets). Vectorised: a constant number of operators per dim group, none per field."""
        n = batch.ids.numel()
        field_len = batch.lengths.sum(1)  # [F]
        fi = torch.arange(batch.n_fields, device=batch.ids.device).repeat_interleave(field_len, output_size=n)
        first = self.chunk_base[fi] + batch.ids * self.nc[fi]  # first chunk of every ID
        if len(self.group_fields) > 1:
            first = first[regroup_index(field_len, self.perm)]
        n_g = torch.zeros(len(self.group_fields), dtype=torch.int64, device=first.device).index_add_(
            0, self.field_group, field_len).tolist()
        lens = batch.lengths[self.perm].split([len(fs) for fs in self.group_fields])
        idx, bag_len = [], []
        for x, ln, d in zip(first.split(n_g), lens, self.group_dims, strict=True):
            k = d // self.c
            idx.append((x.unsqueeze(0) + self.chunk_ar[:k, None]).reshape(-1))
            bag_len.append(ln.unsqueeze(0).expand(k, -1, -1).reshape(-1))
        return torch.cat(idx), lengths_to_offsets(torch.cat(bag_len))

    def forward(self, batch: Batch) -> Pooled:
        B = batch.batch_size
        idx, offsets = self.chunk_indices(batch)
        pooled = F.embedding_bag(idx, self.weight, offsets[:-1], mode="sum", sparse=True)
        fi = torch.arange(batch.n_fields, device=batch.ids.device).repeat_interleave(
            batch.lengths.sum(1), output_size=batch.ids.numel())
        wide = self._wide(batch, batch.ids + self.row_off[fi], batch.offsets())
        return Pooled(self._to_groups(pooled, B), wide)

    def _to_groups(self, pooled: torch.Tensor, B: int) -> list[torch.Tensor]:
        """[(group, chunk, field, sample), c] -> per group [B, F_g, d_g] (one view + permute per group)."""
        sizes = [len(fs) * (d // self.c) * B for fs, d in zip(self.group_fields, self.group_dims, strict=True)]
        out = []
        for blk, fs, d in zip(pooled.split(sizes), self.group_fields, self.group_dims, strict=True):
            k = d // self.c
            out.append(blk.view(k, len(fs), B, self.c).permute(2, 1, 0, 3).reshape(B, len(fs), d))
        return out

    def _split_fields(self, buf: torch.Tensor) -> list[torch.Tensor]:
        parts = buf.split([self.chunk_sizes[f] for f in self.order])
        deep: list[torch.Tensor] = [None] * self.schema.n_fields  # type: ignore[list-item]
        for f, p in zip(self.order, parts, strict=True):
            deep[f] = p.reshape(self.schema.vocab[f], self.schema.dims[f])
        return deep

    def field_tables(self):
        return self._split_fields(self.weight), list(self.wide_table.split(list(self.schema.vocab)))

    def field_grads(self):
        return (self._split_fields(_dense_grad(self.weight)),
                list(_dense_grad(self.wide_table).split(list(self.schema.vocab))))


STAGES = {"baseline": PerFieldEmbedding, "dpacked": DPackedEmbedding, "kpacked": KPackedEmbedding}


def make_stage(kind: str, schema: Schema, seed: int = 0, device: str | torch.device = "cpu", **kw) -> EmbeddingStage:
    """Build an embedding stage by name: ``baseline``, ``dpacked``, ``kpacked`` or ``cached`` (see
    :mod:`repro.picasso.cache`); all start from the same :func:`init_field_tables` weights."""
    if kind == "cached":
        from .cache import CachedEmbedding

        return CachedEmbedding(schema, seed=seed, device=device, **kw)
    if kind not in STAGES:
        raise ValueError(f"unknown embedding stage {kind!r}; valid: {', '.join([*STAGES, 'cached'])}")
    return STAGES[kind](schema, seed=seed, device=device, **kw)


class SparseSGD(torch.optim.Optimizer):
    """Plain SGD for sparse embedding gradients without coalescing: ``w.index_add_(0, rows, -lr * g)``
    per parameter (one operator each; duplicate rows sum, exactly as ``w -= lr * coalesce(g)``). Dense
    gradients fall back to ``w.add_(g, alpha=-lr)``. Used by every stage, the baseline included."""

    def __init__(self, params, lr: float) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if g.is_sparse:
                    # scaling first: index_add_ with alpha= takes a much slower path on CPU (measured 2-7x)
                    p.index_add_(0, g._indices()[0], g._values() * -group["lr"])
                else:
                    p.add_(g, alpha=-group["lr"])
