"""Hot-ID caching (PICASSO §IV "Caching"): a fast tier in front of tables held in a slower tier.

ID frequencies are power-law skewed, so a small set of hot IDs serves most lookups (card §2 (c)). Here the
deep tables of a packed stage (D-packed: one per dim group; K-packed: one flat buffer; see
:mod:`repro.picasso.embedding`) live in a :class:`SlowTier`:

* on GPU: host memory (pinned), reached over PCIe by ``index_select`` + a non-blocking copy;
* on CPU: host memory behind an *emulated* slow link (``link_bytes_per_s``, ``latency_s``): each fetch
  sleeps for ``latency + bytes / bandwidth`` (simulated; the sleep releases the GIL, like a real transfer,
  so interleaving can hide it). Byte counts are exact either way.

One fetch brings the missed rows of every table at once (one latency: the packed transfer, HybridBackend's
``HbH2DTransferN``). :class:`CachedEmbedding` keeps the top-``c`` fraction of rows, by frequency over a
warm-up window (:meth:`CachedEmbedding.admit`, refreshable at any time), in fast-tier buffers. A forward
pass takes each table's unique rows in the batch (the "unique" step of the lookup chain), serves hits from
the cache, fetches misses from the slow tier, and pools from that working set. The update
(:class:`CachedSGD`) is sparse SGD on the working set, written through to the slow tier and to the cached
copies (the store is always current, so the training maths is exactly that of an uncached table; writes
are posted, not stalled on the link).

The state dict holds the whole model: the fast-tier wide table, the slow-tier deep tables (``store.<t>``,
saved from and loaded into host memory, never moved with the module) and the cache membership
(``row_cached``); loading rebuilds the cached copies from the loaded store, so a loaded stage computes and
trains exactly like the saved one.

Shapes: ``R = sum_f V_f`` global rows (row ``row_off[f] + id``), ``T`` slow-tier tables ``[rows_t, d_t]``
(D-packed: one per dim group; K-packed: one buffer of chunks), ``U_t`` unique rows of table ``t`` in a batch.

Layer: depends on :mod:`.data`, :mod:`.embedding` (the packed stages it reuses) and :mod:`.optim`.
"""

from __future__ import annotations

import threading
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import Batch, ClickLogGenerator, Schema
from .embedding import DPackedEmbedding, EmbeddingStage, KPackedEmbedding, Pooled
from .optim import SparseSGD

PACKINGS = {"dpacked": DPackedEmbedding, "kpacked": KPackedEmbedding}


class SlowTier:
    """The slower memory tier holding whole tables ``[rows_t, d_t]`` (PICASSO §IV "Caching": the host-memory
    store behind the GPU cache; see the module docstring). ``link_bytes_per_s`` (bytes/s; ``None``: no
    emulated link) and ``latency_s`` (seconds per fetch) set the emulated link on CPU. Counters:
    ``bytes_read`` / ``bytes_written`` (bytes), ``fetches``, ``simulated_s`` (seconds slept for the link)."""

    def __init__(self, tables: list[torch.Tensor], device: str | torch.device = "cpu", *,
                 link_bytes_per_s: float | None = None, latency_s: float = 0.0) -> None:
        self.device = torch.device(device)
        self.tables = [t.detach().to("cpu").contiguous() for t in tables]
        if self.device.type == "cuda":
            self.tables = [t.pin_memory() for t in self.tables]
        self.link_bytes_per_s, self.latency_s = link_bytes_per_s, latency_s
        self.bytes_read = self.bytes_written = self.fetches = 0
        self.simulated_s = 0.0
        self._lock = threading.Lock()

    @property
    def emulated(self) -> bool:
        """Whether fetches sleep for the emulated link (on CPU with ``link_bytes_per_s`` set)."""
        return self.device.type == "cpu" and self.link_bytes_per_s is not None

    def fetch(self, rows: list[torch.Tensor]) -> list[torch.Tensor]:
        """Rows ``rows[t]`` (int64 ``[n_t]``) of every table ``t``, delivered as ``[n_t, d_t]`` on the compute
        device in one transfer (one latency; emulated on CPU: sleeps ``latency_s + bytes / link_bytes_per_s``
        seconds)."""
        vals = [t.index_select(0, r.to("cpu")) for t, r in zip(self.tables, rows, strict=True)]
        nbytes = sum(v.numel() * v.element_size() for v in vals)
        with self._lock:
            self.bytes_read += nbytes
            self.fetches += 1
        if self.emulated:
            dt = self.latency_s + nbytes / float(self.link_bytes_per_s)  # type: ignore[arg-type]
            with self._lock:
                self.simulated_s += dt
            time.sleep(dt)
        return [v.to(self.device, non_blocking=True) for v in vals]

    def add(self, t: int, rows: torch.Tensor, values: torch.Tensor) -> None:
        """Write-through of an update ``tables[t][rows] += values`` (duplicate rows sum; posted: accounted
        as the bytes of ``values``, not stalled)."""
        v = values.detach().to("cpu")
        self.tables[t].index_add_(0, rows.to("cpu"), v)
        with self._lock:
            self.bytes_written += v.numel() * v.element_size()

    def reset_stats(self) -> None:
        """Zero the traffic counters."""
        self.bytes_read = self.bytes_written = self.fetches = 0
        self.simulated_s = 0.0


