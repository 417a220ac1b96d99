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

Embedding gradients are sparse (``sparse=True``), the recommender norm, so the SGD update
(:class:`~repro.picasso.optim.SparseSGD`) touches only the rows a batch uses.

Shapes: ``B`` samples, ``F`` fields, ``N`` IDs in the batch (all bags of all fields, field-major), ``G`` dim
groups of ``F_g`` fields of dim ``d_g``, ``V_f`` rows in field ``f``'s table.

Layer: depends on :mod:`.data` only. :mod:`.cache` builds on the packed stages, :mod:`.stages` picks a stage
by name (:func:`~repro.picasso.stages.make_stage`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import Batch, Schema, check_ids, lengths_to_offsets


@dataclass
class Pooled:
    """Output of an embedding stage (PICASSO §IV: the pooled embeddings the dense stage consumes):
    ``groups[g]`` is ``[B, F_g, d_g]`` (sum-pooled bags of the fields of dim group ``g``); ``wide`` is ``[B]``
    (the wide linear part: the sum over fields of the 1-wide embeddings)."""

    groups: list[torch.Tensor]
    wide: torch.Tensor

    def tensors(self) -> list[torch.Tensor]:
        """``[*groups, wide]``: ``G`` tensors ``[B, F_g, d_g]`` then ``[B]``."""
        return [*self.groups, self.wide]

    @staticmethod
    def from_tensors(ts: list[torch.Tensor]) -> Pooled:
        """Inverse of :meth:`tensors`: the last tensor is ``wide`` ``[B]``, the others the groups."""
        return Pooled(list(ts[:-1]), ts[-1])


def init_field_tables(schema: Schema, seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The canonical parameters every stage starts from: per field ``f``, deep ``[V_f, d_f] ~ U(+-1/sqrt(d_f))``
    and wide ``[V_f, 1] = 0``, from one seeded generator (a loop over fields, at construction only).

    Returns ``(deep, wide)``, two lists of ``F`` float32 tensors. Every stage built from them holds the same
    parameters, so packed and per-field stages compute the same function (card §8 "must keep" 2)."""
    g = torch.Generator().manual_seed(seed)
    deep = [(torch.rand(v, d, generator=g) * 2 - 1) / math.sqrt(d) for v, d in zip(schema.vocab, schema.dims,
                                                                                   strict=True)]
    wide = [torch.zeros(v, 1) for v in schema.vocab]
    return deep, wide


class EmbeddingStage(nn.Module):
    """Common interface of the embedding stages (PICASSO §IV: the sparse, memory-bound stage of a step).

    ``forward(batch) -> Pooled``: per dim group ``[B, F_g, d_g]`` and the wide part ``[B]``.
    :meth:`field_tables` / :meth:`field_grads` give per-field dense views ``[V_f, d_f]`` and ``[V_f, 1]`` for
    equivalence tests (small tables only).

    Every forward first refuses IDs outside ``[0, V_f)`` of their field (:meth:`check_ids`): in a packed
    table an out-of-range ID would otherwise silently read another field's rows. ``bounds_check = False``
    turns the check off, only to measure its cost (``repro.bench.picasso.bounds_check_cost``).
    ``state_dict()`` holds every table, so a stage round-trips through save and load."""

    kind = "abstract"

    def __init__(self, schema: Schema) -> None:
        super().__init__()
        self.schema = schema
        groups = schema.groups()
        self.group_dims = list(groups)
        self.group_fields = [groups[d] for d in self.group_dims]
        self.bounds_check = True
        self.register_buffer("vocab_hi", torch.tensor(schema.vocab, dtype=torch.int64) - 1, persistent=False)

    def check_ids(self, batch: Batch, fi: torch.Tensor | None = None) -> None:
        """Raise :class:`~repro.picasso.data.BatchError` (a ``ValueError``) naming the field, the ID and the
        valid range if any ID of ``batch`` is outside its field's vocabulary (one vectorised check,
        :func:`~repro.picasso.data.check_ids`); ``fi`` = ``batch.field_index()`` ``[N]`` if already computed."""
        if self.bounds_check:
            check_ids(batch.ids, batch.field_index() if fi is None else fi, self.vocab_hi, self.schema)

    def field_tables(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-field views ``(deep [V_f, d_f] per field, wide [V_f, 1] per field)`` of this stage's tables."""
        raise NotImplementedError

    def field_grads(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Dense per-field gradients shaped like :meth:`field_tables` (zeros where none), for tests."""
        raise NotImplementedError

    def sparse_parameters(self) -> list[nn.Parameter]:
        """Parameters with sparse gradients (the embedding optimizer's, :class:`~repro.picasso.optim.SparseSGD`)."""
        return list(self.parameters())


def _dense_grad(p: torch.Tensor) -> torch.Tensor:
    if p.grad is None:
        return torch.zeros_like(p)
    return p.grad.to_dense() if p.grad.is_sparse else p.grad


class PerFieldEmbedding(EmbeddingStage):
    """Baseline (PICASSO §II: the per-field execution it improves on): one ``nn.EmbeddingBag`` (deep,
    ``[V_f, d_f]``) + one 1-wide ``nn.EmbeddingBag`` (wide, ``[V_f, 1]``) per field, called field by field, as
    a feature-column framework executes a wide-and-deep model: ``2F`` lookups per step. ``tables`` (from
    :func:`init_field_tables`) overrides ``seed``. ``forward`` raises :class:`~repro.picasso.data.BatchError`
    for an ID outside its field's vocabulary."""

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
        """Pool every field's bags with its own two tables, one field at a time (a Python loop over fields)."""
        B = batch.batch_size
        self.check_ids(batch)
        # split the jagged batch per field (what KeyedJaggedTensor.split does), then loop over fields
        per_field_ids = batch.ids.split(batch.lengths.sum(1).tolist())  # F x (N_f,)
        offs = torch.cumsum(batch.lengths, 1) - batch.lengths  # (F, B) exclusive prefix sums, per field
        outs, wide = [], None
        for f in range(self.schema.n_fields):
            outs.append(self.deep[f](per_field_ids[f], offs[f]))  # (B, d_f)
            w = self.wide[f](per_field_ids[f], offs[f])  # (B, 1)
            wide = w if wide is None else wide + w
        assert wide is not None
        groups = [torch.stack([outs[f] for f in fs], 1) for fs in self.group_fields]  # G x (B, F_g, d_g)
        return Pooled(groups, wide.view(B))

    def field_tables(self):
        return [m.weight for m in self.deep], [m.weight for m in self.wide]

    def field_grads(self):
        return [_dense_grad(m.weight) for m in self.deep], [_dense_grad(m.weight) for m in self.wide]


def regroup_index(field_len: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Gather index that reorders field-major IDs so fields come in the order ``perm`` (segments kept
    whole): ``ids[regroup_index(field_len, perm)]``. ``field_len`` int64 ``[F]`` (IDs per field), ``perm``
    int64 ``[F]`` (a permutation of the fields); returns int64 ``[N]``, ``N = field_len.sum()``. O(N) and a
    constant number of operators (the regrouping step of D- and K-packing, PICASSO §IV)."""
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
    """What the packed stages share. A packed stage holds its deep rows in a few tables
    (:meth:`deep_tables`) and runs in three steps, which :class:`~repro.picasso.cache.CachedEmbedding`
    reuses with the tables moved to a slow tier: :meth:`plan` turns a batch into one
    ``(indices, bag offsets)`` pair per table, one ``embedding_bag`` per table pools, and :meth:`assemble`
    turns the pooled bags into the per-group ``[B, F_g, d_g]`` outputs. :meth:`rows_of` maps global rows
    (``row_off[field] + id``) to the table rows holding them, :meth:`fields_of` splits tables into per-field
    views. The wide part (one ``[sum V, 1]`` table, one call) is the same for every packing."""

    def __init__(self, schema: Schema) -> None:
        super().__init__(schema)
        V = list(schema.vocab)
        self.row_off_list = _row_offsets(V)
        self.register_buffer("row_off", torch.tensor(self.row_off_list, dtype=torch.int64), persistent=False)
        self.register_buffer("field_group", torch.tensor([self.group_dims.index(d) for d in schema.dims]),
                             persistent=False)
        self.total_rows = sum(V)

    def deep_tables(self) -> list[torch.Tensor]:
        """The packed deep tables, one per ``embedding_bag`` call of :meth:`plan` (``[rows_t, d_t]`` each)."""
        raise NotImplementedError

    def release_deep(self) -> list[torch.Tensor]:
        """Detach the deep tables from this module (they stop being parameters) and return them."""
        raise NotImplementedError

    def plan(self, batch: Batch, fi: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One ``(indices [n_t], bag offsets [bags_t])`` pair per deep table: the packed lookup of ``batch``
        (``fi`` = ``batch.field_index()``, ``[N]``)."""
        raise NotImplementedError

    def assemble(self, pooled: list[torch.Tensor], B: int) -> list[torch.Tensor]:
        """Pooled bags of every table (``[bags_t, d_t]``) -> per dim group ``[B, F_g, d_g]``."""
        raise NotImplementedError

    def rows_of(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """Global rows ``row_off[f] + id`` ``[R]`` -> the rows of each deep table that hold them."""
        raise NotImplementedError

    def fields_of(self, tables: list[torch.Tensor]) -> list[torch.Tensor]:
        """Tables laid out like :meth:`deep_tables` -> per-field views ``[V_f, d_f]``."""
        raise NotImplementedError

    def wide_part(self, batch: Batch, fi: torch.Tensor) -> torch.Tensor:
        """Fused wide part (D-packing of the 1-wide tables, PICASSO §IV): one lookup over all fields' bags
        in the stacked ``[sum V_f, 1]`` table, then a sum over fields. ``fi`` ``[N]``; returns ``[B]``."""
        out = F.embedding_bag(batch.ids + self.row_off[fi], self.wide_table, batch.offsets()[:-1], mode="sum",
                              sparse=True)  # (F * B, 1), bags in (field, sample) order
        return out.view(batch.n_fields, batch.batch_size).sum(0)  # (B,)

    def _field_of_row(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.searchsorted(self.row_off, rows, right=True) - 1

    def forward(self, batch: Batch) -> Pooled:
        """Check the IDs, then :meth:`plan` -> one ``embedding_bag`` per deep table -> :meth:`assemble`.
        Raises :class:`~repro.picasso.data.BatchError` for an ID outside its field's vocabulary."""
        fi = batch.field_index()  # (N,)
        self.check_ids(batch, fi)
        pooled = [F.embedding_bag(idx, w, offs, mode="sum", sparse=True)  # T x (bags_t, d_t)
                  for (idx, offs), w in zip(self.plan(batch, fi), self.deep_tables(), strict=True)]
        return Pooled(self.assemble(pooled, batch.batch_size), self.wide_part(batch, fi))

    def field_tables(self):
        return self.fields_of(self.deep_tables()), list(self.wide_table.split(list(self.schema.vocab)))

    def field_grads(self):
        return (self.fields_of([_dense_grad(t) for t in self.deep_tables()]),
                list(_dense_grad(self.wide_table).split(list(self.schema.vocab))))


class DPackedEmbedding(_PackedBase):
    """D-Packing (PICASSO §IV "Packing", card §4): one table per embedding dim (fields' tables stacked,
    IDs shifted by row offsets) and one ``embedding_bag`` per dim group; the wide part as one table and one
    call: ``G + 1`` lookups per step instead of ``2F``. Same parameters and outputs as
    :class:`PerFieldEmbedding` (``tables`` overrides ``seed``); ``forward`` raises
    :class:`~repro.picasso.data.BatchError` for an ID outside its field's vocabulary."""

    kind = "dpacked"

    def __init__(self, schema: Schema, seed: int = 0, device: str | torch.device = "cpu",
                 tables: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None) -> None:
        super().__init__(schema)
        deep, wide = tables or init_field_tables(schema, seed)
        self.tables = nn.ParameterList(nn.Parameter(torch.cat([deep[f].detach() for f in fs]))
                                       for fs in self.group_fields)
        self.wide_table = nn.Parameter(torch.cat([w.detach() for w in wide]))
        # per group: row offset of each field inside the group's table
        g_off = torch.zeros(schema.n_fields, dtype=torch.int64)
        for fs in self.group_fields:
            g_off[fs] = torch.tensor(_row_offsets([schema.vocab[f] for f in fs]))
        self.register_buffer("g_off", g_off, persistent=False)
        self.register_buffer("group_field_idx", torch.cat([torch.tensor(fs) for fs in self.group_fields]),
                             persistent=False)
        self.to(device)

    def deep_tables(self):
        return list(self.tables)

    def release_deep(self):
        out = [t.detach() for t in self.tables]
        self.tables = nn.ParameterList()
        return out

    def plan(self, batch, fi):
        """The D-packed lookup: per dim group ``g``, the group-table rows of its fields' IDs ``[N_g]`` and
        the offsets of its ``F_g * B`` bags, in (field, sample) order."""
        # D-packing (PICASSO §IV): the fields f of dim d share one table T_d = [T_f1; T_f2; ...] (rows
        # stacked), so ID x of field f is row g_off[f] + x of T_d, and one embedding_bag pools every bag of
        # the group:  pooled_d[(f, b)] = sum_{x in bag(f, b)} T_d[g_off[f] + x].
        # The batch is field-major; the IDs are regrouped so each group's fields are contiguous.
        gid = batch.ids + self.g_off[fi]  # (N,) row of every ID in its group's table
        if len(self.group_fields) == 1:  # fields already in group order
            parts_ids, parts_len = [gid], [batch.lengths]  # [(N,)], [(F, B)]
        else:  # regroup IDs by dim group with one gather (fields in group order, each segment kept whole)
            field_len = batch.lengths.sum(1)  # (F,) IDs per field
            src = regroup_index(field_len, self.group_field_idx)  # (N,) field-major -> group-major
            lens = batch.lengths[self.group_field_idx]  # (F, B), fields in group order
            sizes = [len(fs) for fs in self.group_fields]  # F_g per group
            parts_len = list(lens.split(sizes))  # G x (F_g, B)
            n_g = torch.zeros(len(sizes), dtype=torch.int64, device=gid.device).index_add_(
                0, self.field_group, field_len)  # (G,) IDs per group
            parts_ids = list(gid[src].split(n_g.tolist()))  # G x (N_g,)
        return [(ids_g, lengths_to_offsets(len_g.reshape(-1))[:-1])  # (N_g,), (F_g * B,)
                for ids_g, len_g in zip(parts_ids, parts_len, strict=True)]

    def assemble(self, pooled, B):
        """Per group: ``[F_g * B, d_g]`` bags in (field, sample) order -> ``[B, F_g, d_g]`` (a view)."""
        return [out.view(len(fs), B, d).transpose(0, 1)  # (F_g * B, d_g) -> (F_g, B, d_g) -> (B, F_g, d_g)
                for out, fs, d in zip(pooled, self.group_fields, self.group_dims, strict=True)]

    def rows_of(self, rows):
        """Global rows ``[R]`` -> per group, the rows of the group table holding them (``G`` tensors)."""
        f = self._field_of_row(rows)  # (R,)
        r, g = self.g_off[f] + rows - self.row_off[f], self.field_group[f]  # (R,) row in group table, group
        return [r[g == k] for k in range(len(self.group_fields))]

    def fields_of(self, tables):
        """``G`` group tables ``[sum_{f in g} V_f, d_g]`` -> ``F`` per-field views ``[V_f, d_f]``."""
        deep: list[torch.Tensor] = [None] * self.schema.n_fields  # type: ignore[list-item]
        for t, fs in zip(tables, self.group_fields, strict=True):
            for f, part in zip(fs, t.split([self.schema.vocab[f] for f in fs]), strict=True):
                deep[f] = part
        return deep


class KPackedEmbedding(_PackedBase):
    """K-Packing (PICASSO §IV "Packing", card §4; the layout of FBGEMM's TBE): every table in one flat
    buffer viewed as ``[n_chunks, c]``, ``c = gcd(dims)``; one ``embedding_bag`` over chunk bags
    ``(group, chunk, field, sample)`` pools every field of every dim: 2 lookups per step (deep and wide).
    Same parameters and outputs as :class:`PerFieldEmbedding` (``tables`` overrides ``seed``); ``forward``
    raises :class:`~repro.picasso.data.BatchError` for an ID outside its field's vocabulary."""

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
        self.to(device)

    def deep_tables(self):
        return [self.weight]

    def release_deep(self):
        out = [self.weight.detach()]
        del self.weight
        return out

    def plan(self, batch, fi):
        """Expand field-major IDs to chunk indices in bag order ``(group, chunk, field, sample)``: one
        (indices ``[sum_g k_g N_g]``, bag offsets ``[sum_g k_g F_g B]``) pair. Vectorised: a constant number
        of operators per dim group, none per field."""
        # K-packing (PICASSO §IV; FBGEMM TBE's weights_offsets / D_offsets): every table sits in one flat
        # buffer viewed as rows of c = gcd(dims) columns ("chunks"). Field f's table [V_f, d_f] is V_f * k_f
        # chunk rows from chunk_base[f], k_f = d_f / c, so column block j < k_f of ID x is chunk
        #     chunk_base[f] + x * k_f + j,
        # and one embedding_bag over bags ordered (group g, chunk j, field f, sample b) pools them all:
        #     pooled[(g, j, f, b)] = sum_{x in bag(f, b)} buf[chunk_base[f] + x * k_f + j]     (c columns)
        field_len = batch.lengths.sum(1)  # (F,) IDs per field
        first = self.chunk_base[fi] + batch.ids * self.nc[fi]  # (N,) first chunk of every ID
        if len(self.group_fields) > 1:
            first = first[regroup_index(field_len, self.perm)]  # (N,) group-major
        n_g = torch.zeros(len(self.group_fields), dtype=torch.int64, device=first.device).index_add_(
            0, self.field_group, field_len).tolist()  # N_g per group
        lens = batch.lengths[self.perm].split([len(fs) for fs in self.group_fields])  # G x (F_g, B)
        idx, bag_len = [], []
        for x, ln, d in zip(first.split(n_g), lens, self.group_dims, strict=True):  # x: (N_g,), ln: (F_g, B)
            k = d // self.c
            idx.append((x.unsqueeze(0) + self.chunk_ar[:k, None]).reshape(-1))  # (k, N_g) -> (k * N_g,)
            bag_len.append(ln.unsqueeze(0).expand(k, -1, -1).reshape(-1))  # (k, F_g, B) -> (k * F_g * B,)
        return [(torch.cat(idx), lengths_to_offsets(torch.cat(bag_len))[:-1])]

    def assemble(self, pooled, B):
        """``[(group, chunk, field, sample), c]`` -> per group ``[B, F_g, d_g]`` (one view + permute per group):
        the ``k_g`` chunks of a bag are put back side by side."""
        (flat,) = pooled  # (sum_g k_g * F_g * B, c)
        sizes = [len(fs) * (d // self.c) * B for fs, d in zip(self.group_fields, self.group_dims, strict=True)]
        out = []
        for blk, fs, d in zip(flat.split(sizes), self.group_fields, self.group_dims, strict=True):
            k = d // self.c
            # (k * F_g * B, c) -> (k, F_g, B, c) -> (B, F_g, k, c) -> (B, F_g, d_g)
            out.append(blk.view(k, len(fs), B, self.c).permute(2, 1, 0, 3).reshape(B, len(fs), d))
        return out

    def rows_of(self, rows):
        """Global rows ``[R]`` -> the chunk rows of the flat buffer holding them (``[sum k_f]``, one tensor)."""
        f = self._field_of_row(rows)
        nc = self.nc[f]
        first = self.chunk_base[f] + (rows - self.row_off[f]) * nc
        n = int(nc.sum())
        r = torch.arange(len(rows), device=rows.device).repeat_interleave(nc, output_size=n)
        return [first[r] + torch.arange(n, device=rows.device) - (torch.cumsum(nc, 0) - nc)[r]]

    def fields_of(self, tables):
        """The flat buffer ``[n_chunks, c]`` -> ``F`` per-field views ``[V_f, d_f]``."""
        (buf,) = tables
        parts = buf.split([self.chunk_sizes[f] for f in self.order])
        deep: list[torch.Tensor] = [None] * self.schema.n_fields  # type: ignore[list-item]
        for f, p in zip(self.order, parts, strict=True):
            deep[f] = p.reshape(self.schema.vocab[f], self.schema.dims[f])
        return deep


STAGES = {"baseline": PerFieldEmbedding, "dpacked": DPackedEmbedding, "kpacked": KPackedEmbedding}
