"""Hot-ID caching (PICASSO §IV "Caching"): a fast tier in front of a table held in a slower tier.

ID frequencies are power-law skewed, so a small set of hot IDs serves most lookups (card §2 (c)). Here the
full K-packed table (see :class:`~repro.picasso.embedding.KPackedEmbedding`) lives in a :class:`SlowTier`:

* on GPU: host memory (pinned), reached over PCIe by ``index_select`` + a non-blocking copy;
* on CPU: host memory behind an *emulated* slow link (``link_bytes_per_s``, ``latency_s``): each fetch
  sleeps for ``latency + bytes / bandwidth`` (simulated; the sleep releases the GIL, like a real transfer,
  so interleaving can hide it). Byte counts are exact either way.

:class:`CachedEmbedding` keeps the top-``c`` fraction of rows, by frequency over a warm-up window
(:meth:`CachedEmbedding.admit`, refreshable at any time), in a fast-tier buffer. A forward pass takes the
batch's unique rows (the "unique" step of the lookup chain), serves hits from the cache and fetches misses
from the slow tier, and pools from that working set. The update (:class:`CachedSGD`) is SGD on the working
set, written through to the slow tier and to the cached copies (the store is always current, so the
training maths is exactly that of an uncached table; writes are posted, not stalled on the link).
"""

from __future__ import annotations

import threading
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import Batch, ClickLogGenerator, Schema
from .embedding import KPackedEmbedding, Pooled, SparseSGD