class CachedEmbedding(EmbeddingStage):
    """PICASSO §IV "Caching": a packed stage (``packing`` = ``"dpacked"`` or ``"kpacked"``) whose deep tables
    live in a :class:`SlowTier`, with a hot-row cache in the fast tier. ``capacity`` = fraction of the
    ``R = sum_f V_f`` rows cached (0 = no cache: every row over the slow link); ``link_bytes_per_s`` (bytes/s)
    and ``latency_s`` (s) set the emulated link. The wide table stays a fast-tier parameter. ``state_dict()``
    adds the slow-tier tables as ``store.<t>`` and the cache membership as ``row_cached`` ``[R]``.

    Outputs equal :class:`~repro.picasso.embedding.PerFieldEmbedding`'s (``[B, F_g, d_g]`` per group, ``[B]``).
    Raises ``ValueError`` for ``capacity`` outside ``[0, 1]`` or an unknown ``packing``; ``forward`` raises
    :class:`~repro.picasso.data.BatchError` for an ID outside its field's vocabulary."""

    kind = "cached"

    def __init__(self, schema: Schema, seed: int = 0, device: str | torch.device = "cpu", *,
                 packing: str = "dpacked", capacity: float = 0.1, link_bytes_per_s: float | None = 1e9,
                 latency_s: float = 50e-6, tables=None) -> None:
        super().__init__(schema)
        if not 0.0 <= capacity <= 1.0:
            raise ValueError(f"capacity (cached fraction of rows) must be in [0, 1], got {capacity}")
        if packing not in PACKINGS:
            raise ValueError(f"unknown packing {packing!r}; valid: {', '.join(PACKINGS)}")
        self.capacity = capacity
        self.packing = PACKINGS[packing](schema, seed=seed, device="cpu", tables=tables)
        self.wide_table = self.packing.wide_table
        self.total_rows = self.packing.total_rows
        self.store = SlowTier(self.packing.release_deep(), device, link_bytes_per_s=link_bytes_per_s,
                              latency_s=latency_s)
        self.to(device)
        dev = torch.device(device)
        self.dims = [t.shape[1] for t in self.store.tables]
        self.slot_of = [torch.full((t.shape[0],), -1, dtype=torch.int64, device=dev) for t in self.store.tables]
        self.register_buffer("row_cached", torch.zeros(self.total_rows, dtype=torch.bool, device=dev))
        self.cache = [torch.empty(0, d, device=dev) for d in self.dims]
        self.cached_rows = [torch.empty(0, dtype=torch.int64, device=dev) for _ in self.dims]
        self._pending: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._lock = threading.Lock()
        self.reset_stats()

    def _apply(self, fn, recurse=True):  # keep the cache's plain tensors on the module's device
        super()._apply(fn, recurse)
        for name in ("slot_of", "cache", "cached_rows"):
            if hasattr(self, name):
                setattr(self, name, [fn(t) for t in getattr(self, name)])
        return self

    # ------------------------------------------------------------------------------------ admission
    # Admission (PICASSO §IV "Caching", card §4): hot-set membership comes from frequency statistics over
    # recent batches. Count every global row's lookups over a warm-up window,
    #     n_r = #{lookups of row r},   r = row_off[f] + id,
    # and cache the k = round(capacity * R) rows of largest n_r: cached_t = the table-t rows holding them,
    # copied from the store into the fast tier (refreshable at any time by admitting newer counts).
    def row_counts(self, batches: list[Batch]) -> torch.Tensor:
        """Lookup frequency ``n_r`` of every global row (``row_off[f] + id``) over a warm-up window: int64
        ``[R]``. Raises :class:`~repro.picasso.data.BatchError` for an ID outside its field's vocabulary."""
        counts = torch.zeros(self.total_rows, dtype=torch.int64, device=self.row_cached.device)  # (R,)
        for b in batches:
            counts += torch.bincount(self._global_rows(b), minlength=self.total_rows)  # (N,) rows -> (R,)
        return counts

    def admit(self, counts: torch.Tensor) -> None:
        """Frequency admission: cache the top ``capacity`` fraction of rows by ``counts`` ``[R]`` (refreshable:
        call again with newer counts; the store is always current, so nothing needs writing back)."""
        k = int(round(self.capacity * self.total_rows))
        self.row_cached.zero_()  # (R,) membership
        hot = torch.topk(counts.to(torch.float64), k, sorted=False).indices.to(self.row_cached.device)  # (k,)
        self.row_cached[hot] = True
        self._fill_cache(hot)

    def _fill_cache(self, hot: torch.Tensor) -> None:
        """Cache the global rows ``hot``: slot maps and fast-tier copies of their current store values."""
        for t, rows in enumerate(self.packing.rows_of(hot)):  # rows: (k_t,) rows of table t
            self.slot_of[t].fill_(-1)  # (rows_t,) cache slot of each table row, -1 = not cached
            self.slot_of[t][rows] = torch.arange(len(rows), device=rows.device)
            self.cached_rows[t] = rows
            self.cache[t] = self.store.tables[t].index_select(0, rows.cpu()).to(rows.device)  # (k_t, d_t)

    def warm_up(self, gen: ClickLogGenerator, n_batches: int, batch_size: int, start: int = 0) -> None:
        """Admit from ``n_batches`` generator batches of ``batch_size`` from batch ``start`` on (the warm-up
        window): ``admit(row_counts(...))``."""
        self.admit(self.row_counts(gen.batches(n_batches, batch_size, start)))

    def _global_rows(self, batch: Batch) -> torch.Tensor:
        fi = batch.field_index()
        self.check_ids(batch, fi)  # a bad warm-up ID would count another field's row
        return batch.ids + self.packing.row_off[fi]

    # ------------------------------------------------------------------------------------ lookup
    def reset_stats(self) -> None:
        """Zero the hit counters and the slow tier's traffic counters."""
        self.lookups = self.hits = 0
        self.unique_rows = self.unique_hits = 0
        self.store.reset_stats()

    def stats(self) -> dict[str, float]:
        """Since the last :meth:`reset_stats`: ``hit_rate`` (share of ID lookups served by the cache),
        ``unique_hit_rate`` (share of the unique table rows per step), ``bytes_read`` / ``bytes_written``
        (slow-tier traffic, bytes) and ``simulated_link_s`` (seconds slept for the emulated link)."""
        return {"hit_rate": self.hits / max(self.lookups, 1),
                "unique_hit_rate": self.unique_hits / max(self.unique_rows, 1),
                "bytes_read": self.store.bytes_read, "bytes_written": self.store.bytes_written,
                "simulated_link_s": self.store.simulated_s}

    def forward(self, batch: Batch) -> Pooled:
        """The cached lookup: per packed table, unique rows -> hits from the cache, misses fetched from the
        slow tier in one transfer -> pool from that working set. Returns per group ``[B, F_g, d_g]`` and the
        wide part ``[B]``; raises :class:`~repro.picasso.data.BatchError` for an ID outside its field's
        vocabulary."""
        # The lookup chain of PICASSO §III with a cache in front (§IV "Caching"): per packed table t,
        #     U_t = unique(plan_t),  W_t[u] = cache_t[slot(u)] if u is cached else store_t[u] (fetched),
        #     pooled_t = embedding_bag(inverse_t, W_t)   (the same sums as pooling from the whole table).
        fi = batch.field_index()  # (N,)
        self.check_ids(batch, fi)
        plan = self.packing.plan(batch, fi)  # T x ((n_t,) indices, (bags_t,) offsets)
        uniq, inv, slots, hit_pos, miss_pos = [], [], [], [], []
        for t, (idx, _) in enumerate(plan):
            u, i = torch.unique(idx, return_inverse=True)  # (U_t,) unique rows, (n_t,) index into them
            s = self.slot_of[t][u]  # (U_t,) cache slot, -1 = miss
            h = s >= 0
            uniq.append(u), inv.append(i), slots.append(s)
            hit_pos.append(h.nonzero().squeeze(1)), miss_pos.append((~h).nonzero().squeeze(1))
        fetched = self.store.fetch([u.index_select(0, m) for u, m in zip(uniq, miss_pos, strict=True)])
        gids = batch.ids + self.packing.row_off[fi]  # (N,) global rows, for the hit rate over lookups
        n_hit = int(self.row_cached[gids].sum())
        grad = torch.is_grad_enabled()
        pooled, work = [], []
        for t, (u, i, s, hp, mp, f) in enumerate(zip(uniq, inv, slots, hit_pos, miss_pos, fetched, strict=True)):
            W = torch.empty(len(u), self.dims[t], device=u.device)  # (U_t, d_t) the working set
            hit_slots = s.index_select(0, hp)
            W.index_copy_(0, hp, self.cache[t].index_select(0, hit_slots))  # hits from the fast tier
            W.index_copy_(0, mp, f)  # misses from the slow tier
            W.requires_grad_(grad)
            work.append((t, u, W, hp, hit_slots))
            pooled.append(F.embedding_bag(i, W, plan[t][1], mode="sum", sparse=True))  # (bags_t, d_t)
        with self._lock:
            self.lookups += gids.numel()
            self.hits += n_hit
            self.unique_rows += sum(len(u) for u in uniq)
            self.unique_hits += sum(len(h) for h in hit_pos)
            if grad:
                self._pending += work
        return Pooled(self.packing.assemble(pooled, batch.batch_size), self.packing.wide_part(batch, fi))

    def apply_sgd(self, lr: float) -> None:
        """SGD on every row the step's (micro-)batches touched: each working set's gradient, summed per
        unique row, is added into the slow tier and into the cached copies of hot rows (working sets of
        several micro-batches add up, so the result is exactly ``w -= lr * sum_of_grads`` per row)."""
        with self._lock:
            pending, self._pending = self._pending, []
        for t, u, W, hp, hit_slots in pending:
            if W.grad is None:
                continue
            g = W.grad
            step = torch.zeros(len(u), self.dims[t], device=u.device).index_add_(0, g._indices()[0], g._values())
            step.mul_(-lr)
            self.store.add(t, u, step)
            self.cache[t].index_add_(0, hit_slots, step.index_select(0, hp))

    # ------------------------------------------------------------------------------------ save / load
    def _store_keys(self, prefix: str) -> list[str]:
        return [f"{prefix}store.{t}" for t in range(len(self.store.tables))]

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)  # wide_table, row_cached
        for key, table in zip(self._store_keys(prefix), self.store.tables, strict=True):
            destination[key] = table if keep_vars else table.detach()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        keys = self._store_keys(prefix)
        unexpected_keys[:] = [k for k in unexpected_keys if k not in keys]  # ours, not unknown to torch
        for key, table in zip(keys, self.store.tables, strict=True):
            if key not in state_dict:
                if strict:
                    missing_keys.append(key)
                continue
            v = state_dict[key]
            if v.shape != table.shape:
                error_msgs.append(f"size mismatch for {key}: copying a param with shape {tuple(v.shape)} from "
                                  f"checkpoint, the shape in current model is {tuple(table.shape)}.")
                continue
            with torch.no_grad():
                table.copy_(v)  # in place: the store keeps its (pinned) host memory
        self.discard_pending()
        self._fill_cache(self.row_cached.nonzero().squeeze(1))  # cached copies of the loaded store

    def discard_pending(self) -> None:
        """Drop the working sets recorded since the last update (a step that failed, or ``zero_grad``)."""
        with self._lock:
            self._pending = []

    def field_tables(self):
        return self.packing.fields_of(self.store.tables), list(self.wide_table.split(list(self.schema.vocab)))

    def field_grads(self):
        """Per-field dense gradients accumulated in the pending working sets (tests only)."""
        gs = [torch.zeros_like(t) for t in self.store.tables]
        for t, u, W, *_ in self._pending:
            if W.grad is not None:
                gs[t].index_add_(0, u.cpu(), W.grad.to_dense().cpu())
        wg = self.wide_table.grad
        wg = torch.zeros_like(self.wide_table) if wg is None else wg.to_dense()
        return self.packing.fields_of(gs), list(wg.split(list(self.schema.vocab)))

    def sparse_parameters(self) -> list[nn.Parameter]:
        """The fast-tier wide table ``[R, 1]`` only (the deep tables are updated by :meth:`apply_sgd`)."""
        return [self.wide_table]


class CachedSGD:
    """The embedding optimizer of a :class:`CachedEmbedding` (PICASSO §IV "Caching", write-through):
    working-set SGD for the deep tables (:meth:`CachedEmbedding.apply_sgd`), :class:`~repro.picasso.optim.SparseSGD`
    for the fast-tier wide table. Same interface as a torch optimizer. Raises ``ValueError`` if ``lr <= 0``."""

    def __init__(self, stage: CachedEmbedding, lr: float) -> None:
        self.stage, self.lr = stage, lr
        self.wide = SparseSGD([stage.wide_table], lr=lr)

    def state_dict(self) -> dict:
        """The learning rate and the wide optimizer's state."""
        return {"lr": self.lr, "wide": self.wide.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output."""
        self.lr = state["lr"]
        self.wide.load_state_dict(state["wide"])

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the stage's pending working sets and the wide table's gradient."""
        self.stage.discard_pending()
        self.wide.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        """Write the working sets' SGD update through to the slow tier and the cache, then the wide table."""
        self.stage.apply_sgd(self.lr)
        self.wide.step()


def zipf_hit_rate(schema: Schema, alpha: float, fractions: list[float], *, seed: int = 0,
                  warmup_batches: int = 4, eval_batches: int = 2, batch_size: int = 512) -> dict[float, float]:
    """Hit rate ``h`` of a frequency-admitted cache holding the top ``c`` fraction of rows, for Zipf skew
    ``alpha``, measured on batches after the warm-up window (PICASSO §IV "Caching"; card claim P-4: ``h`` vs
    ``c``). Returns ``{c: h}`` for every ``c`` in ``fractions`` (shares in ``[0, 1]``), counting ID lookups of
    ``eval_batches`` batches of ``batch_size`` after ``warmup_batches`` warm-up batches (the same admission
    rule as :meth:`CachedEmbedding.admit`, without building a stage)."""
    sch = schema.with_alpha(alpha)
    gen = ClickLogGenerator(sch, seed=seed)
    row_off = torch.tensor([0, *torch.tensor(sch.vocab).cumsum(0).tolist()[:-1]])

    def rows(b: Batch) -> torch.Tensor:
        return b.ids + row_off[b.field_index()]

    total = sum(sch.vocab)
    counts = sum(torch.bincount(rows(b), minlength=total) for b in gen.batches(warmup_batches, batch_size))
    ev = torch.cat([rows(b) for b in gen.batches(eval_batches, batch_size, start=warmup_batches)])
    order = torch.argsort(counts.to(torch.float64), descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(total)
    r = rank[ev]
    return {c: float((r < int(round(c * total))).to(torch.float64).mean()) for c in fractions}