class SlowTier:
    """The slower memory tier holding the whole table ``[rows, c]`` (see module docstring)."""

    def __init__(self, table: torch.Tensor, device: str | torch.device = "cpu", *,
                 link_bytes_per_s: float | None = None, latency_s: float = 0.0) -> None:
        self.device = torch.device(device)
        self.table = table.detach().to("cpu").contiguous()
        if self.device.type == "cuda":
            self.table = self.table.pin_memory()
        self.link_bytes_per_s, self.latency_s = link_bytes_per_s, latency_s
        self.bytes_read = self.bytes_written = self.fetches = 0
        self.simulated_s = 0.0
        self._lock = threading.Lock()

    @property
    def emulated(self) -> bool:
        return self.device.type == "cpu" and self.link_bytes_per_s is not None

    def fetch(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows ``rows`` of the table, delivered on the compute device (a slow-link transfer)."""
        vals = self.table.index_select(0, rows.to("cpu"))
        nbytes = vals.numel() * vals.element_size()
        with self._lock:
            self.bytes_read += nbytes
            self.fetches += 1
        if self.emulated:
            dt = self.latency_s + nbytes / float(self.link_bytes_per_s)  # type: ignore[arg-type]
            with self._lock:
                self.simulated_s += dt
            time.sleep(dt)
        return vals.to(self.device, non_blocking=True)

    def write(self, rows: torch.Tensor, values: torch.Tensor) -> None:
        """Write-through of updated rows (posted: accounted, not stalled)."""
        v = values.detach().to("cpu")
        self.table.index_copy_(0, rows.to("cpu"), v)
        self.bytes_written += v.numel() * v.element_size()

    def reset_stats(self) -> None:
        self.bytes_read = self.bytes_written = self.fetches = 0
        self.simulated_s = 0.0


class CachedEmbedding(KPackedEmbedding):
    """K-packed embedding whose flat table lives in a :class:`SlowTier`, with a hot-row cache in the fast
    tier. ``capacity`` = fraction of rows cached (0 = no cache: every row over the slow link)."""

    kind = "cached"

    def __init__(self, schema: Schema, seed: int = 0, device: str | torch.device = "cpu", *,
                 capacity: float = 0.1, link_bytes_per_s: float | None = 1e9, latency_s: float = 50e-6,
                 tables=None) -> None:
        if not 0.0 <= capacity <= 1.0:
            raise ValueError(f"capacity (cached fraction of rows) must be in [0, 1], got {capacity}")
        super().__init__(schema, seed=seed, device="cpu", tables=tables)
        flat = self.weight.detach()
        del self.weight  # the deep table now lives in the slow tier, not as a Parameter
        self.store = SlowTier(flat, device, link_bytes_per_s=link_bytes_per_s, latency_s=latency_s)
        self.capacity = capacity
        self.to(device)
        dev = torch.device(device)
        n_chunks = flat.shape[0]
        self.register_buffer("slot_of", torch.full((n_chunks,), -1, dtype=torch.int64, device=dev),
                             persistent=False)
        self.register_buffer("row_cached", torch.zeros(self.total_rows, dtype=torch.bool, device=dev),
                             persistent=False)
        self.cache = torch.empty(0, self.c, device=dev)
        self.cached_chunks = torch.empty(0, dtype=torch.int64, device=dev)
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._lock = threading.Lock()
        self.reset_stats()

    # ------------------------------------------------------------------------------------ admission
    def row_counts(self, batches: list[Batch]) -> torch.Tensor:
        """Lookup frequency of every global row (``row_off[f] + id``) over a warm-up window."""
        counts = torch.zeros(self.total_rows, dtype=torch.int64, device=self.row_off.device)
        for b in batches:
            counts += torch.bincount(self._global_rows(b), minlength=self.total_rows)
        return counts

    def admit(self, counts: torch.Tensor) -> None:
        """Frequency admission: cache the top ``capacity`` fraction of rows by ``counts`` (refreshable:
        call again with newer counts; the store is always current, so nothing needs writing back)."""
        k = int(round(self.capacity * self.total_rows))
        dev = self.slot_of.device
        self.slot_of.fill_(-1)
        self.row_cached.zero_()
        if k == 0:
            self.cache = torch.empty(0, self.c, device=dev)
            self.cached_chunks = torch.empty(0, dtype=torch.int64, device=dev)
            return
        hot = torch.topk(counts.to(torch.float64), k, sorted=False).indices
        self.row_cached[hot] = True
        field = torch.searchsorted(self.row_off, hot, right=True) - 1
        nc = self.nc[field]
        first = self.chunk_base[field] + (hot - self.row_off[field]) * nc
        n = int(nc.sum())
        r = torch.arange(len(hot), device=dev).repeat_interleave(nc, output_size=n)
        chunks = first[r] + torch.arange(n, device=dev) - (torch.cumsum(nc, 0) - nc)[r]
        self.cached_chunks = chunks
        self.slot_of[chunks] = torch.arange(n, device=dev)
        self.cache = self.store.table.index_select(0, chunks.cpu()).to(dev)

    def warm_up(self, gen: ClickLogGenerator, n_batches: int, batch_size: int, start: int = 0) -> None:
        """Admit from ``n_batches`` generator batches (the warm-up window)."""
        self.admit(self.row_counts(gen.batches(n_batches, batch_size, start)))

    def _global_rows(self, batch: Batch) -> torch.Tensor:
        fi = batch.field_index()
        return batch.ids + self.row_off[fi]

    # ------------------------------------------------------------------------------------ lookup
    def reset_stats(self) -> None:
        self.lookups = self.hits = 0
        self.unique_rows = self.unique_hits = 0
        self.store.reset_stats()

    def stats(self) -> dict[str, float]:
        """Hit rate over ID lookups and over unique chunks per step, and slow-tier traffic."""
        return {"hit_rate": self.hits / max(self.lookups, 1),
                "unique_hit_rate": self.unique_hits / max(self.unique_rows, 1),
                "bytes_read": self.store.bytes_read, "bytes_written": self.store.bytes_written,
                "simulated_link_s": self.store.simulated_s}

    def forward(self, batch: Batch) -> Pooled:
        B = batch.batch_size
        idx, offsets = self.chunk_indices(batch)
        uniq, inv = torch.unique(idx, return_inverse=True)
        slot = self.slot_of[uniq]
        hit = slot >= 0
        rows = torch.empty(len(uniq), self.c, device=idx.device)
        rows[hit] = self.cache[slot[hit]]
        miss = ~hit
        rows[miss] = self.store.fetch(uniq[miss])
        gids = self._global_rows(batch)
        n_hit = int(self.row_cached[gids].sum())
        with self._lock:
            self.lookups += gids.numel()
            self.hits += n_hit
            self.unique_rows += len(uniq)
            self.unique_hits += int(hit.sum())
        W = rows.requires_grad_(torch.is_grad_enabled())
        if W.requires_grad:
            with self._lock:
                self._pending.append((uniq, W))
        pooled = F.embedding_bag(inv, W, offsets[:-1], mode="sum")
        wide = self._wide(batch, gids, batch.offsets())
        return Pooled(self._to_groups(pooled, B), wide)

    def apply_sgd(self, lr: float) -> None:
        """SGD on every row the step's (micro-)batches touched, gradients summed across them, written
        through to the slow tier and to the cache (exactly ``w -= lr * sum_of_grads`` per row)."""
        with self._lock:
            pending, self._pending = self._pending, []
        pending = [(u, W) for u, W in pending if W.grad is not None]
        if not pending:
            return
        u_all = torch.cat([u for u, _ in pending])
        g_all = torch.cat([W.grad for _, W in pending])
        v_all = torch.cat([W.detach() for _, W in pending])
        u, inv = torch.unique(u_all, return_inverse=True)
        g = torch.zeros(len(u), self.c, device=g_all.device).index_add_(0, inv, g_all)
        v = torch.empty(len(u), self.c, device=v_all.device).index_copy_(0, inv, v_all)
        new = v - lr * g
        self.store.write(u, new)
        slot = self.slot_of[u]
        hit = slot >= 0
        self.cache[slot[hit]] = new[hit]

    def discard_pending(self) -> None:
        with self._lock:
            self._pending = []

    def field_tables(self):
        return self._split_fields(self.store.table), list(self.wide_table.split(list(self.schema.vocab)))

    def field_grads(self):
        """Per-field dense gradients accumulated in the pending working sets (tests only)."""
        g = torch.zeros_like(self.store.table)
        for u, W in self._pending:
            if W.grad is not None:
                g.index_add_(0, u.cpu(), W.grad.cpu())
        wg = self.wide_table.grad
        wg = torch.zeros_like(self.wide_table) if wg is None else wg.to_dense()
        return self._split_fields(g), list(wg.split(list(self.schema.vocab)))

    def sparse_parameters(self) -> list[nn.Parameter]:
        return [self.wide_table]


class CachedSGD:
    """The embedding optimizer of a :class:`CachedEmbedding`: working-set SGD (write-through) for the deep
    table, SparseSGD for the fast-tier wide table (:class:`SparseSGD`). Same interface as a torch optimizer."""

    def __init__(self, stage: CachedEmbedding, lr: float) -> None:
        self.stage, self.lr = stage, lr
        self.wide = SparseSGD([stage.wide_table], lr=lr)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.stage.discard_pending()
        self.wide.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.stage.apply_sgd(self.lr)
        self.wide.step()


def zipf_hit_rate(schema: Schema, alpha: float, fractions: list[float], *, seed: int = 0,
                  warmup_batches: int = 4, eval_batches: int = 2, batch_size: int = 512) -> dict[float, float]:
    """Hit rate ``h`` of a frequency-admitted cache holding the top ``c`` fraction of rows, for Zipf skew
    ``alpha``, measured on batches after the warm-up window (card claim P-4: ``h`` vs ``c``)."""
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
